"""The shapes of summary.json and metrics.json, checked where a results folder is read back.

A results folder may come from another person, an earlier version or an editor: the report, the
TensorBoard writer and warm start read these two records and format their numbers. A record whose
known keys do not have the types this tool writes is refused with one line naming the file and the
key (:class:`~fer_models.textfiles.InputFileError`), before anything is drawn or written. Keys this
version does not know pass (a later version may add some); a known key must have its shape.

>>> check_metrics({}, "metrics.json")  # nothing scored yet
>>> check_metrics({"n": 3589, "accuracy": "0.7", "macro_f1": 0.6, "loss": 0.9}, "metrics.json")
Traceback (most recent call last):
...
fer_models.textfiles.InputFileError: metrics.json: accuracy is '0.7', not a number in [0, 1]; it was not written by this tool or was edited
"""
from __future__ import annotations

import math
from typing import Callable

from fer_models.constants import EMOTIONS
from fer_models.textfiles import InputFileError

__all__ = ["check_metrics", "check_summary"]

# A check returns None when the value fits, else what it should have been.
Check = Callable[[object], "str | None"]


def _number(lo: float | None = None, hi: float | None = None, finite: bool = True) -> Check:
    span = ("a number" if lo is None and hi is None
            else f"a number >= {lo:g}" if hi is None
            else f"a number <= {hi:g}" if lo is None
            else f"a number in [{lo:g}, {hi:g}]")

    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return span
        if math.isnan(v) or math.isinf(v):
            return None if not finite else span
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            return span
        return None
    return check


def _integer(lo: int = 0) -> Check:
    return lambda v: (None if isinstance(v, int) and not isinstance(v, bool) and v >= lo
                      else f"an integer >= {lo}")


def _text(v) -> str | None:
    return None if isinstance(v, str) else "text"


