"""The trials table from Ray Tune's own ``Result`` objects, including a trial that never reported
(the time budget can stop a trial after Tune created it and before its first epoch: Ray then
gives ``Result.config`` as None)."""
from __future__ import annotations

import math

from ray.tune import Result

from search.experiment_folder import STOPPED_EARLY
from search.outputs import trials_table
from search.space import load_space


def test_a_trial_cut_before_its_first_report_is_a_row_not_a_crash(tmp_path):
    space = load_space("spaces/smoke.yaml")
    never_reported = Result(metrics={}, checkpoint=None, error=None,
                            path=str(tmp_path / "train_trial_00001"))
    assert never_reported.config is None  # what Ray gives for it, checked against this Ray

    table = trials_table([never_reported], space)

    row = table.iloc[0]
    assert (row["status"], row["epochs"], bool(row["default"])) == (STOPPED_EARLY, 0, False)
    assert math.isnan(row["best_val_accuracy"])
    assert row["weights"] == ""  # its config is unknown: no claim about its weights


def test_nothing_to_retrain_names_each_trials_fate_and_the_budget(tmp_path):
    """From Ray's own Results: a trial that failed keeps its reason, one the budget cut before an
    epoch says so, and the budget's hint stays; no rows at all is a line too, not a KeyError."""
    from search.finish import nothing_to_retrain

    space = load_space("spaces/smoke.yaml")
    cut = Result(metrics={}, checkpoint=None, error=None, path=str(tmp_path / "train_trial_00001"))
    failed = Result(metrics={}, checkpoint=None, error=RuntimeError("NonFiniteLossError: loss nan"),
                    path=str(tmp_path / "train_trial_00002"))
    table = trials_table([cut, failed], space)
    line = nothing_to_retrain(table, "its 0.3-minute time budget")
    assert line.startswith("1 of 2 trials failed and 1 finished no epoch, nothing to retrain (")
    assert "NonFiniteLossError" in line
    assert "no epoch before the search ended (its 0.3-minute time budget)" in line
    assert line.endswith("; give the search more time (search.time_budget_minutes)")
    assert nothing_to_retrain(trials_table([failed], space), "all 1 trials run").startswith(
        "all 1 trial failed, nothing to retrain (")
    assert nothing_to_retrain(trials_table([], space), "") == "no trial started, nothing to retrain"
