"""Fault injection, on the test side only: a model that diverges on demand (handed to ``fit``
through its ``model`` argument) and trial functions swapped in through ``trial_fn``."""
from __future__ import annotations

import torch

from fer_models.config import TrainConfig
from fer_models.train import NonFiniteLossError, build_model, fit  # noqa: F401  (for callers)
from search.trainable import train_trial


class DivergingModel(torch.nn.Module):
    """Wraps a model; once ``diverged`` is set, its training outputs are NaN, as a run whose
    learning rate blew up. Evaluation is untouched."""

    def __init__(self, model: torch.nn.Module, diverged: bool = False):
        super().__init__()
        self.inner = model
        self.diverged = diverged

    def forward(self, x):
        out = self.inner(x)
        return out * float("nan") if self.diverged and self.training else out


def diverging(cfg: TrainConfig, diverged: bool = True) -> DivergingModel:
    return DivergingModel(build_model(cfg, torch.device("cpu")), diverged)


def trial_diverging_when_seed_is_1(config: dict, data, threads: int = 1,
                                   checkpoint: bool = True) -> None:
    """The real trial, except that a config with ``seed: 1`` gets a NaN loss in epoch 1."""
    if config.get("seed") != 1:
        return train_trial(config, data, threads, checkpoint)
    torch.set_num_threads(max(int(threads), 1))
    cfg = TrainConfig.from_dict(config)
    fit(cfg, data, model=diverging(cfg))


def trial_always_diverging(config: dict, data, threads: int = 1, checkpoint: bool = True) -> None:
    torch.set_num_threads(max(int(threads), 1))
    cfg = TrainConfig.from_dict(config)
    fit(cfg, data, model=diverging(cfg))
