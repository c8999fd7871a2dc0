"""Keep Tune's driver staging folder to the trials still running.

Tune's loggers write each trial's files (progress.csv, result.json, params, TensorBoard events)
into a staging folder on the driver, and after every experiment snapshot Tune copies that whole
folder into the experiment folder, in a background thread: every file of every trial the search
has ever run, each time. With hundreds of trials that copy is the driver's cost that grows with
the search (``bench/bench_scale.py``: 2.1 ms per result at 300 trials, 4.3 ms at 1,000). An
ended trial's files no longer change, so :class:`ReleaseEndedTrials` uploads its folder once and
removes it from staging; each snapshot then copies only the running trials' folders.

When: at the end of the controller step in which the trial ended (its status final, so a trial
that Tune retries after a failure is left alone), after any background copy in flight has
finished — one that started before the trial ended could otherwise land an older file after the
upload, or fail on the removed folder. Copies are started from the main thread, which runs the
callbacks, so none starts meanwhile. It must come after the logger callbacks in
``RunConfig(callbacks=[...])``: they close (and so complete) a trial's files when it ends.

Example:
    >>> from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    >>> callbacks = [CSVLoggerCallback(), JsonLoggerCallback(), ReleaseEndedTrials()]
"""
from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import pyarrow.fs
from ray.tune import Callback

logger = logging.getLogger(__name__)

__all__ = ["ReleaseEndedTrials"]

FINAL = ("TERMINATED", "ERROR")
# Tune's background copies run in threads named after their function (ray.train._internal.syncer
# _BackgroundProcess: "Thread-N (entrypoint)"); they are the only such threads on the driver.
COPY_THREAD_SUFFIX = "(entrypoint)"
COPY_WAIT_S = 300.0


class ReleaseEndedTrials(Callback):
    """Upload an ended trial's staged folder to the experiment folder once, then delete it."""

    def __init__(self):
        self._ended: list = []
        self._first_step = True

    def on_trial_complete(self, iteration: int, trials: list, trial, **info):
        self._ended.append(trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info):
        self._ended.append(trial)

    def on_step_end(self, iteration: int, trials: list, **info):
        if self._first_step:  # a resumed search: Tune re-creates every trial's staged folder
            self._first_step = False
            self._ended.extend(t for t in trials if t.status in FINAL and t not in self._ended)
        ready = [t for t in self._ended if t.status in FINAL]
        if not ready:
            return
        self._ended = [t for t in self._ended if t.status not in FINAL]
        _wait_for_background_copies()
        for trial in ready:
            _release(trial)

    def __getstate__(self):  # pickled with the Tuner for --resume: no trials
        return {}

    def __setstate__(self, state):
        self.__init__()


def _wait_for_background_copies() -> None:
    for thread in threading.enumerate():
        if thread.name.endswith(COPY_THREAD_SUFFIX) and thread.is_alive():
            thread.join(COPY_WAIT_S)


def _release(trial) -> None:
    try:
        staged = Path(trial.local_path)
    except Exception:  # a trial stopped before it had a folder
        return
    if not staged.is_dir():
        return
    storage = trial.storage
    try:
        storage.storage_filesystem.create_dir(storage.trial_fs_path, recursive=True)
        pyarrow.fs.copy_files(str(staged), storage.trial_fs_path,
                              destination_filesystem=storage.storage_filesystem,
                              use_threads=False)
    except Exception as exc:  # keep it staged: Tune's own copy will carry it
        logger.warning("could not upload the folder of trial %s: %s", trial.trial_id, exc)
        return
    shutil.rmtree(staged, ignore_errors=True)
