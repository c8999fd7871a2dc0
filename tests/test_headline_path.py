"""The headline path end to end at tiny size: spaces/cpu.yaml as shipped (random proposals, a time
budget, two trials at once, keep_best, two retrain seeds, ensemble_seeds, TTA), with only the
epochs, the budget and the data shrunk. A real local Ray, Optuna, timm; the study read back."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from search.experiment_folder import ExperimentFolder

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
# Minutes: 16 trials of 2 tiny epochs need more, so running trials are cut; a first epoch still
# fits with three test processes on 2 cores.
BUDGET = 0.5


@pytest.fixture(scope="module")
def headline(tmp_path_factory, fer_cache_dir, tiny_csv):
    space = yaml.safe_load((REPO / "spaces" / "cpu.yaml").read_text())
    shipped = {k: space["search"][k] for k in ("sampler", "max_concurrent")}
    space["params"]["epochs"] = 2
    space["retrain"]["epochs"] = 3
    # A budget no epoch fits: the retrain runs one epoch, not the cap of 3 (planned_epochs).
    space["retrain"]["time_budget_minutes"] = 0.001
    space["search"]["time_budget_minutes"] = BUDGET  # cuts trials mid-run: the study must close them
    folder = tmp_path_factory.mktemp("headline")
    path = folder / "cpu-tiny.yaml"
    path.write_text(yaml.safe_dump(space))
    proc = subprocess.run(
        [sys.executable, "-m", "search.run", str(path), "--data", str(tiny_csv),
         "--output", str(folder / "results"), "--name", "cpu-tiny"],
        cwd=REPO, capture_output=True, text=True, timeout=900, env={**os.environ})
    return proc, folder / "results" / "cpu-tiny", space, shipped


def test_the_shipped_settings_are_the_ones_run(headline):
    _, _, space, shipped = headline
    assert shipped == {"sampler": "random", "max_concurrent": 2}
    assert space["retrain"]["seeds"] == [0, 1] and space["retrain"]["ensemble_seeds"]
    assert space["retrain"]["tta"] and space["retrain"]["params"]["keep_best"]


def test_the_headline_path_runs_and_reports_every_figure(headline):
    proc, exp, _, _ = headline
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((exp / "summary.json").read_text())
    metrics = json.loads((exp / "metrics.json").read_text())
    assert summary["sampler"] == "random" and summary["retrain_seeds"] == [0, 1]
    assert "tta" in metrics and "ensemble" in metrics
    assert summary["private_test_accuracy_sd"] is not None
    assert summary["default_config"] and summary["vs_default"] is not None
    assert proc.stdout.strip().splitlines()[-1].startswith("PrivateTest accuracy: ")


def test_the_last_lines_say_the_winner_where_the_outputs_are_and_every_figure(headline):
    """Below the retrain's epoch lines, a reader finds the winner, what it beat, the folder and
    the mean over the seeds that the results tables report, without scrolling back."""
    proc, exp, _, _ = headline
    summary = json.loads((exp / "summary.json").read_text())
    lines = proc.stdout.strip().splitlines()
    last_epoch = max(i for i, line in enumerate(lines) if "[retrain " in line)
    tail = lines[last_epoch + 1:]
    winner = next(line for line in tail if line.startswith("winner: "))
    assert f"trial {summary['best_trial']}" in winner
    vs = summary["vs_default"]
    if not vs["winner_is_default"] and vs["compared_at_epoch"] is not None:
        assert f"(trial {vs['default_trial']})" in winner and f"({vs['gain_pt']:+.2f} pt)" in winner, \
            winner
    assert any(line.startswith(f"outputs in {exp}: model/ (seed 0), ensemble/, ") for line in tail)
    assert (f"PrivateTest accuracy over retrain seeds 0, 1: "
            f"{summary['private_test_accuracy_mean']:.4f} +- "
            f"{summary['private_test_accuracy_sd']:.4f}") in tail


def test_the_retrain_runs_the_epochs_its_time_budget_fits(headline):
    proc, exp, _, _ = headline
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["retrain_epochs"] == 1 and "fits 0.001 minutes" in summary["retrain_epochs_rule"]
    assert "retrain: 1 epochs (what fits 0.001 minutes)" in proc.stdout
    assert yaml.safe_load((exp / "best.yaml").read_text())["retrain"]["epochs"] == 1
    history = ExperimentFolder(exp).read_history()
    assert len(history) == 1


def test_no_trial_is_left_running_in_the_study_and_its_objective_is_named(headline):
    proc, exp, _, _ = headline
    study = ExperimentFolder(exp).load_study()
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.RUNNING not in states, states
    assert study.metric_names == ["val_accuracy"]
    trials = pd.read_csv(exp / "trials.csv", dtype={"trial_id": str})
    assert len(study.trials) >= len(trials)
    cut = study.user_attrs.get("ended_by", {})
    for number, reason in cut.items():  # a trial the budget cut says so, and is not COMPLETE
        assert "time budget" in reason
        assert study.trials[int(number)].state in (optuna.trial.TrialState.PRUNED,
                                                   optuna.trial.TrialState.FAIL)
    if cut:
        assert f"cut by the search's end (its {BUDGET}-minute time budget)" in proc.stdout
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["search_ended_by"] in (f"its {BUDGET}-minute time budget", "all 16 trials run"), \
        summary["search_ended_by"]
    if "time budget" in summary["search_ended_by"]:  # the console says what it cut, once
        assert proc.stdout.count(f"search stopped by its {BUDGET}-minute time budget: ") == 1
