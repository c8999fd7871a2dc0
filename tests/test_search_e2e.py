"""End to end on a real sample of FER2013: the smoke search with a real local Ray, real Optuna,
real timm; then every output file is read back and cross-checked."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

import yaml

from fer_models.audit import drop_cross_split_duplicates, private_test_copies
from fer_models.checkpoint import load_model
from fer_models.data import load_fer2013
from search.experiment_folder import ExperimentFolder
from search.space import load_space

REPO = Path(__file__).resolve().parents[1]
# One xdist worker runs every user of the session's smoke search (tests/conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("smoke")]


@pytest.fixture
def smoke_run(smoke_experiment):
    return smoke_experiment


def test_search_succeeds_and_last_line_reports_private_test(smoke_run):
    proc, _ = smoke_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"PrivateTest accuracy: 0\.\d{4} \(n=350\)", last), last
    assert "tensorboard --logdir" in proc.stdout


def test_console_has_one_line_per_trial_event_and_none_of_rays(smoke_run):
    proc, exp = smoke_run
    out = proc.stdout
    trials = pd.read_csv(exp / "trials.csv", dtype={"trial_id": str})
    folders = ExperimentFolder(exp).trial_dirs(trials.trial_id)
    for row in trials.itertuples():
        # numbered as its folder (and TensorBoard run) is
        number = ExperimentFolder.trial_counter(folders[row.trial_id], row.trial_id)
        assert re.search(rf"^trial {number}/4 {row.trial_id} started: lr=", out, re.M), \
            (row.trial_id, folders[row.trial_id].name)
        ended = r"stopped early after \d epoch\(s\)" if row.status == "stopped_early" else "completed"
        assert re.search(rf"^trial {row.trial_id} {ended}: PublicTest val_accuracy 0\.\d{{4}}",
                         out, re.M), (row.trial_id, row.status)
    # the space's default runs first, and its line says so
    assert re.findall(r"^trial (\d+)/4 \w+ started: .*\(the space's default\)$", out, re.M) == ["1"]
    # every ASHA stop is announced at its rung, with the bar it missed
    for tid in trials[trials.status == "stopped_early"].trial_id:
        assert re.search(rf"^trial {tid} rung 1 \(epoch 1\): val_accuracy 0\.\d+ < cutoff "
                         r"0\.\d+, stopped$", out, re.M), tid
    assert re.search(r"^\[\d+\.\d min\] 4 done \(\d stopped early\), 0 running, 0 failed, "
                     r"0 to start; best 0\.\d{4}", out, re.M)
    assert re.search(r"\[retrain .*epoch   1/1 ", out)  # the retrain's per-epoch line
    assert "\x1b[" not in out, "terminal escape codes in a piped console"  # Ray's coloured prefix
    both = out + proc.stderr
    assert "driver_artifacts" not in both and "To visualize your results" not in both
    assert "Trial status:" not in both  # Ray's trial table: only with --verbose 2


def test_all_outputs_exist(smoke_run):
    _, exp = smoke_run
    for name in ("trials.csv", "best.yaml", "metrics.json", "summary.json", "space.yaml",
                 "model/model.safetensors", "model/config.json", ExperimentFolder.JOURNAL):
        assert (exp / name).is_file(), name


def test_asha_stopped_a_trial_and_study_recorded_every_trial_truthfully(smoke_run):
    _, exp = smoke_run
    trials = pd.read_csv(exp / "trials.csv", dtype={"trial_id": str})
    space = load_space(REPO / "spaces" / "smoke.yaml")
    assert len(trials) == space.search.num_samples
    stopped = trials[trials.status == "stopped_early"]
    assert len(stopped) >= 1, trials[["trial_id", "status", "epochs"]]
    assert (stopped.epochs < space.max_epochs).all()
    assert (trials[trials.status == "completed"].epochs == space.max_epochs).all()

    study = ExperimentFolder(exp).load_study()
    assert len(study.trials) == len(trials)
    states = sorted(t.state.name for t in study.trials)
    expected = sorted({"completed": "COMPLETE", "stopped_early": "PRUNED", "failed": "FAIL"}[s]
                      for s in trials.status)
    assert states == expected
    for t in study.trials:  # pruned trials keep their per-epoch values for TPE
        assert t.intermediate_values, t
        if t.state == optuna.trial.TrialState.PRUNED:  # cut short: no value at the last epoch
            assert max(t.intermediate_values) < space.max_epochs


def test_outputs_agree_with_each_other(smoke_run):
    _, exp = smoke_run
    trials = pd.read_csv(exp / "trials.csv", dtype={"trial_id": str})
    summary = json.loads((exp / "summary.json").read_text())
    metrics = json.loads((exp / "metrics.json").read_text())
    assert summary["trials_run"] == len(trials)
    assert summary["total_epochs"] == trials.epochs.sum()
    assert summary["best_public_test_accuracy"] == pytest.approx(trials.best_val_accuracy.max())
    assert summary["private_test_accuracy"] == pytest.approx(metrics["accuracy"])
    assert metrics["n"] == summary["private_test_n"] == 350
    assert sum(map(sum, metrics["confusion_matrix"])) == 350
    assert 0 <= metrics["macro_f1"] <= 1 and len(metrics["per_class_accuracy"]) == 7
    assert "tta" in metrics and metrics["tta"]["n"] == 350

    best = yaml.safe_load((exp / "best.yaml").read_text())
    winner = trials.loc[trials.best_val_accuracy.idxmax()]
    assert winner.trial_id == summary["best_trial"]
    assert best["params"]["lr"] == pytest.approx(winner["config/lr"])
    assert best["params"]["optimizer"] == winner["config/optimizer"]
    assert load_space(exp / "best.yaml").retrain.params == {"keep_best": True}  # re-runnable

    assert "config/keep_best" not in trials  # retrain.params reach the retrain only

    model, cfg = load_model(exp / "model")
    assert cfg.lr == pytest.approx(winner["config/lr"]) and cfg.epochs == summary["retrain_epochs"]
    assert cfg.keep_best is True


def test_trial_folders_have_short_sortable_names(smoke_run):
    """A trial's folder is also its TensorBoard run: t<n>-<id>_<values that differ from the
    default>, in creation order, the default first."""
    _, exp = smoke_run
    trials = pd.read_csv(exp / "trials.csv", dtype={"trial_id": str})  # in creation order
    names = sorted(p.name for p in exp.glob("t[0-9]*-*") if p.is_dir())
    assert len(names) == len(trials) >= 2, names
    for number, (name, tid) in enumerate(zip(names, trials.trial_id), start=1):
        assert name.startswith(f"t{number:04d}-{tid}_") and len(name) <= 90, (name, tid)
    assert names[0].endswith("_default") and bool(trials["default"].iloc[0])
    assert not names[1].endswith("_default")


def test_private_test_never_reached_a_trial(smoke_run, tiny_csv):
    _, exp = smoke_run
    trials = pd.read_csv(exp / "trials.csv", dtype={"trial_id": str})
    full = load_fer2013(tiny_csv)
    data, dropped = drop_cross_split_duplicates(full)  # the run used --drop-duplicates
    assert f"Training {dropped['Training']}," in smoke_run[0].stdout
    # The figure that could show a leak: faces the trials saw that are copies of PrivateTest ones.
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["private_test_copies"] == private_test_copies(data) == {"Training": 0,
                                                                           "PublicTest": 0}
    assert "private_test_rows_seen" not in trials  # a count that could only be 0: not evidence
    # Every per-epoch result of every trial says what it trained and validated on.
    for progress in exp.glob("t[0-9]*-*/progress.csv"):
        rows = pd.read_csv(progress, dtype={"trial_id": str})
        assert (rows.train_rows == len(data.train)).all()
        assert (rows.public_test_rows == len(data.public_test)).all()


def test_trainable_refuses_private_test():
    """A trial handed PrivateTest refuses before training (synthetic faces: no data needed)."""
    import numpy as np

    from fer_models.data import FER2013, Split
    from search.trainable import train_trial

    faces = Split(np.zeros((8, 48, 48), np.uint8), np.arange(8) % 7)
    with pytest.raises(RuntimeError, match="PrivateTest must not be handed"):
        train_trial({"backbone": "resnet10t", "epochs": 1}, FER2013(faces, faces, faces))


def test_checkpoint_pacer_every_epoch_or_at_most_every_n_seconds():
    from search.trainable import CheckpointPacer

    now = [100.0]
    every_epoch = CheckpointPacer(0, clock=lambda: now[0])
    paced = CheckpointPacer(10, clock=lambda: now[0])
    due = []
    for t in (102, 104, 110, 112, 119.5, 120.5, 121):  # epoch ends, seconds on the clock
        now[0] = t
        assert every_epoch.due()
        due.append(paced.due())
    # 10 s after the start (110), then 10 s after that checkpoint (120.5)
    assert due == [False, False, True, False, False, True, False]


def test_default_configuration_runs_first_and_the_winner_is_set_beside_it(smoke_run):
    """The space's default configuration is the first trial (Optuna's enqueued trial), marked in
    trials.csv; summary.json, report.md and the console compare the winner with it."""
    proc, exp = smoke_run
    space = load_space(REPO / "spaces" / "smoke.yaml")
    default = space.default_config()
    assert default == {"lr": 1e-3, "dropout": 0.0, "weight_decay": 0.05, "optimizer": "adamw"}
    trials = pd.read_csv(exp / "trials.csv", dtype={"trial_id": str})
    first = trials.iloc[0]
    for key, value in default.items():
        assert first[f"config/{key}"] == pytest.approx(value) if isinstance(value, float) \
            else first[f"config/{key}"] == value, key
    assert trials["default"].tolist() == [True] + [False] * (len(trials) - 1)
    study = ExperimentFolder(exp).load_study()
    assert study.trials[0].params["lr"] == pytest.approx(1e-3)
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["default_config"] == default
    vs = summary["vs_default"]
    assert vs["default_trial"] == first["trial_id"]
    winner = trials[trials.trial_id == summary["best_trial"]].iloc[0]
    if not vs["winner_is_default"]:
        assert vs["compared_at_epoch"] == min(int(first["epochs"]), int(winner["epochs"]))
        assert vs["gain_pt"] == pytest.approx(
            100 * (vs["winner_public_test_accuracy"] - vs["default_public_test_accuracy"]), abs=0.02)
        assert vs["gain_pt"] >= 0  # the winner is the best PublicTest epoch of all trials
    assert "default configuration" in proc.stdout
    assert "default configuration" in (exp / "report.md").read_text()


def test_the_study_names_its_objective_and_holds_no_running_trial(smoke_run):
    _, exp = smoke_run
    study = ExperimentFolder(exp).load_study()
    assert study.metric_names == ["val_accuracy"]
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)
    # What was searched and why it ended travel with the study (optuna-dashboard shows them).
    assert study.user_attrs["search_space"]["lr"] == {"kind": "loguniform", "low": 1.0e-4,
                                                      "high": 3.0e-2}
    assert set(study.user_attrs["search_space"]) == {"lr", "dropout", "weight_decay", "optimizer"}
    summary = json.loads((exp / "summary.json").read_text())
    assert study.user_attrs["search_ended_by"] == summary["search_ended_by"] == "all 4 trials run"


def test_close_study_ends_cut_trials_in_a_journal(tmp_path):
    """A trial cut with epochs is PRUNED, one cut before any is FAIL; finished ones untouched."""
    from search.study_end import close_study

    folder = ExperimentFolder(tmp_path)
    study = optuna.create_study(study_name="fer-search", storage=folder.study_storage(),
                                direction="maximize")
    done, with_epochs, without = study.ask(), study.ask(), study.ask()
    study.tell(done, 0.5)
    with_epochs.report(0.3, 1)
    assert close_study(study, ["val_accuracy"], "the search's 1-minute time budget") == 2
    again = folder.load_study()  # read back from the journal
    assert [t.state.name for t in again.trials] == ["COMPLETE", "PRUNED", "FAIL"]
    assert again.user_attrs["ended_by"] == {"1": "the search's 1-minute time budget",
                                            "2": "the search's 1-minute time budget"}
    assert again.metric_names == ["val_accuracy"]
    assert close_study(again, ["val_accuracy"], "x") == 0  # idempotent


def test_the_study_is_named_before_its_first_trial(tmp_path):
    """optuna-dashboard opened mid-search shows the objective's name, not "Objective 0"."""
    from search.searcher import PrunedAwareOptunaSearch

    folder = ExperimentFolder(tmp_path)
    PrunedAwareOptunaSearch(space=lambda trial: {"lr": trial.suggest_float("lr", 1e-4, 1e-2)},
                            metric="val_accuracy", mode="max", study_name="fer-search",
                            storage=folder.study_storage())
    study = folder.load_study()  # read back from the journal, no trial yet
    assert study.metric_names == ["val_accuracy"] and not study.trials


