"""Keep Tune's driver staging folder to the trials still running.

Tune's loggers write each trial's files (progress.csv, result.json, params, TensorBoard events)
into a staging folder on the driver, and after every experiment snapshot Tune copies that whole
folder into the experiment folder: every file of every trial the search has ever run, each time.
With hundreds of trials that copy is the driver's cost that grows with the search
(``bench/bench_scale.py``: 2.1 ms per result at 300 trials, 4.3 ms at 1,000). An ended trial's
files no longer change, so :class:`ReleaseEndedTrials` uploads its folder once when it ends and
removes it from staging; each snapshot then copies only the running trials' folders.

It must come after the logger callbacks in ``RunConfig(callbacks=[...])``: Tune calls callbacks
in order, and the loggers close (and so complete) a trial's files when it ends. A trial that
runs again later (``--resume`` of a trial that had ended after the last snapshot) gets its files
back the way Tune's loggers always restore them: from the experiment folder.

Example:
    >>> from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    >>> callbacks = [CSVLoggerCallback(), JsonLoggerCallback(), ReleaseEndedTrials()]
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pyarrow.fs
from ray.tune import Callback

logger = logging.getLogger(__name__)

__all__ = ["ReleaseEndedTrials"]


class ReleaseEndedTrials(Callback):
    """Upload an ended trial's staged folder to the experiment folder once, then delete it."""

    def on_trial_complete(self, iteration: int, trials: list, trial, **info):
        self._release(trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info):
        self._release(trial)

    def _release(self, trial) -> None:
        try:
            staged = Path(trial.local_path)
        except Exception:  # a trial stopped before it had a folder
            return
        if not staged.is_dir():
            return
        storage = trial.storage
        # The experiment's background copy (shared by every trial's storage) may be reading this
        # folder right now: wait for it. Copies start on this thread, so none starts meanwhile.
        try:
            storage.syncer.wait()
        except Exception as exc:  # that copy failed; Tune retries at its next snapshot
            logger.warning("the last copy of the experiment state failed: %s", exc)
        try:
            storage.storage_filesystem.create_dir(storage.trial_fs_path, recursive=True)
            pyarrow.fs.copy_files(str(staged), storage.trial_fs_path,
                                  destination_filesystem=storage.storage_filesystem,
                                  use_threads=False)
        except Exception as exc:  # keep it staged: Tune's own copy will carry it
            logger.warning("could not upload the folder of trial %s: %s", trial.trial_id, exc)
            return
        shutil.rmtree(staged, ignore_errors=True)
