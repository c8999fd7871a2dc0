"""Several objectives and constraints for a search: accuracy against what a model costs to
deploy (parameters, MACs, batch-1 latency: :mod:`fer_models.profile`).

A space may say::

    objectives: {val_accuracy: max, latency_ms: min}      # the first one ranks, ASHA stops on it
    constraints: {latency_ms: {max: 5.0}, params_m: {max: 3.0}}

Optuna's multi-objective samplers (TPE, NSGA-II) model the objectives through Ray's
OptunaSearch; each constraint reaches the study through ``Trial.set_constraint`` (feasible when
<= 0). The winner is the most accurate trial that meets every constraint; the Pareto front is
the completed, feasible trials no other such trial beats on every objective.

Example:
    >>> import pandas as pd
    >>> table = pd.DataFrame({"best_val_accuracy": [0.60, 0.58, 0.55, 0.61],
    ...                       "latency_ms": [2.0, 1.0, 1.5, 9.0], "status": COMPLETED,
    ...                       "feasible": [True, True, True, False]})
    >>> pareto_front(table, {"val_accuracy": "max", "latency_ms": "min"}).index.tolist()
    [0, 1]
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fer_models.profile import PROFILE_METRICS

from .experiment_folder import COMPLETED

# What each objective is called in a trial's results, its direction, and its trials.csv column.
RANKING = {"val_accuracy": "max", "val_loss": "min"}           # PublicTest, what ASHA compares
DIRECTIONS = {**RANKING, **{name: "min" for name in PROFILE_METRICS}}
COLUMNS = {"val_accuracy": "best_val_accuracy", "val_loss": "best_val_loss",
           **{name: name for name in PROFILE_METRICS}}
BOUNDS = ("max", "min")


def parse_objectives(raw, err) -> dict[str, str]:
    """``objectives`` of a space, checked: a name (val_accuracy, the default, or val_loss) or a
    mapping of objective to max/min whose first key ranks the trials."""
    if raw is None:
        raw = "val_accuracy"
    if isinstance(raw, str):
        if raw not in RANKING:
            raise err("objectives", f"one objective is one of {', '.join(RANKING)}, got {raw!r}; "
                      "several are a mapping, e.g. {val_accuracy: max, latency_ms: min}")
        return {raw: RANKING[raw]}
    if not isinstance(raw, dict) or not raw:
        raise err("objectives", "must be val_accuracy or val_loss, or a mapping of objective to "
                  "max/min, e.g. {val_accuracy: max, latency_ms: min}")
    for name, direction in raw.items():
        if name not in DIRECTIONS:
            raise err(f"objectives.{name}", f"unknown objective; one of {', '.join(DIRECTIONS)}")
        if direction not in BOUNDS:
            raise err(f"objectives.{name}", f"direction must be max or min, got {direction!r}")
        if direction != DIRECTIONS[name]:
            better = "higher" if DIRECTIONS[name] == "max" else "lower"
            raise err(f"objectives.{name}", f"must be {DIRECTIONS[name]} ({better} is better), "
                      f"got {direction}")
    first = next(iter(raw))
    if first not in RANKING:
        raise err("objectives", f"the first objective ranks the trials and is what ASHA stops "
                  f"on: one of {', '.join(RANKING)}, got {first}")
    if sum(name in RANKING for name in raw) > 1:
        raise err("objectives", "give one of val_accuracy and val_loss, not both")
    return dict(raw)


def parse_constraints(raw, err) -> dict[str, dict[str, float]]:
    """``constraints`` of a space: ``{measure: {max: x, min: y}}``, checked."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise err("constraints", "must be a mapping, e.g. {latency_ms: {max: 5.0}}")
    out = {}
    for name, bounds in raw.items():
        if name not in PROFILE_METRICS:
            raise err(f"constraints.{name}", f"unknown measure; one of {', '.join(PROFILE_METRICS)}")
        if not isinstance(bounds, dict) or not bounds or set(bounds) - set(BOUNDS):
            raise err(f"constraints.{name}", f"must be a mapping with max and/or min, got {bounds!r}")
        for key, value in bounds.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise err(f"constraints.{name}.{key}", f"must be a number >= 0, got {value!r}")
        if "max" in bounds and "min" in bounds and bounds["min"] > bounds["max"]:
            raise err(f"constraints.{name}", f"min {bounds['min']} is above max {bounds['max']}")
        out[name] = {k: float(v) for k, v in bounds.items()}
    return out


def constraint_values(constraints: dict, measured: dict) -> dict[str, float]:
    """Optuna's convention, one value per bound: feasible when every value is <= 0."""
    values = {}
    for name, bounds in constraints.items():
        if "max" in bounds:
            values[f"{name}<={bounds['max']:g}"] = float(measured[name]) - bounds["max"]
        if "min" in bounds:
            values[f"{name}>={bounds['min']:g}"] = bounds["min"] - float(measured[name])
    return values


def is_feasible(constraints: dict, measured: dict) -> bool:
    return all(v <= 0 for v in constraint_values(constraints, measured).values())


def feasible_mask(table: pd.DataFrame) -> pd.Series:
    """trials.csv's ``feasible`` as booleans (missing: not feasible); all True without it."""
    if "feasible" not in table:
        return pd.Series(True, index=table.index)
    return table["feasible"].map(lambda v: v is True or str(v).lower() == "true").astype(bool)


def describe_constraints(constraints: dict) -> str:
    """'latency_ms <= 5, params_m <= 3' (or 'none')."""
    parts = [f"{name} {'<=' if key == 'max' else '>='} {value:g}"
             for name, bounds in constraints.items() for key, value in bounds.items()]
    return ", ".join(parts) or "none"


def pareto_front(table: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """The completed, feasible trials of ``table`` (trials.csv) that no other such trial is at
    least as good as on every objective and better on one; best first by the first objective."""
    candidates = table[table["status"] == COMPLETED]
    if "feasible" in candidates:
        candidates = candidates[feasible_mask(candidates)]
    columns = [COLUMNS[name] for name in objectives]
    candidates = candidates.dropna(subset=columns)
    # Everything as "lower is better".
    signed = pd.DataFrame({c: -candidates[c] if objectives[name] == "max" else candidates[c]
                           for name, c in zip(objectives, columns)})
    values = signed.to_numpy()
    keep = np.array([not ((values <= v).all(axis=1) & (values < v).any(axis=1)).any()
                     for v in values], dtype=bool)
    first = columns[0]
    return candidates[keep].sort_values(first, ascending=objectives[next(iter(objectives))] == "min",
                                        kind="stable")
