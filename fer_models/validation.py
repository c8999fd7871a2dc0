"""One rule per TrainConfig field: its type, its range, the names it accepts.

The same rules check a space's fixed values, choices and both ends of every range
(``search.space``), ``fer_models.train``'s flags and :func:`fer_models.train.fit`, so a bad value
is refused once, the same way, before anything trains.

Example:
    >>> from fer_models.validation import check_field
    >>> check_field("dropout", 0.3)
    >>> check_field("lr", -0.1)
    Traceback (most recent call last):
        ...
    fer_models.validation.ConfigError: lr: must be > 0, got -0.1
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["ConfigError", "Rule", "RULES", "check_field", "describe"]


class ConfigError(ValueError):
    """A TrainConfig value outside what its field accepts; the message starts with the field."""


@functools.lru_cache(maxsize=1)
def _optimizers() -> list[str]:
    from timm.optim import list_optimizers

    return list(list_optimizers())


def _schedulers() -> list[str]:
    from .schedulers import SCHEDULES

    return list(SCHEDULES)


@functools.lru_cache(maxsize=256)
def _check_backbone(name: str) -> str | None:
    from .models import ModelConfigError, check_backbone

    try:
        check_backbone(name)
    except ModelConfigError as e:
        return str(e)
    return None


def _check_device(name: str) -> str | None:
    if name in ("auto", "cpu", "mps") or re.fullmatch(r"cuda(:\d+)?", name):
        return None
    return f"must be auto, cpu, cuda, cuda:N or mps, got {name!r}"


@dataclass(frozen=True)
class Rule:
    """What one field accepts. Bounds are inclusive unless ``*_open``; ``also`` lists values
    accepted outside the bounds (crop 0 = no crop); ``names`` the allowed strings;
    ``check`` a function returning an error message or None."""

    type: str                                 # int | float | bool | str | str?
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    also: tuple = ()
    names: Callable[[], list[str]] | tuple | None = None
    check: Callable[[Any], str | None] | None = None
    why: str = ""                             # said after the error: what the bound means


def _unit(open_high: bool = False, why: str = "") -> Rule:
    return Rule("float", 0.0, 1.0, high_open=open_high, why=why)


RULES: dict[str, Rule] = {
    # model
    "backbone": Rule("str", check=_check_backbone),
    "input_size": Rule("int", 16, 1024),
    "in_chans": Rule("int", names=(1, 3), why="1: grayscale, 3: grey replicated"),
    "dropout": _unit(open_high=True),
    "drop_path": _unit(open_high=True),
    "head_hidden": Rule("int", 0, 65536),
    "pre_logits": Rule("bool"),
    "stem_pool": Rule("bool"),
    "pretrained": Rule("bool"),
    "pretrained_file": Rule("str?"),
    # optimisation
    "epochs": Rule("int", 1, 100000),
    "batch_size": Rule("int", 2, 65536, why="BatchNorm needs two images a batch"),
    "optimizer": Rule("str", names=_optimizers),
    "lr": Rule("float", 0.0, 10.0, low_open=True),
    "weight_decay": Rule("float", 0.0, 10.0),
    "layer_decay": _unit(why="0: off; each layer below the top gets this factor of the lr"),
    "head_warmup_epochs": Rule("int", 0, 100000, why="0: off"),
    "momentum": _unit(open_high=True),
    "scheduler": Rule("str", names=_schedulers),
    "warmup_epochs": Rule("float", 0.0, 100000.0),
    "min_lr": Rule("float", 0.0, 10.0),
    "plateau_factor": Rule("float", 0.0, 1.0, low_open=True, high_open=True),
    "plateau_patience": Rule("int", 0, 100000),
    "early_stop_patience": Rule("int", 0, 100000, why="0: off"),
    "keep_best": Rule("bool"),
    "label_smoothing": _unit(open_high=True),
    "grad_clip": Rule("float", 0.0, 1e9, why="0: off"),
    "ema_decay": _unit(open_high=True, why="0: off"),
    "mixup_alpha": Rule("float", 0.0, 100.0, why="0: off"),
    "cutmix_alpha": Rule("float", 0.0, 100.0, why="0: off"),
    "mixup_prob": _unit(),
    # augmentation
    "hflip": _unit(why="a probability"),
    "translate": Rule("float", 0.0, 0.5, why="a fraction of the side"),
    "rotate": Rule("float", 0.0, 180.0, why="degrees"),
    "scale": _unit(open_high=True, why="zoom in [1 - scale, 1 + scale]"),
    "erase_prob": _unit(why="a probability"),
    "erase_max_area": Rule("float", 0.02, 1.0, why="a fraction of the image"),
    "crop": Rule("int", 8, 48, also=(0,), why="px of the 48 px face; 0: no crop"),
    # runtime
    "seed": Rule("int", 0, 2**32 - 1),
    "device": Rule("str", check=_check_device),
    "threads": Rule("int", 0, 4096, why="0: torch's default"),
    "channels_last": Rule("bool"),
    "precision": Rule("str", names=("auto", "bf16", "fp32"),
                      why="auto: bf16 on CUDA; bf16: also on CPUs with bf16 instructions"),
    "small_map_convs": Rule("bool"),
    "fused_optimizer": Rule("bool"),
    "eval_batch_size": Rule("int", 1, 1 << 20),
    "train_on_public": Rule("bool"),
}


def _type_ok(value, kind: str) -> bool:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return {"int": isinstance(value, int) and not isinstance(value, bool),
            "float": is_number, "bool": isinstance(value, bool), "str": isinstance(value, str),
            "str?": value is None or isinstance(value, str)}[kind]


def describe(rule: Rule) -> str:
    """The accepted values in words, e.g. 'a number in [0, 1)'."""
    if rule.names is not None:
        names = rule.names() if callable(rule.names) else rule.names
        return "one of " + ", ".join(map(str, names))
    if rule.low is None:
        return {"bool": "true or false", "str?": "a string or null"}.get(rule.type, f"a {rule.type}")
    noun, fmt = ("an integer", "d") if rule.type == "int" else ("a number", "g")
    text = (f"{noun} in {'(' if rule.low_open else '['}{rule.low:{fmt}}, {rule.high:{fmt}}"
            f"{')' if rule.high_open else ']'}")
    return text + "".join(f" or {v}" for v in rule.also)


def check_field(name: str, value) -> None:
    """Raise ConfigError unless ``value`` is one ``name`` accepts. Unknown names pass: the
    dataclass refuses those itself, with close matches."""
    rule = RULES.get(name)
    if rule is None:
        return
    why = f" ({rule.why})" if rule.why else ""
    if not _type_ok(value, rule.type):
        raise ConfigError(f"{name}: must be {describe(rule)}{why}, got {value!r} "
                          f"({type(value).__name__})")
    if value in rule.also:
        return
    if rule.names is not None:
        names = list(rule.names() if callable(rule.names) else rule.names)
        # Exact: every reader looks names up as written (a schedule table, precision == "bf16").
        if value not in names:
            if not isinstance(value, str):
                raise ConfigError(f"{name}: must be {describe(rule)}{why}, got {value!r}")
            import difflib

            close = [n for n in names if isinstance(n, str) and n.lower() == value.lower()] \
                or difflib.get_close_matches(value, names, n=2)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            listed = f" (one of {', '.join(names)})" if len(names) < 12 else ""
            raise ConfigError(f"{name}: unknown {name} {value!r}{hint}{listed}")
    if rule.check is not None and (message := rule.check(value)) is not None:
        raise ConfigError(f"{name}: {message}")
    if rule.low is not None:
        below = value <= rule.low if rule.low_open else value < rule.low
        above = value >= rule.high if rule.high_open else value > rule.high
        if below or above or value != value:  # value != value: NaN
            bound = f"> {rule.low:g}" if rule.low_open and below else describe(rule)
            raise ConfigError(f"{name}: must be {bound}{why}, got {value!r}")

