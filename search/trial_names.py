"""Trial names a person can read and sort, for the trial folder and its TensorBoard run alike.

Ray Tune names a trial folder ``train_trial_<id>_<n>_<every value>_<date>``: ~150 characters,
cut off in TensorBoard's run selector and the same for the first 60 across trials. Here:
``t<n>-<id>`` (n in four digits, so a thousand trials sort) then the searched values that differ from the space's default configuration
(the default itself is ``default``), short and filesystem-safe. ``n`` is the creation counter
Ray puts at the head of ``Trial.experiment_tag``.

    >>> from types import SimpleNamespace
    >>> trial = SimpleNamespace(trial_id="54ad50bf", experiment_tag="3_crop=44,lr=0.0045",
    ...                         config={"crop": 44, "lr": 0.0045, "epochs": 12})
    >>> trial_dirname(trial, searched=("crop", "lr"), default={"crop": 0, "lr": 0.0045})
    't0003-54ad50bf_crop=44'
"""
from __future__ import annotations

import re
from functools import partial

__all__ = ["trial_dirname", "trial_namer", "trial_number", "session_group", "NAME_RE"]

MAX_VALUES_CHARS = 60
# What trial_dirname writes: t<number>-<trial id>[_<values>]
NAME_RE = re.compile(r"^t(?P<number>\d+)-(?P<trial_id>[0-9a-f]+)(?:_|$)")


def trial_number(trial) -> int:
    """The creation counter (1, 2, ...) Ray's search generator puts at the head of the tag."""
    head = str(getattr(trial, "experiment_tag", "") or "").split("_", 1)[0]
    return int(head) if head.isdigit() else 0


def _short(value) -> str:
    if isinstance(value, float):
        value = f"{value:.3g}"
    return re.sub(r"[^A-Za-z0-9.+-]", "-", str(value))


def trial_dirname(trial, searched, default: dict) -> str:
    """``t<number>-<id>`` and the searched values that differ from ``default``."""
    config = trial.config or {}
    changed = [f"{k}={_short(config[k])}" for k in searched
               if k in config and config[k] != default.get(k)]
    values = ",".join(changed) if changed else "default"
    if len(values) > MAX_VALUES_CHARS:
        values = values[:MAX_VALUES_CHARS].rsplit(",", 1)[0] + ",..."
    return f"t{trial_number(trial):04d}-{trial.trial_id}_{values}"


def trial_namer(searched, default: dict):
    """A picklable ``trial_dirname_creator`` / ``trial_name_creator`` for a space."""
    return partial(trial_dirname, searched=tuple(searched), default=dict(default))


def session_group(run_dir_name: str, trial_id: str) -> str:
    """The HParams table's "Trial ID" of a trial: its folder's ``t<number>-<id>``, so the
    table's rows sort in trial order as the Scalars runs do; the bare id for a folder named
    otherwise.

    >>> session_group("t0003-54ad50bf_crop=44", "54ad50bf")
    't0003-54ad50bf'
    >>> session_group("train_trial_54ad50bf_3", "54ad50bf")
    '54ad50bf'
    """
    match = NAME_RE.match(run_dir_name)
    return f"t{match['number']}-{trial_id}" if match and match["trial_id"] == trial_id else trial_id
