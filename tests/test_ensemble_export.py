"""Top-k ensemble, ONNX export and split scoring, on the smoke search of the tiny real sample
(run once per session with ``--top-k 2``; see conftest.smoke_experiment)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fer_models.checkpoint import load_model
from fer_models.data import EMOTIONS, load_fer2013
from fer_models.ensemble import ENSEMBLE_FILE, load_predictor
from fer_models.evaluate import metrics_from_probs, predict_proba
from fer_models.export import main as export_main
from fer_models.export import onnx_probabilities
from fer_models.predict import main as predict_main
from tests.conftest import data_file

# One xdist worker runs every user of the session's smoke search (tests/conftest.py).
pytestmark = pytest.mark.xdist_group("smoke")


@pytest.fixture(scope="module")
def run(smoke_experiment):
    proc, exp = smoke_experiment
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, exp


@pytest.fixture(scope="module")
def private_test():
    return load_fer2013(data_file("fer2013-small.csv.gz")).private_test


def test_ensemble_is_reported_beside_each_member(run):
    proc, exp = run
    metrics = json.loads((exp / "metrics.json").read_text())
    summary = json.loads((exp / "summary.json").read_text())
    ens = metrics["ensemble"]
    assert ens["k"] == 2 and len(ens["members"]) == 2 and ens["n"] == 350
    ids = [m["trial_id"] for m in ens["members"]]
    trials = pd.read_csv(exp / "trials.csv", dtype={"trial_id": str})
    ok = trials[trials.status != "failed"]
    ranked = ok.sort_values("best_val_accuracy", ascending=False, kind="stable").trial_id.tolist()
    assert ids == ranked[:2], "members are the two best trials, best first"
    assert ids[0] == summary["best_trial"]
    for m in ens["members"]:
        assert 0 <= m["accuracy"] <= 1 and 0 <= m["accuracy_tta"] <= 1
    assert ens["members"][0]["accuracy"] == pytest.approx(metrics["accuracy"])
    assert summary["ensemble_private_test_accuracy"] == pytest.approx(ens["accuracy"])
    assert summary["ensemble_private_test_accuracy_tta"] == pytest.approx(ens["tta"]["accuracy"])
    assert "top-2 ensemble" in proc.stdout
    report = (exp / "report.md").read_text()
    assert "Top-2 ensemble" in report and f"**{ens['accuracy']:.4f}**" in report


def test_saved_ensemble_reproduces_the_reported_accuracy(run, private_test):
    _, exp = run
    metrics = json.loads((exp / "metrics.json").read_text())
    record = json.loads((exp / "ensemble" / ENSEMBLE_FILE).read_text())
    assert record["members"] == ["member-0", "member-1"]
    predictor = load_predictor(exp / "ensemble")
    assert predictor.is_ensemble
    probs = predictor.predict_proba(private_test.images)
    assert probs.shape == (350, 7) and np.allclose(probs.sum(1), 1, atol=1e-5)
    # The mean of the members' own probabilities, member by member.
    members = [load_model(exp / "ensemble" / name) for name in record["members"]]
    mean = np.mean([predict_proba(m, private_test.images, c.input_size, c.in_chans)
                    for m, c in members], axis=0)
    assert np.allclose(probs, mean, atol=1e-6)
    got = metrics_from_probs(probs, private_test.labels)["accuracy"]
    assert got == pytest.approx(metrics["ensemble"]["accuracy"], abs=1.5 / 350)
    single = load_predictor(exp / "model").predict_proba(private_test.images)
    assert metrics_from_probs(single, private_test.labels)["accuracy"] == \
        pytest.approx(metrics["accuracy"], abs=1.5 / 350)


@pytest.mark.parametrize("folder,file", [("model", "model.onnx"), ("ensemble", "ensemble.onnx")])
def test_onnx_matches_pytorch(run, private_test, folder, file):
    _, exp = run
    onnx_file = exp / folder / file
    assert onnx_file.is_file(), "the search exports the retrained model and the ensemble"
    faces = private_test.images[:64]
    ort_probs = onnx_probabilities(onnx_file, faces)
    torch_probs = load_predictor(exp / folder).predict_proba(faces)
    assert ort_probs.shape == (64, 7)
    assert np.abs(ort_probs - torch_probs).max() < 1e-4
    assert (ort_probs.argmax(1) == torch_probs.argmax(1)).all()


def test_export_cli_check_and_bad_folder(run, tmp_path, capsys):
    _, exp = run
    out = tmp_path / "again.onnx"
    assert export_main([str(exp / "model"), "--output", str(out), "--check"]) == 0
    assert out.is_file() and "difference" in capsys.readouterr().out
    assert export_main([str(tmp_path)]) == 2
    assert "not a model folder" in capsys.readouterr().err


def test_predict_scores_a_split_like_the_search_did(run, tmp_path, capsys):
    _, exp = run
    metrics = json.loads((exp / "metrics.json").read_text())
    preds = tmp_path / "preds.csv"
    small = str(data_file("fer2013-small.csv.gz"))
    assert predict_main([str(exp / "model"), "--data", small, "--usage", "PrivateTest", "--json",
                         "--predictions", str(preds)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["n"] == 350 and record["split"] == "PrivateTest"
    assert record["accuracy"] == pytest.approx(metrics["accuracy"], abs=1.5 / 350)
    table = pd.read_csv(preds)
    assert len(table) == 350 and set(table.label) <= set(EMOTIONS)
    assert np.allclose(table[[f"p_{e}" for e in EMOTIONS]].sum(1), 1, atol=1e-4)

    assert predict_main([str(exp / "ensemble"), "--data", small, "--usage", "PublicTest", "--tta"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("PublicTest: accuracy") and "2 model(s) with ten-crop TTA" in out


@pytest.mark.parametrize("where", ["missing/preds.csv", "."], ids=["missing_folder", "a_folder"])
def test_predict_refuses_a_predictions_path_before_scoring(where, tmp_path, capsys):
    # No model and no data here: the path is refused before either is looked at.
    code = predict_main([str(tmp_path / "no-model"), "--data", str(tmp_path / "never-read.csv"),
                         "--predictions", str(tmp_path / where)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--predictions" in err, err


def test_predict_with_an_ensemble_folder_on_images(run, tmp_path, capsys):
    from PIL import Image

    _, exp = run
    image = tmp_path / "face.png"
    Image.new("L", (48, 48), 120).save(image)
    assert predict_main([str(exp / "ensemble"), str(image), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def test_predict_usage_errors(run, tmp_path, capsys, monkeypatch):
    _, exp = run
    with pytest.raises(SystemExit) as e:  # both images and --data
        predict_main([str(exp / "model"), "face.png", "--data", "x.csv"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        predict_main([str(exp / "model"), "--data", "x.csv", "--usage", "Validation"])
    assert e.value.code == 2
    assert predict_main([str(exp / "model"), "--data", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    # Neither images nor --data: the split of $FER2013_CSV, the same fallback as every command.
    monkeypatch.setenv("FER2013_CSV", str(tmp_path / "from-env.csv"))
    assert predict_main([str(exp / "model")]) == 2
    assert "from-env.csv (from $FER2013_CSV)" in capsys.readouterr().err


@pytest.mark.parametrize("nodes,n_tasks,expected", [
    ([{"CPU": 2}], 1, {"num_gpus": 0, "num_cpus": 2}),
    ([{"CPU": 2}], 2, {"num_gpus": 0, "num_cpus": 1}),       # two 1-thread retrains side by side
    ([{"CPU": 2}], 5, {"num_gpus": 0, "num_cpus": 1}),       # the rest queue
    ([{"CPU": 16, "GPU": 1}], 1, {"num_gpus": 1.0, "num_cpus": 4}),
    ([{"CPU": 16, "GPU": 1}], 3, {"num_gpus": 0.33, "num_cpus": 4}),  # a third of the GPU each
    ([{"CPU": 16, "GPU": 4}], 8, {"num_gpus": 0.5, "num_cpus": 2}),   # all 8 fit at once
    ([{"CPU": 8, "GPU": 8}], 8, {"num_gpus": 1.0, "num_cpus": 1}),
    ([{"CPU": 4}, {"CPU": 8, "GPU": 1}, {"CPU": 8, "GPU": 1}], 2, {"num_gpus": 1.0, "num_cpus": 4}),
])
def test_retrain_task_resources_fit_one_node(nodes, n_tasks, expected):
    from search.retrain import task_resources

    got = task_resources(nodes, n_tasks)
    assert got == expected
    # Every request fits on some single node (a request no node can hold would wait forever),
    # and on a GPU cluster all the tasks fit at once.
    assert any(got["num_cpus"] <= n.get("CPU", 0) and got["num_gpus"] <= n.get("GPU", 0) for n in nodes)
    if got["num_gpus"]:
        slots = sum(min(int(n["GPU"] // got["num_gpus"] + 1e-9), n["CPU"] // got["num_cpus"])
                    for n in nodes if n.get("GPU"))
        assert slots >= n_tasks
