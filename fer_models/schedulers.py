"""The learning-rate schedules a TrainConfig may name (``scheduler``), built with timm's
``create_scheduler_v2``: one registry that the search space's validation, the trainer and the
retrain all read.

Example:
    >>> sorted(SCHEDULES)
    ['cosine', 'none', 'plateau']
    >>> SCHEDULES["plateau"].needs_validation
    True
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

__all__ = ["ScheduleInfo", "SCHEDULES", "schedule_info", "create_lr_scheduler"]


@dataclass(frozen=True)
class ScheduleInfo:
    name: str
    description: str
    needs_validation: bool   # steps on the PublicTest loss: impossible with train_on_public
    # (cfg, optimizer, steps_per_epoch) -> a timm scheduler, or None for a constant lr
    build: Callable[..., object]


def _cosine(cfg, optimizer, steps_per_epoch: int):
    from timm.scheduler import create_scheduler_v2

    scheduler, _ = create_scheduler_v2(
        optimizer, sched="cosine", num_epochs=cfg.epochs, min_lr=cfg.min_lr,
        warmup_epochs=cfg.warmup_epochs, warmup_lr=cfg.lr * 0.01,
        step_on_epochs=False, updates_per_epoch=steps_per_epoch)
    return scheduler


def _plateau(cfg, optimizer, steps_per_epoch: int):
    from timm.scheduler import create_scheduler_v2

    scheduler, _ = create_scheduler_v2(
        optimizer, sched="plateau", num_epochs=cfg.epochs, decay_rate=cfg.plateau_factor,
        patience_epochs=cfg.plateau_patience, min_lr=cfg.min_lr, plateau_mode="min")
    return scheduler


SCHEDULES: dict[str, ScheduleInfo] = {info.name: info for info in (
    ScheduleInfo("cosine", "cosine decay per step to min_lr, after warmup_epochs of linear warm-up",
                 False, _cosine),
    ScheduleInfo("plateau", "the seed's ReduceLROnPlateau: x plateau_factor when the PublicTest "
                 "loss stalls plateau_patience epochs", True, _plateau),
    ScheduleInfo("none", "a constant learning rate", False, lambda cfg, optimizer, steps: None),
)}


def schedule_info(name: str) -> ScheduleInfo:
    """The registry entry of ``name``; ValueError naming the choices when there is none."""
    try:
        return SCHEDULES[name]
    except KeyError:
        raise ValueError(f"scheduler must be one of {', '.join(SCHEDULES)}, got {name!r}") from None


def create_lr_scheduler(cfg, optimizer, steps_per_epoch: int):
    """The schedule ``cfg.scheduler`` over ``optimizer`` (None for a constant lr)."""
    return schedule_info(cfg.scheduler).build(cfg, optimizer, steps_per_epoch)
