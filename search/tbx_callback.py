"""Ray's TBXLoggerCallback, writing what a person watching a search looks for.

Use it in ``tune.RunConfig(callbacks=[SearchTBXLoggerCallback()])``; Tune then adds no default TBX
logger of its own (it checks ``isinstance(c, TBXLoggerCallback)``). It differs from Ray's:

* scalars under the project's tags (``PublicTest/accuracy``, ``train/loss``, ``speed/...``:
  ``search.tensorboard_logs.EPOCH_TAGS``, the retrain's too, so runs overlay), plus
  ``PublicTest/best_accuracy`` (the selection metric so far) and ``search/status`` (running until
  the trial ends, then completed, stopped early or failed); Ray's bookkeeping (``done``,
  iteration counters, row counts) is not written as curves;
* a trial's session starts when the trial starts, so running trials are listed in the HParams tab
  with every column filled (Ray writes the session only when the trial ends);
* it ends with STATUS_FAILURE for a failed trial (Ray: always SUCCESS), and a trial that fails
  before its first result still has a session (Ray: none);
* no per-trial ``_hparams_/experiment``: TensorBoard uses the first one it meets, and with its
  fast (Rust) loader that is a random trial's, which hides the search-wide summary the driver
  writes (``search.tensorboard_logs.write_hparams_experiment``);
* a trial's writer is flushed at most every FLUSH_EVERY_S seconds (and when it ends), not after
  every result: Ray flushes each result and tensorboardX fsyncs each flush, a few ms apiece on
  the driver (more on a network file system) (bench/bench_scale.py). tensorboardX writes events
  from a queue in a thread of its own, so the newest result can reach the disk up to Ray's
  30-s flush interval later;
* a result's scalars go out as one event holding all of them, not one event each (tensorboardX
  checksums each event in pure Python: ~1.4 ms of driver CPU per result as Ray does it, ~0.3 ms
  as one event).
"""
from __future__ import annotations

import time
from pathlib import Path

from ray.tune.result import TRAINING_ITERATION
from ray.tune.utils import flatten_dict
from tensorboardX.proto.summary_pb2 import Summary

from .private_api import TBXWithTrialWriters
from .experiment_folder import COMPLETED, FAILED, STOPPED_EARLY
from .tensorboard_logs import (RUNNING, STATUS_CODES, STATUS_TAG, epoch_scalars, running_best,
                               scalar_summary, session_summaries, write_events_file)
from .trainable import FINISHED_KEY
from .trial_names import session_group

FLUSH_EVERY_S = 5.0


class ThrottledFlush:
    """A trial's SummaryWriter whose ``flush`` does the work at most every ``every_s`` seconds;
    everything else (``close`` included, which flushes) goes to the writer."""

    def __init__(self, writer, every_s: float):
        self.writer, self.every_s, self.last = writer, every_s, time.monotonic()

    def flush(self):
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self.writer.flush()

    def __getattr__(self, name):
        return getattr(self.writer, name)


def _as_tbx(summary):
    """tensorboard's Summary proto as tensorboardX's (same schema, different Python classes)."""
    return Summary.FromString(summary.SerializeToString())


class SearchTBXLoggerCallback(TBXWithTrialWriters):
    def __init__(self):
        super().__init__()
        self.best_accuracy: dict = {}   # trial -> its best PublicTest accuracy so far

    def log_trial_start(self, trial):
        # The session start (and the "running" status) goes to a small file of its own, written
        # and closed at once (Ray's writer is asynchronous and flushes every 30 s). Its name sorts
        # before the events file Ray's writer opens next, so TensorBoard's sequential loader
        # reads it first, then follows Ray's file.
        trial.init_local_path()
        params = flatten_dict(dict(trial.evaluated_params or trial.config or {}), delimiter="/")
        now = time.time()
        group = session_group(Path(trial.local_path).name, str(trial.trial_id))
        start, _ = session_summaries(params, group, "", now, 0.0)
        running = scalar_summary({STATUS_TAG: STATUS_CODES[RUNNING]})
        write_events_file(Path(trial.local_path), [start, running], stamp=int(now) - 1,
                          suffix=".session")
        super().log_trial_start(trial)
        self.set_trial_writer(trial, ThrottledFlush(self.trial_writer(trial), FLUSH_EVERY_S))

    def log_trial_result(self, iteration: int, trial, result: dict):
        if not self.has_writer(trial):
            self.log_trial_start(trial)
        self.best_accuracy[trial] = running_best(self.best_accuracy.get(trial), result)
        scalars = epoch_scalars(result, self.best_accuracy[trial])
        if scalars:
            summary = Summary(value=[Summary.Value(tag=tag, simple_value=value)
                                     for tag, value in scalars.items()])
            self.trial_writer(trial).file_writer.add_summary(summary, result[TRAINING_ITERATION])
        self.set_trial_scalars(trial, scalars)
        self.trial_writer(trial).flush()

    def log_trial_end(self, trial, failed: bool = False):
        if self.has_writer(trial):
            if failed:
                status = FAILED
            else:
                status = COMPLETED if (trial.last_result or {}).get(FINISHED_KEY, True) \
                    else STOPPED_EARLY
            step = int((trial.last_result or {}).get(TRAINING_ITERATION) or 0)
            writer = self.trial_writer(trial).file_writer
            writer.add_summary(Summary(value=[Summary.Value(
                tag=STATUS_TAG, simple_value=float(STATUS_CODES[status]))]), step)
            _, end = session_summaries({}, "", FAILED if failed else COMPLETED, 0.0, time.time())
            writer.add_summary(_as_tbx(end))
        self.best_accuracy.pop(trial, None)
        super().log_trial_end(trial, failed)
