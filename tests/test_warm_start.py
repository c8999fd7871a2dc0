"""--warm-start: a real tiny search warm-started from the session's finished smoke search."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import ray

from search.experiment_folder import ExperimentFolder
from search.run import main

# One xdist worker runs every user of the session's smoke search (tests/conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("smoke")]


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def narrower_space(tmp_path: Path, winner: pd.Series, metric: str = "val_accuracy") -> Path:
    """The smoke space with lr starting at the earlier winner's and only its optimizer: earlier
    trials below that lr or with the other optimizer do not fit; label smoothing, fixed there,
    is searched here (the earlier fixed 0.1 fits)."""
    path = tmp_path / "narrow.yaml"
    path.write_text(f"""
objectives: {metric}
search: {{sampler: tpe, seed: 1, num_samples: 2, max_concurrent: 1, asha: false}}
retrain: {{epochs: 1, seeds: [0], tta: false, onnx: false}}
params:
  backbone: resnet10t
  input_size: 48
  epochs: 2
  batch_size: 64
  lr: {{loguniform: [{float(winner['config/lr']) * 0.999!r}, 3.0e-2]}}
  dropout: {{uniform: [0.0, 0.5], step: 0.1}}
  weight_decay: {{loguniform: [1.0e-5, 1.0e-1]}}
  optimizer: {{choice: [{winner['config/optimizer']}]}}
  label_smoothing: {{uniform: [0.0, 0.2]}}
""")
    return path


@pytest.fixture(scope="module")
def earlier(smoke_experiment):
    proc, exp = smoke_experiment
    assert proc.returncode == 0, proc.stderr[-2000:]
    trials = ExperimentFolder(exp).read_trials()
    summary = json.loads((exp / "summary.json").read_text())
    winner = trials.set_index("trial_id").loc[summary["best_trial"]]
    return exp, trials, winner


def test_a_warm_started_search_inherits_what_fits_and_runs_the_winner_first(
        earlier, tmp_path, capsys, tiny_csv):
    exp, trials, winner = earlier
    before = snapshot(exp)
    space = narrower_space(tmp_path, winner)
    try:
        code = main([str(space), "--data", str(tiny_csv), "--output",
                     str(tmp_path / "out"), "--name", "warm", "--warm-start", str(exp),
                     "--drop-duplicates", "--cpus", "2"])
    finally:
        ray.shutdown()
    out = capsys.readouterr().out
    assert code == 0
    new = ExperimentFolder(tmp_path / "out" / "warm")
    # What fits, computed here from the earlier trials.csv, independently of warm_start.py.
    fits = (trials["config/lr"] >= winner["config/lr"] * 0.999) & \
        (trials["config/optimizer"] == winner["config/optimizer"])
    line = next(ln for ln in out.splitlines() if ln.startswith("warm start from "))
    assert f"{int(fits.sum())} trial(s) inherited" in line, line
    if (~fits).any():
        assert "skipped: " in line and ("lr outside" in line or "optimizer outside" in line), line
    table = new.read_trials(inherited=True)
    inherited = table[table["inherited_from"] != ""]
    assert set(inherited["trial_id"]) == set(trials.loc[fits, "trial_id"])
    assert set(inherited["inherited_from"]) == {str(exp.resolve())}
    own = new.read_trials()
    assert len(own) == 2
    first = own.iloc[0]  # the earlier winner runs first
    assert first["config/lr"] == pytest.approx(winner["config/lr"])
    assert first["config/dropout"] == pytest.approx(winner["config/dropout"])
    # The Optuna study: the inherited trials first, in their earlier states, then the new ones.
    study = new.load_study()
    states = {"completed": "COMPLETE", "stopped_early": "PRUNED", "failed": "FAIL"}
    n = int(fits.sum())
    assert len(study.trials) == n + 2
    assert sorted(t.state.name for t in study.trials[:n]) == sorted(
        states[s] for s in trials.loc[fits, "status"])
    assert all(t.params["label_smoothing"] == pytest.approx(0.1) for t in study.trials[:n])
    assert json.loads(new.run_json.read_text())["warm_start"] == [str(exp.resolve())]
    assert snapshot(exp) == before, "the earlier folder must be left byte for byte"


@pytest.mark.parametrize("case", ["missing", "unfinished", "other metric", "corrupt summary"])
def test_a_bad_warm_start_folder_is_refused_before_ray(earlier, tmp_path, capsys, case,
                                                      tiny_csv):
    exp, _, winner = earlier
    source = exp
    if case == "missing":
        source = tmp_path / "nowhere"
    elif case in ("unfinished", "corrupt summary"):
        source = tmp_path / "copy"
        shutil.copytree(exp, source, ignore=shutil.ignore_patterns("t[0-9]*-*", "model",
                                                                   "ensemble", "retrain"))
        if case == "unfinished":
            (source / "summary.json").unlink()
        else:
            (source / "summary.json").write_text("{not json")
    before = snapshot(source) if source.exists() else {}
    space = narrower_space(tmp_path, winner, "val_loss" if case == "other metric" else "val_accuracy")
    code = main([str(space), "--data", str(tiny_csv), "--output",
                 str(tmp_path / "out"), "--name", "warm", "--warm-start", str(source)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"--warm-start {source}" in err, err
    words = {"missing": "no such folder", "unfinished": "unfinished", "other metric":
             "searched 'val_accuracy', this space 'val_loss'", "corrupt summary": "corrupt"}[case]
    assert words in err, err
    assert not ray.is_initialized()
    assert not (tmp_path / "out" / "warm").exists()
    if source.exists():
        assert snapshot(source) == before
