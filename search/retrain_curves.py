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

from dataclasses import dataclass
from pathlib import Path

import ray
from ray.util.queue import Queue

from .experiment_folder import ExperimentFolder
from .tensorboard_logs import epoch_scalars, run_writer, running_best

POLL_SECONDS = 1.0  # how often the driver drains the queue while the tasks train


@dataclass
class _Run:
    """One retrain run's event writer, its last epoch and its best PublicTest accuracy so far."""
    writer: object
    last_epoch: int = 0
    best: float | None = None


class RetrainCurves:
    """The queue the retrain tasks report to, and the driver's writer of what they report."""

    def __init__(self, experiment: Path):
        self.root = ExperimentFolder(experiment).retrain_run
        self.queue = Queue(actor_options={"num_cpus": 0})  # holds no CPU a training could use
        self.runs: dict[str, _Run] = {}

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
        for r in self.runs.values():
            r.writer.flush()

    def record(self, run: str, metrics: dict) -> None:
        """One epoch of ``run``. An epoch at or before the last one seen is a retried task
        starting over: its run starts over too."""
        epoch = int(metrics["epoch"])
        if run in self.runs and epoch <= self.runs[run].last_epoch:
            self.runs.pop(run).writer.close()
        if run not in self.runs:
            self.runs[run] = _Run(run_writer(self.root / run if run else self.root))
        r = self.runs[run]
        r.last_epoch = epoch
        r.best = running_best(r.best, metrics)
        for tag, value in epoch_scalars(metrics, r.best).items():
            r.writer.add_scalar(tag, value, global_step=epoch)

    def close(self) -> None:
        for r in self.runs.values():
            r.writer.close()
        self.runs.clear()
        self.queue.shutdown()
