"""Several objectives and constraints: what a model costs (params, MACs, ONNX Runtime latency),
a real multi-objective search on the tiny sample, its Pareto front and winner, and bad
objective/constraint input refused before Ray."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fer_models import TrainConfig
from fer_models.models import create_model
from fer_models.profile import count_macs, count_params, profile_config
from search.experiment_folder import ExperimentFolder
from search.objectives import pareto_front
from search.space import load_space
from tests.test_first_contact import never_read, run_search  # noqa: F401  (a fixture)

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("torch_threads")


# --- measures ----------------------------------------------------------------------------------

def test_macs_of_a_conv_are_counted_by_hand():
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, bias=False))
    # 6x6 outputs x 4 filters x 3x3 taps, one channel
    assert count_macs(conv, input_size=8, in_chans=1) == pytest.approx(6 * 6 * 4 * 9 / 1e6)


def test_a_profile_measures_params_macs_and_latency():
    small = profile_config(TrainConfig(backbone="test_resnet", input_size=48), runs=10)
    big = profile_config(TrainConfig(backbone="test_resnet", input_size=96), runs=10)
    model = create_model("test_resnet")
    assert small.params_m == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6, rel=1e-3)
    assert big.params_m == small.params_m                  # input size changes no weights
    assert big.macs_m == pytest.approx(4 * small.macs_m, rel=0.1)  # 2x the side: ~4x the work
    assert 0 < small.latency_ms < 1000 and small.latency_threads == 1 and small.machine


# --- the front ---------------------------------------------------------------------------------

def test_pareto_front_keeps_exactly_the_non_dominated_feasible_completed_trials():
    rng = np.random.default_rng(0)
    n = 60
    table = pd.DataFrame({"trial_id": [f"t{i}" for i in range(n)],
                          "best_val_accuracy": rng.uniform(0.4, 0.7, n),
                          "latency_ms": rng.uniform(1, 20, n),
                          "status": rng.choice(["completed", "stopped_early"], n, p=[0.8, 0.2]),
                          "feasible": rng.random(n) < 0.8})
    front = pareto_front(table, {"val_accuracy": "max", "latency_ms": "min"})
    pool = table[(table.status == "completed") & table.feasible]
    for _, r in pool.iterrows():
        beaten = ((pool.best_val_accuracy >= r.best_val_accuracy) & (pool.latency_ms <= r.latency_ms)
                  & ((pool.best_val_accuracy > r.best_val_accuracy) | (pool.latency_ms < r.latency_ms))).any()
        assert (r.trial_id in set(front.trial_id)) == (not beaten), r.trial_id
    assert list(front.best_val_accuracy) == sorted(front.best_val_accuracy, reverse=True)


# --- bad input: one line, exit 2, before Ray ---------------------------------------------------

@pytest.mark.parametrize("text,where", [
    ("objectives: {val_accuracy: max, speed: min}\n", "objectives.speed: unknown objective"),
    ("objectives: {val_accuracy: max, latency_ms: max}\n", "objectives.latency_ms: must be min"),
    ("objectives: {val_accuracy: up}\n", "objectives.val_accuracy: direction must be max or min"),
    ("objectives: {latency_ms: min, val_accuracy: max}\n", "objectives: the first objective"),
    ("objectives: {val_accuracy: max, val_loss: min}\n", "not both"),
    ("objectives: [val_accuracy]\n", "objectives: must be val_accuracy or val_loss, or a mapping"),
    ("objectives: accuracy\n", "objectives: one objective is one of val_accuracy, val_loss"),
    ("constraints: {ms: {max: 5}}\n", "constraints.ms: unknown measure"),
    ("constraints: {latency_ms: {below: 5}}\n", "constraints.latency_ms: must be a mapping with max"),
    ("constraints: {latency_ms: {max: fast}}\n", "constraints.latency_ms.max: must be a number"),
    ("constraints: {params_m: {min: 5, max: 1}}\n", "min 5 is above max 1"),
    ("objectives: {val_accuracy: max, latency_ms: min}\nsearch: {sampler: cmaes}\n",
     "search.sampler: cmaes optimises one objective"),
    ("metric: val_loss\nobjectives: {val_accuracy: max}\n", "metric: no longer a key; it is now objectives"),
    ("retrain: {pareto: 3}\n", "retrain.pareto: needs several objectives"),
    ("objectives: {val_accuracy: max, latency_ms: min}\nretrain: {pareto: -1}\n",
     "retrain.pareto: must be >= 0"),
    ("objectives: {val_accuracy: max, latency_ms: min}\nretrain: {pareto: true, pareto_max: 3}\n",
     "retrain.pareto_max: no longer a key; it is now retrain.pareto"),
])
def test_bad_objectives_and_constraints_exit_2_before_ray(text, where, tmp_path, never_read, capsys):
    code, err = run_search(text + "params:\n  backbone: resnet10t\n", tmp_path, never_read, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert where in err, err


def test_the_shipped_pareto_space_loads():
    space = load_space(REPO / "spaces" / "pareto.yaml")
    assert space.multi_objective and space.measures and space.retrain.pareto
    assert list(space.objectives) == ["val_accuracy", "latency_ms"]


# --- a real multi-objective search -------------------------------------------------------------

SPACE = """\
name: pareto-test
objectives: {{val_accuracy: max, latency_ms: min}}
constraints: {{params_m: {{max: {limit}}}}}
search: {{sampler: nsga2, seed: 0, num_samples: 5, max_concurrent: 1,
         asha: {{grace_period: 1, reduction_factor: 2}}, checkpoint: false}}
