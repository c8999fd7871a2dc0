"""search.plateau: a search that stops itself when it stops improving."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from search.plateau import PlateauStop


def _finish(rule: PlateauStop, trial_id: str, *values: float) -> None:
    trial = SimpleNamespace(trial_id=trial_id)
    for v in values:
        rule.on_trial_result(0, [], trial, {"val_accuracy": v})
    rule.on_trial_complete(0, [], trial)


def test_the_rule_stops_after_n_finished_trials_without_a_gain():
    rule = PlateauStop("val_accuracy", "max", trials=3, gain=0.005)
    _finish(rule, "a", 0.40, 0.50)           # the first finished trial sets the best
    _finish(rule, "b", 0.503)                # +0.003: not a gain above 0.005
    _finish(rule, "c", 0.49)
    assert not rule.stop_all()
    rule.on_trial_error(0, [], SimpleNamespace(trial_id="d"))  # a failed trial was paid for too
    assert rule.stop_all()
    assert rule.reason() == ("no gain above 0.005 in val_accuracy over the last 3 finished trials "
                             "(best 0.5000, trial a)")


def test_the_rule_does_not_stop_while_trials_still_gain():
    rule = PlateauStop("val_accuracy", "max", trials=2, gain=0.005)
    for i, acc in enumerate((0.40, 0.41, 0.40, 0.42, 0.43, 0.425, 0.44)):
        _finish(rule, f"t{i}", acc)
        assert not rule.stop_all(), (i, acc)


def test_the_rule_minimises_a_loss():
    rule = PlateauStop("val_loss", "min", trials=1, gain=0.0)
    trial = SimpleNamespace(trial_id="a")
    rule.on_trial_result(0, [], trial, {"val_loss": 1.2})
    rule.on_trial_complete(0, [], trial)
    trial = SimpleNamespace(trial_id="b")
    rule.on_trial_result(0, [], trial, {"val_loss": 1.1})
    rule.on_trial_complete(0, [], trial)
    assert not rule.stop_all() and rule.best == 1.1


@pytest.mark.slow
def test_a_real_search_stops_on_its_plateau_and_still_retrains(tmp_path, tiny_data, capsys):
    """6 trials asked; no trial can gain 0.9 over the first, so the search stops after the
    first finished trial and 2 more; the retrain runs and every output says why it stopped."""
    import ray

    from search.experiment import run_experiment
    from search.experiment_folder import ExperimentFolder
    from search.space import load_space

    path = tmp_path / "plateau.yaml"
    path.write_text("""
search: {sampler: random, seed: 0, num_samples: 6, max_concurrent: 1, asha: false,
         plateau_trials: 2, plateau_gain: 0.9}
retrain: {epochs: 1, tta: false, onnx: false}
params: {backbone: resnet10t, epochs: 1, batch_size: 64, lr: {loguniform: [1.0e-4, 1.0e-2]}}
""")
    try:
        outcome = run_experiment(load_space(path), tiny_data, tmp_path / "plateau", num_cpus=2,
                                 verbose=1)
    finally:
        ray.shutdown()
    out = capsys.readouterr().out
    summary = outcome["summary"]
    # Three finished; a fourth may have started before Tune asked the rule, and is cut.
    assert summary["trials_completed"] == 3 and summary["trials_run"] <= 4, summary
    assert summary["search_ended_by"].startswith("the plateau rule: no gain above 0.9 in "
                                                 "val_accuracy over the last 2 finished trials")
    assert out.count("search stopped: the plateau rule") == 1
    assert summary["private_test_accuracy"] > 0  # the retrain ran as usual
    saved = json.loads((tmp_path / "plateau" / "summary.json").read_text())
    assert saved["search_ended_by"] == summary["search_ended_by"]
    study = ExperimentFolder(tmp_path / "plateau").load_study()
    assert all(t.state.name != "RUNNING" for t in study.trials)
