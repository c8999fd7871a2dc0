"""What a search bought: its winner against the space's default configuration.

Every search runs the space's default configuration (:meth:`search.space.SearchSpace.default_config`)
as its first trial. Here the winner and that trial are compared at the same fidelity: the best
PublicTest accuracy each reached within the epochs both trained (ASHA may have stopped either one
early, and a longer trial is not a fairer one).
"""
from __future__ import annotations

import math

import pandas as pd

from .experiment_folder import ExperimentFolder

__all__ = ["compare_with_default", "describe_comparison"]


def compare_with_default(table: pd.DataFrame, folder: ExperimentFolder, winner_id: str) -> dict | None:
    """The comparison as a summary.json record, or None when no trial ran the default."""
    if "default" not in table or not table["default"].astype(bool).any():
        return None
    default = table[table["default"].astype(bool)].iloc[0]
    record = {"default_trial": str(default["trial_id"]), "default_status": str(default["status"]),
              "default_epochs": int(default["epochs"]),
              "winner_is_default": str(default["trial_id"]) == str(winner_id)}
    winner = table[table["trial_id"].astype(str) == str(winner_id)].iloc[0]
    epoch = min(int(default["epochs"]), int(winner["epochs"]))
    curves = folder.progress([str(winner_id), str(default["trial_id"])])
    best = {tid: _best_within(curves.get(str(tid)), epoch) for tid in (winner_id, default["trial_id"])}
    if epoch < 1 or any(math.isnan(v) for v in best.values()):
        return {**record, "compared_at_epoch": None}
    gain = best[winner_id] - best[default["trial_id"]]
    return {**record, "compared_at_epoch": epoch,
            "winner_public_test_accuracy": round(best[winner_id], 4),
            "default_public_test_accuracy": round(best[default["trial_id"]], 4),
            "gain_pt": round(100 * gain, 2)}


def _best_within(curve: pd.DataFrame | None, epoch: int) -> float:
    if curve is None or "val_accuracy" not in curve:
        return math.nan
    values = curve.loc[curve["training_iteration"] <= epoch, "val_accuracy"].dropna()
    return float(values.max()) if not values.empty else math.nan


def describe_comparison(record: dict | None) -> str:
    """One line for the console and report.md."""
    if record is None:
        return "the space's default configuration did not run (no searched parameter)"
    if record["winner_is_default"]:
        return (f"the winner is the space's default configuration (trial {record['default_trial']}):"
                " the search found nothing better")
    if record.get("compared_at_epoch") is None:
        return (f"the space's default configuration (trial {record['default_trial']}) "
                f"{record['default_status']} before a PublicTest score to compare")
    return (f"winner vs the space's default configuration (trial {record['default_trial']}), best "
            f"PublicTest accuracy within {record['compared_at_epoch']} epoch(s): "
            f"{record['winner_public_test_accuracy']:.4f} vs {record['default_public_test_accuracy']:.4f}"
            f" ({record['gain_pt']:+.2f} pt)")
