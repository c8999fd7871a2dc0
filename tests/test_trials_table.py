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
