"""The retrain's learning curves in TensorBoard while it trains, not only once it has ended.

The retrain runs as Ray tasks, on a cluster on other nodes than the experiment folder's, so each
task sends its epochs through a Ray queue (``ray.util.queue.Queue``) and the driver, the folder's
one writer, turns them into events as they arrive, under the trials' tags (so the curves overlay
theirs):

* ``retrain/``: the run that becomes ``model/`` (the winner's first seed). When the retrain ends,
  :func:`search.tensorboard_logs.write_retrain_run` replaces these events with the same curve
  plus the PrivateTest scores;
* ``retrain/<member>``: every other run (``member-0-seed1``: the winner's other seeds;
  ``member-1``: the next config of a top-k ensemble), kept as written.
"""
from __future__ import annotations

from pathlib import Path

import ray
from ray.util.queue import Queue

from .experiment_folder import ExperimentFolder
from .tensorboard_logs import epoch_scalars, run_writer, running_best

POLL_SECONDS = 1.0  # how often the driver drains the queue while the tasks train


class RetrainCurves:
    """The queue the retrain tasks report to, and the driver's writer of what they report."""

    def __init__(self, experiment: Path):
        self.root = ExperimentFolder(experiment).retrain_run
        self.queue = Queue(actor_options={"num_cpus": 0})  # holds no CPU a training could use
        self.writers: dict[str, object] = {}
        self.last_epoch: dict[str, int] = {}
        self.best: dict[str, float | None] = {}

    def follow(self, refs: list) -> None:
        """Write what the tasks report until every one of ``refs`` has ended."""
        pending = list(refs)
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_SECONDS)
            self.write_reported()

    def write_reported(self) -> None:
        n = self.queue.qsize()
        if not n:
            return
        for run, metrics in self.queue.get_nowait_batch(n):
            self.record(run, metrics)
        for writer in self.writers.values():
            writer.flush()

    def record(self, run: str, metrics: dict) -> None:
        """One epoch of ``run``. An epoch at or before the last one seen is a retried task
        starting over: its run starts over too."""
        epoch = int(metrics["epoch"])
        if run in self.writers and epoch <= self.last_epoch[run]:
            self.writers.pop(run).close()
        if run not in self.writers:
            self.writers[run] = run_writer(self.root / run if run else self.root)
            self.best[run] = None
        self.last_epoch[run] = epoch
        self.best[run] = running_best(self.best[run], metrics)
        for tag, value in epoch_scalars(metrics, self.best[run]).items():
            self.writers[run].add_scalar(tag, value, global_step=epoch)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
        self.queue.shutdown()