def _flag(v) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def _optional(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


def _list_of(check: Check, length: int | None = None) -> Check:
    def run(v):
        if not isinstance(v, list) or (length is not None and len(v) != length):
            return "a list" if length is None else f"a list of {length}"
        return next((f"a list whose item {i} is {want}" for i, x in enumerate(v)
                     if (want := check(x))), None)
    return run


def _mapping_of(check: Check) -> Check:
    def run(v):
        if not isinstance(v, dict):
            return "a mapping"
        return next((f"a mapping whose {k!r} is {want}" for k, x in v.items()
                     if (want := check(x))), None)
    return run


def _record(fields: dict[str, Check], required: tuple[str, ...] = ()) -> Check:
    """A mapping holding ``required`` whose known keys fit their checks; names the first that
    does not."""
    def run(v):
        if not isinstance(v, dict):
            return "a mapping"
        missing = [k for k in required if k not in v]
        if missing:
            return f"a mapping with {', '.join(missing)}"
        for key, check in fields.items():
            if key in v and (want := check(v[key])):
                return f"a mapping whose {key} is {want}"
        return None
    return run


SHARE = _number(0, 1)
CLASSES = len(EMOTIONS)
SCORES = {  # fer_models.evaluate's figures for one split
    "n": _integer(1), "accuracy": SHARE, "loss": _number(0, finite=False), "macro_f1": SHARE,
    "per_class_accuracy": _mapping_of(_optional(SHARE)),
    "confusion_matrix": _list_of(_list_of(_integer(0), CLASSES), CLASSES),
}
REPORTED = ("n", "accuracy", "macro_f1", "loss")  # what the report prints of a split's scores
SEED_SCORES = {"seed": _integer(0), "weights_epoch": _optional(_integer(0)), "accuracy": SHARE,
               "macro_f1": SHARE, "accuracy_tta": _optional(SHARE)}
METRICS = {
    **SCORES, "split": _text, "seed": _integer(0), "retrain_epochs": _integer(0),
    "accuracy_mean": SHARE, "accuracy_sd": _optional(_number(0)),
    "per_seed": _list_of(_record(SEED_SCORES, required=("seed", "accuracy", "macro_f1"))),
    "retrain_seconds": _number(0),
    "tta": _record(SCORES, required=REPORTED),
    "ensemble": _record({**SCORES, "k": _integer(1), "tta": _record(SCORES),
                         "members": _list_of(_record(
                             {**SEED_SCORES, "member": _text, "trial_id": _optional(_text),
                              "backbone": _text},
                             required=("member", "backbone", "accuracy", "macro_f1")))},
                        required=("k", "members", "accuracy", "macro_f1")),
}
PARETO_ROW = {"trial_id": _text, "backbone": _text, "input_size": _integer(1),
              "public_test_accuracy": SHARE, "private_test_accuracy": SHARE,
              "latency_ms_search": _number(0), "latency_ms_retrained": _number(0),
              "params_m": _number(0)}
_COMPARED = ("gain_pt", "winner_public_test_accuracy", "default_public_test_accuracy")
_VS_DEFAULT = _record({"default_trial": _text, "default_status": _text,
                       "default_epochs": _optional(_integer(0)), "winner_is_default": _flag,
                       "compared_at_epoch": _optional(_integer(0)), "gain_pt": _number(),
                       "winner_public_test_accuracy": SHARE, "default_public_test_accuracy": SHARE},
                      required=("default_trial", "default_status", "winner_is_default"))


def _comparison(v) -> str | None:
    """search/default_baseline.py's record: the three figures whenever an epoch was compared."""
    want = _VS_DEFAULT(v)
    if want or v.get("compared_at_epoch") is None or v["winner_is_default"]:
        return want
    missing = [k for k in _COMPARED if v.get(k) is None]
    return f"a mapping with {', '.join(missing)}" if missing else None


MEASURES = {"latency_ms": _number(0), "params_m": _number(0), "macs_m": _number(0)}
SUMMARY = {
    "space": _text, "experiment": _text, "command": _text, "sampler": _text, "scheduler": _text,
    "metric": _text, "search_ended_by": _text, "best_trial": _optional(_text),
    "seed": _optional(_integer(0)),
    **{k: _integer(0) for k in ("trials_requested", "trials_run", "trials_completed",
                                "trials_stopped_early", "trials_failed", "total_epochs",
                                "retrain_epochs", "private_test_n", "ensemble_k",
                                "private_test_looks")},
    **{k: _optional(SHARE) for k in (
        "best_public_test_accuracy", "private_test_accuracy", "private_test_accuracy_mean",
        "private_test_accuracy_tta", "ensemble_private_test_accuracy",
        "ensemble_private_test_accuracy_tta")},
    "private_test_accuracy_sd": _optional(_number(0)),
    "wall_seconds": _number(0),
    "retrain_seeds": _list_of(_integer(0)),
    "default_config": _optional(_mapping_of(lambda v: None)),
    "vs_default": _optional(_comparison),
    "objectives": _mapping_of(lambda v: None if v in ("max", "min") else "'max' or 'min'"),
    "constraints": _optional(_mapping_of(_mapping_of(_number()))),
    "winner_measures_retrained": _optional(_record({**MEASURES, "machine": _text},
                                                   required=(*MEASURES, "machine"))),
    "pareto_retrained": _optional(_list_of(_record(PARETO_ROW, required=tuple(PARETO_ROW)))),
}


def _check(record: dict, fields: dict[str, Check], path) -> None:
    for key, check in fields.items():
        if key in record and (want := check(record[key])):
            shown = repr(record[key])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise InputFileError(f"{path}: {key} is {shown}, not {want}; it was not written by "
                                 "this tool or was edited")


def check_metrics(record: dict, path) -> None:
    """Raise InputFileError naming ``path`` and the first key of metrics.json out of shape
    (an empty record is a retrain that has not scored yet)."""
    missing = [k for k in REPORTED if record and k not in record]
    if missing:
        raise InputFileError(f"{path}: lacks {', '.join(missing)}; it was not written by this "
                             "tool or was edited")
    _check(record, METRICS, path)


def check_summary(record: dict, path) -> None:
    """Raise InputFileError naming ``path`` and the first key of summary.json out of shape."""
    _check(record, SUMMARY, path)
