"""summary.json and metrics.json read back: the shapes this tool writes pass, an edited key is
named in one line, and `search.report` refuses such a folder before it rewrites anything. (The
end-to-end searches read their own records back through the same checks.)"""
from __future__ import annotations

import copy
import json

import pytest

from fer_models.textfiles import InputFileError
from search.experiment_folder import ExperimentFolder
from search.report import main as report_main
from search.result_records import check_metrics, check_summary

SCORES = {"n": 3589, "accuracy": 0.6431, "loss": 0.98, "macro_f1": 0.636,
          "per_class_accuracy": {"Angry": 0.55, "Disgust": 0.6, "Fear": 0.41, "Happy": 0.86,
                                 "Sad": 0.5, "Surprise": 0.78, "Neutral": 0.64},
          "confusion_matrix": [[1] * 7 for _ in range(7)]}
MEMBER = {"member": "member-0", "trial_id": "b76271c7", "backbone": "resnet18", "seed": 0,
          "weights_epoch": 45, "accuracy": 0.6431, "macro_f1": 0.636, "accuracy_tta": 0.6776}
METRICS = {**SCORES, "split": "PrivateTest", "seed": 0, "retrain_epochs": 56,
           "accuracy_mean": 0.6484, "accuracy_sd": 0.0075,
           "per_seed": [{"seed": 0, "weights_epoch": 45, "accuracy": 0.6431, "macro_f1": 0.636,
                         "accuracy_tta": 0.6776}],
           "retrain_seconds": 4100.2, "tta": dict(SCORES),
           "ensemble": {**SCORES, "k": 2, "members": [MEMBER], "tta": dict(SCORES)}}
SUMMARY = {"space": "spaces/wide.yaml", "experiment": "/r/wide", "command": "python -m search.run",
           "sampler": "random", "seed": 0, "scheduler": "asha", "metric": "val_accuracy",
           "trials_requested": 1, "trials_run": 1, "search_ended_by": "all 1 trials run",
           "trials_completed": 1, "trials_stopped_early": 0, "trials_failed": 0,
           "total_epochs": 1, "best_trial": "b76271c7", "best_public_test_accuracy": 0.31,
           "default_config": {"backbone": "resnet18", "lr": 0.001},
           "vs_default": {"default_trial": "b76271c7", "default_status": "completed",
                          "default_epochs": 1, "winner_is_default": True, "compared_at_epoch": 1,
                          "winner_public_test_accuracy": 0.31, "default_public_test_accuracy": 0.31,
                          "gain_pt": 0.0},
           "private_test_looks": 1, "retrain_epochs": 56, "retrain_seeds": [0, 1],
           "private_test_accuracy": 0.6431, "private_test_accuracy_mean": 0.6484,
           "private_test_accuracy_sd": 0.0075, "private_test_n": 3589,
           "resources_per_trial": {"cpu": 1, "gpu": 0}, "wall_seconds": 4399.1}


def test_the_records_this_tool_writes_pass():
    check_metrics(copy.deepcopy(METRICS), "metrics.json")
    check_summary(copy.deepcopy(SUMMARY), "summary.json")
    check_metrics({}, "metrics.json")  # a retrain that has not scored yet
    check_summary({**SUMMARY, "a_key_of_a_later_version": [1]}, "summary.json")


def _edit(record: dict, path: str, value):
    out = copy.deepcopy(record)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is KeyError:
        del node[last]
    else:
        node[int(last) if isinstance(node, list) else last] = value
    return out


@pytest.mark.parametrize("path, value, named", [
    ("accuracy", "0.64", "accuracy is '0.64', not a number in [0, 1]"),
    ("accuracy", 64.3, "accuracy is 64.3, not a number in [0, 1]"),
    ("accuracy", True, "accuracy is True"),
    ("n", 0, "n is 0, not an integer >= 1"),
    ("loss", KeyError, "lacks loss"),
    ("confusion_matrix", [[1] * 7] * 6, "confusion_matrix"),
    ("confusion_matrix.2", [1, 2, "3", 4, 5, 6, 7], "item 2 is a list whose item 2"),
    ("per_class_accuracy.Fear", -0.1, "'Fear' is a number in [0, 1]"),
    ("per_seed.0.accuracy", None, "per_seed is"),
    ("per_seed", {"seed": 0}, "per_seed is {'seed': 0}, not a list"),
    ("tta.macro_f1", KeyError, "tta is"),
    ("ensemble.members.0.member", KeyError, "with member"),
    ("ensemble.k", "2", "ensemble is"),
])
def test_an_edited_metrics_key_is_named(path, value, named):
    with pytest.raises(InputFileError) as e:
        check_metrics(_edit(METRICS, path, value), "r/metrics.json")
    message = str(e.value)
    assert message.startswith("r/metrics.json: ") and named in message, message
    assert "\n" not in message and len(message) < 400


@pytest.mark.parametrize("path, value, named", [
    ("wall_seconds", "4399", "wall_seconds is '4399', not a number >= 0"),
    ("trials_run", 1.5, "trials_run is 1.5, not an integer >= 0"),
    ("private_test_accuracy", float("nan"), "private_test_accuracy is nan"),
    ("retrain_seeds", [0, "1"], "retrain_seeds"),
    ("vs_default.winner_is_default", KeyError, "with winner_is_default"),
    ("vs_default.gain_pt", "+3", "gain_pt is"),
    ("vs_default", [], "vs_default is [], not a mapping"),
    ("best_trial", 12, "best_trial is 12, not text"),
])
def test_an_edited_summary_key_is_named(path, value, named):
    with pytest.raises(InputFileError) as e:
        check_summary(_edit(SUMMARY, path, value), "r/summary.json")
    assert named in str(e.value), str(e.value)


def test_a_comparison_with_the_default_carries_its_figures():
    """describe_comparison formats the three figures whenever an epoch was compared."""
    compared = _edit(SUMMARY, "vs_default.winner_is_default", False)
    check_summary(compared, "summary.json")
    check_summary(_edit(_edit(compared, "vs_default.compared_at_epoch", None),
                        "vs_default.gain_pt", KeyError), "summary.json")  # nothing compared
    with pytest.raises(InputFileError, match="vs_default is .*, not a mapping with gain_pt"):
        check_summary(_edit(compared, "vs_default.gain_pt", KeyError), "summary.json")


def test_report_refuses_an_edited_folder_before_rewriting_anything(tmp_path, capsys):
    folder = ExperimentFolder(tmp_path)
    folder.trials_csv.write_text("trial_id,status,epochs,best_val_accuracy,error\n")
    folder.summary_json.write_text(json.dumps(SUMMARY))
    folder.metrics_json.write_text(json.dumps(_edit(METRICS, "ensemble.members", "all")))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert report_main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "metrics.json: ensemble is" in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no report.md, no retrain/ run