def test_the_end_of_the_search_is_printed_once(smoke_run):
    proc, _ = smoke_run
    lines = proc.stdout.splitlines()
    for start in ("best trial ", "retraining ", "winner vs the space's default", "PrivateTest accuracy: "):
        assert sum(line.startswith(start) for line in lines) <= 1, start
    assert sum(line.startswith("best trial ") for line in lines) == 1


def test_retrain_only_keeps_the_earlier_retrain_and_counts_privatetest_looks(smoke_run, tmp_path,
                                                                             capsys):
    """--retrain-only overwrites nothing: the first retrain's outputs move, byte for byte, to
    earlier-retrains/1/, and the new summary says PrivateTest has now been looked at twice."""
    import shutil

    import ray

    from search.run import main

    _, exp = smoke_run
    copy = tmp_path / "smoke"
    shutil.copytree(exp, copy, symlinks=True)
    before = {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*") if p.is_file()
              and p.relative_to(copy).parts[0] in ExperimentFolder.RETRAIN_OUTPUTS}
    assert json.loads((copy / "summary.json").read_text())["private_test_looks"] == 1
    code = main(["--resume", str(copy), "--retrain-only", "--retrain-epochs", "1"])
    out = capsys.readouterr().out
    assert not ray.is_initialized()
    assert code == 0, out[-2000:]
    kept = copy / "earlier-retrains" / "1"
    assert f"the earlier retrain is kept in {kept}" in out
    assert {p: kept.joinpath(p).read_bytes() for p in before} == before
    summary = json.loads((copy / "summary.json").read_text())
    assert summary["private_test_looks"] == 2 and summary["retrain_epochs"] == 1
    assert ExperimentFolder(copy).trial_dirs(pd.read_csv(copy / "trials.csv", dtype={"trial_id": str})
                                             ["trial_id"]).keys()  # the archive is not a trial


def test_retrain_only_refuses_a_search_that_never_finished(tmp_path, capsys):
    from search.run import main

    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "run.json").write_text(json.dumps({"overrides": {}, "data": str(tmp_path / "x.csv")}))
    (exp / "space.yaml").write_text("params: {backbone: resnet10t, epochs: 1}\n")
    (tmp_path / "x.csv").write_text("emotion,pixels,Usage\n")
    code = main(["--resume", str(exp), "--retrain-only"])
    err = capsys.readouterr().err
    assert code == 2 and "its search has not finished" in err and err.count("\n") == 1, err


def test_resume_refuses_a_damaged_optuna_journal_before_ray(smoke_run, tmp_path, capsys):
    import shutil

    import ray

    from search.run import main

    _, exp = smoke_run
    copy = tmp_path / "smoke"
    shutil.copytree(exp, copy, symlinks=True)
    journal = copy / "optuna-journal.log"
    journal.write_bytes(b'{"op_code": 0, "worker_id": \n' + journal.read_bytes()[5:])
    code = main(["--resume", str(copy), "--retrain-only"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "optuna-journal.log: the Optuna study cannot be read" in err
    assert not ray.is_initialized()