resources: {{cpus_per_trial: 1}}
retrain: {{epochs: 1, seeds: [0], tta: false, onnx: false, pareto: 3}}
params:
  backbone: {{choice: [test_resnet, test_efficientnet, test_nfnet]}}
  input_size: {{choice: [32, 48]}}
  epochs: 2
  batch_size: 64
  lr: {{loguniform: [1.0e-3, 1.0e-2]}}
"""


@pytest.fixture(scope="module")
def pareto_search(tmp_path_factory, tiny_csv):
    # Parameters only: profile_config would also export each to ONNX and time it.
    configs = [TrainConfig(backbone=b, input_size=32)
               for b in ("test_resnet", "test_efficientnet", "test_nfnet")]
    sizes = {c.backbone: count_params(create_model(c.backbone, **c.architecture())) for c in configs}
    limit = sorted(sizes.values())[1] + 1e-4   # the largest of the three breaks the constraint
    tmp = tmp_path_factory.mktemp("pareto")
    space = tmp / "pareto.yaml"
    space.write_text(SPACE.format(limit=limit))
    proc = subprocess.run(
        [sys.executable, "-m", "search.run", str(space), "--data", str(tiny_csv),
         "--output", str(tmp / "results"), "--name", "p"],
        cwd=REPO, capture_output=True, text=True, timeout=900, env={**os.environ})
    return proc, ExperimentFolder(tmp / "results" / "p"), limit


@pytest.mark.slow
def test_a_multi_objective_search_measures_every_trial(pareto_search):
    proc, folder, limit = pareto_search
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = folder.read_trials()
    assert len(table) == 5
    for column in ("params_m", "macs_m", "latency_ms", "feasible", "latency_machine"):
        assert column in table and table[column].notna().all(), column
    assert (table["latency_ms"] > 0).all() and (table["macs_m"] > 0).all()
    assert (table["feasible"] == (table["params_m"] <= limit)).all()


@pytest.mark.slow
def test_the_winner_meets_the_constraints_and_the_front_is_non_dominated(pareto_search):
    proc, folder, limit = pareto_search
    table, summary = folder.read_trials(), folder.read_summary()
    winner = table[table["trial_id"] == summary["best_trial"]].iloc[0]
    assert bool(winner["feasible"]) and winner["params_m"] <= limit
    feasible = table[table["feasible"].astype(bool)].dropna(subset=["best_val_accuracy"])
    assert winner["best_val_accuracy"] == feasible["best_val_accuracy"].max()
    front = table[table["trial_id"].isin(summary["pareto_front"])]
    pool = table[(table["status"] == "completed") & table["feasible"].astype(bool)]
    assert not front.empty and set(front["trial_id"]) <= set(pool["trial_id"])
    for _, r in pool.iterrows():
        beaten = ((pool.best_val_accuracy >= r.best_val_accuracy) & (pool.latency_ms <= r.latency_ms)
                  & ((pool.best_val_accuracy > r.best_val_accuracy) | (pool.latency_ms < r.latency_ms))).any()
        assert (r.trial_id in set(front.trial_id)) == (not beaten)
    assert summary["winner_measures_retrained"]["latency_ms"] > 0


@pytest.mark.slow
def test_the_study_has_both_objectives_and_the_constraints(pareto_search):
    _, folder, limit = pareto_search
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    study = folder.load_study()
    assert study.directions == [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
    table = folder.read_trials().set_index("trial_id")
    told = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(told) == 5 and all(t.constraints for t in told)
    for t in study.trials:
        if t.state == TrialState.COMPLETE:
            assert len(t.values) == 2 and t.values[1] > 0      # accuracy, latency
    states = [t.state for t in study.trials]
    assert set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}
    # Each trial ASHA stopped reached the study PRUNED, each completed one COMPLETE.
    assert states.count(TrialState.PRUNED) == int((table["status"] == "stopped_early").sum())
    assert states.count(TrialState.COMPLETE) == int((table["status"] == "completed").sum())


@pytest.mark.slow
def test_each_front_point_is_retrained_and_the_report_draws_the_front(pareto_search):
    _, folder, _ = pareto_search
    summary = folder.read_summary()
    pareto = pd.read_csv(folder.pareto_csv, dtype={"trial_id": str})
    rest = [t for t in summary["pareto_front"] if t != summary["best_trial"]]
    assert list(pareto["trial_id"]) == ([summary["best_trial"]] + rest)[:3]  # the winner first
    assert list(pareto["on_front"]) == [t in summary["pareto_front"] for t in pareto["trial_id"]]
    assert pareto["private_test_accuracy"].between(0, 1).all() and (pareto["latency_ms_retrained"] > 0).all()
    # Front points are alternatives, each scored alone: no ensemble of them, no averaged score.
    assert not folder.ensemble_dir.exists() and "ensemble" not in folder.read_metrics()
    if len(pareto) > 1:  # the winner alone is model/
        assert sorted(p.name for p in folder.pareto_dir.iterdir()) == \
            [f"member-{i}" for i in range(len(pareto))]
    report = folder.report_md.read_text()
    assert "report_pareto.png" in report and (folder.path / "report_pareto.png").stat().st_size > 10_000
    assert "Pareto front" in report and "Fastest within 1 pt" in report and "ONNX Runtime" in report
    assert json.loads((folder.path / "summary.json").read_text())["winner_rule"].startswith("the best")


@pytest.mark.slow
def test_tensorboard_hparams_carry_the_measures(pareto_search):
    from tensorboard.plugins.hparams import metadata

    from search.tensorboard_logs import MEASURE_METRICS, METRICS
    from tests.tensorboard_events import hparams_content, load_run

    _, folder, _ = pareto_search
    exp = metadata.parse_experiment_plugin_data(
        hparams_content(load_run(folder.path))[metadata.EXPERIMENT_TAG])
    assert [m.name.tag for m in exp.metric_infos] == [t for t, *_ in METRICS + MEASURE_METRICS]
    trial = next(folder.path.glob("t[0-9]*-*"))
    assert "model/latency_ms" in load_run(trial).Tags()["scalars"]
    assert "search/feasible" in load_run(trial).Tags()["scalars"]
