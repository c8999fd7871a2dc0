"""Ray's TBXLoggerCallback with HParams sessions TensorBoard can rely on (opt-in).

Use it in ``tune.RunConfig(callbacks=[SearchTBXLoggerCallback()])``; Tune then adds no default TBX
logger of its own (it checks ``isinstance(c, TBXLoggerCallback)``). The scalars are Ray's,
unchanged (``ray/tune/<key>`` at step ``training_iteration``). The hparams differ:

* a trial's session starts when the trial starts, so running trials are listed in the HParams tab
  (Ray writes the session only when the trial ends);
* it ends with STATUS_FAILURE for a failed trial (Ray: always SUCCESS), and a trial that fails
  before its first result still has a session (Ray: none);
* no per-trial ``_hparams_/experiment``: TensorBoard uses the first one it meets, and with its
  fast (Rust) loader that is a random trial's, which hides the search-wide summary the report step
  writes (``search.tensorboard_logs.write_hparams_overview``). Until that summary exists,
  TensorBoard derives the columns from the sessions, so a running search is still browsable;
* a trial's events reach the disk at most every FLUSH_EVERY_S seconds (and when it ends), not
  after every result: Ray flushes each result and tensorboardX fsyncs each flush, a few ms apiece
  on the driver (more on a network file system), the largest cost per result left once Tune's
  snapshots were bounded (bench/bench_scale.py);
* a result's scalars go out as one event holding all of them, not one event each: Ray's
  ``add_scalar`` per metric queues ~17 events per result through tensorboardX's 10-slot queue,
  each checksummed in pure Python (~1.4 ms of driver CPU per result; one event: ~0.3 ms). The
  tags, steps and values TensorBoard shows are the same.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from ray.tune.logger import TBXLoggerCallback
from ray.tune.logger.tensorboardx import VALID_SUMMARY_TYPES
from ray.tune.result import TIME_TOTAL_S, TIMESTEPS_TOTAL, TRAINING_ITERATION
from ray.tune.utils import flatten_dict
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.summary import _clean_tag  # what add_scalar does to a tag

from .experiment_folder import COMPLETED, FAILED
from .tensorboard_logs import session_summaries, write_events_file

FLUSH_EVERY_S = 5.0


class _ThrottledFlush:
    """A trial's SummaryWriter whose ``flush`` does the work at most every ``every_s`` seconds;
    everything else (``close`` included, which flushes) goes to the writer."""

    def __init__(self, writer, every_s: float):
        self._writer, self._every, self._last = writer, every_s, time.monotonic()

    def flush(self):
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._writer.flush()

    def __getattr__(self, name):
        return getattr(self._writer, name)


def _as_tbx(summary):
    """tensorboard's Summary proto as tensorboardX's (same schema, different Python classes)."""
    return Summary.FromString(summary.SerializeToString())


class SearchTBXLoggerCallback(TBXLoggerCallback):
    def log_trial_start(self, trial):
        # The session start goes to a small file of its own, written and closed at once (Ray's
        # writer is asynchronous and flushes every 30 s). Its name sorts before the events file
        # Ray's writer opens next, so TensorBoard's sequential loader reads it first, then
        # follows Ray's file.
        trial.init_local_path()
        params = flatten_dict(dict(trial.evaluated_params or trial.config or {}), delimiter="/")
        now = time.time()
        start, _ = session_summaries(params, str(trial.trial_id), "", now, 0.0)
        write_events_file(Path(trial.local_path), [start], stamp=int(now) - 1, suffix=".session")
        super().log_trial_start(trial)
        self._trial_writer[trial] = _ThrottledFlush(self._trial_writer[trial], FLUSH_EVERY_S)

    def log_trial_result(self, iteration: int, trial, result: dict):
        scalars = _scalars(result)
        if scalars is None:  # images, histograms ...: Ray's own path, one event each
            return super().log_trial_result(iteration, trial, result)
        if trial not in self._trial_writer:
            self.log_trial_start(trial)
        step = result.get(TIMESTEPS_TOTAL) or result[TRAINING_ITERATION]
        if scalars:
            summary = Summary(value=[Summary.Value(tag=_clean_tag(k), simple_value=float(v))
                                     for k, v in scalars.items()])
            self._trial_writer[trial].file_writer.add_summary(summary, step)
        self._trial_result[trial] = scalars  # what Ray keeps for the hparams at the end
        self._trial_writer[trial].flush()

    def log_trial_end(self, trial, failed: bool = False):
        if trial in self._trial_writer:
            _, end = session_summaries({}, "", FAILED if failed else COMPLETED, 0.0, time.time())
            self._trial_writer[trial].file_writer.add_summary(_as_tbx(end))
        super().log_trial_end(trial, failed)

    def _try_log_hparams(self, trial, result):
        pass  # the session is written above; the experiment tag by the report step


def _scalars(result: dict) -> dict | None:
    """The scalars Ray's TBX logger would write for ``result`` (``ray/tune/<flat key>``, NaNs
    left out), or None when the result holds something else it logs (lists, arrays).

    >>> _scalars({"val_accuracy": 0.5, "config": {"lr": 0.1}, "training_iteration": 3,
    ...           "info": {"loss": float("nan"), "n": 2}, "trial_id": "abc"})
    {'ray/tune/val_accuracy': 0.5, 'ray/tune/info/n': 2}
    >>> _scalars({"val_accuracy": 0.5, "curve": np.array(0.25)}) is None  # Ray's histogram path
    True
    """
    flat = flatten_dict({k: v for k, v in result.items()
                         if k not in ("config", "pid", "timestamp", TIME_TOTAL_S,
                                      TRAINING_ITERATION)}, delimiter="/")
    scalars = {}
    for key, value in flat.items():
        if isinstance(value, tuple(VALID_SUMMARY_TYPES)):
            if not np.isnan(value):
                scalars[f"ray/tune/{key}"] = value
        elif ((isinstance(value, list) and len(value) > 0)
              or (isinstance(value, np.ndarray) and value.size > 0)):
            return None
    return scalars
