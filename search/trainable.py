"""One Ray Tune trial: build a TrainConfig from the sampled config and train it, reporting each
epoch. Runs on any node: everything it reads comes through Ray (the dataset via the object
store, the resume state via Tune's checkpoint), never from a path on the driver's machine."""
from __future__ import annotations

import logging
import tempfile
import time

import ray
import torch
from ray import tune

from fer_models.checkpoint import load_state, save_state
from fer_models.config import TrainConfig
from fer_models.data import FER2013
from fer_models.profile import profile_config
from fer_models.train import fit

# Result keys the driver and the searcher read.
FINISHED_KEY = "trial_finished"      # True on a trial's last epoch: it was not stopped early


class CheckpointPacer:
    """When a trial checkpoints: after every epoch (``every_s`` 0), or once at least ``every_s``
    seconds have passed since its last checkpoint (or its start). Fewer checkpoints mean fewer
    bytes written per epoch and fewer experiment snapshots for Tune, which forces one whenever
    a trial has saved ``num_to_keep`` checkpoints; a retried trial redoes at most ``every_s``.

    Example:
        >>> pacer = CheckpointPacer(every_s=0)
        >>> pacer.due()
        True
    """

    def __init__(self, every_s: float = 0.0, clock=time.monotonic):
        self.every_s, self.clock = float(every_s), clock
        self.last = clock()

    def due(self) -> bool:
        now = self.clock()
        if now - self.last < self.every_s:
            return False
        self.last = now
        return True


def train_trial(config: dict, data: FER2013, threads: int = 1, checkpoint: bool = True,
                measure: bool = False, checkpoint_every_s: float = 0.0) -> None:
    """The Tune function trainable; ``data`` arrives via ``tune.with_parameters``. ``measure``:
    profile the trial's model (params, MACs, ONNX Runtime latency on this node) once, before
    training, and carry the figures in every result (a stopped trial has them too).
    ``checkpoint_every_s``: see :class:`CheckpointPacer`."""
    if data.private_test is not None:  # the driver must strip it; refuse to run otherwise
        raise RuntimeError("PrivateTest must not be handed to search trials")
    torch.set_num_threads(max(int(threads), 1))
    # Ray Train's storage module logs "Checkpoint successfully created at: <path>" per epoch per
    # trial, in the worker; the driver's console already has one line per trial event.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    cfg = TrainConfig.from_dict(config)
    resume_state = None
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            resume_state = load_state(d)

    # Where the trial ran: several raylets can share one IP, so the node id, not node_ip.
    where = {"node_id": ray.get_runtime_context().get_node_id()}
    # What the trial trained and was ranked on, in every result. PrivateTest cannot be here: the
    # refusal above is the guard (tests/test_search_e2e.py); the figure that can show a leak is
    # summary.json's private_test_copies (faces of these splits identical to a PrivateTest face).
    seen = {"train_rows": len(data.train), "public_test_rows": len(data.public_test)}

    if measure:
        profile = profile_config(cfg, threads=max(int(threads), 1)).to_dict()
        where.update({k: v for k, v in profile.items() if k != "machine"},
                     latency_machine=profile["machine"])

    pacer = CheckpointPacer(checkpoint_every_s)

    def report(metrics: dict, get_state) -> None:
        finished = bool(metrics["final_epoch"])  # the last epoch, or the trainer's early stop
        result = {**metrics, FINISHED_KEY: finished, **seen, **where}
        if not checkpoint or not pacer.due():
            tune.report(result)
            return
        with tempfile.TemporaryDirectory() as d:
            save_state(d, get_state())
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(d))

    fit(cfg, data, on_epoch=report, resume_state=resume_state)
