"""search.console: the lines a person follows, from trial events Ray Tune hands the callback."""
from __future__ import annotations

import re
from types import SimpleNamespace

from search.console import ConsoleCallback, format_config
from search.scheduler import RungDecision
from search.trainable import FINISHED_KEY


def trial(tid: str, status: str = "RUNNING", last: dict | None = None, **params):
    return SimpleNamespace(trial_id=tid, status=status, evaluated_params=params, config=params,
                           last_result=last or {}, error_msg="")


def console(**kw):
    lines: list[str] = []
    cb = ConsoleCallback(metric="val_accuracy", mode="max", num_samples=4, max_epochs=3,
                         print_fn=lines.append, progress_every_s=1e9, **kw)
    return cb, lines


def test_a_trial_lifecycle_in_lines():
    scheduler = SimpleNamespace(decisions=[])
    cb, lines = console(scheduler=scheduler)
    a, b = trial("aaaa", lr=0.00312345, crop=44), trial("bbbb", lr=0.01, crop=0)
    cb.on_trial_start(0, [a, b], a)
    cb.on_trial_start(0, [a, b], b)
    for t, acc in ((a, 0.41), (b, 0.35)):
        cb.on_trial_result(0, [a, b], t, {"val_accuracy": acc, "training_iteration": 1})
    scheduler.decisions.append(RungDecision("bbbb", 1, 0.35, 0.41, True, "val_accuracy", "max"))
    b.last_result = {FINISHED_KEY: False}
    cb.on_trial_complete(0, [a, b], b)
    cb.on_trial_result(0, [a, b], a, {"val_accuracy": 0.52, "training_iteration": 3})
    a.last_result = {FINISHED_KEY: True}
    cb.on_trial_complete(0, [a, b], a)
    text = "\n".join(lines)
    assert "trial 1/4 aaaa started: lr=0.003123 crop=44" in text
    assert "trial bbbb rung 1 (epoch 1): val_accuracy 0.3500 < cutoff 0.4100, stopped" in text
    assert re.search(r"trial bbbb stopped early after 1 epoch\(s\): PublicTest val_accuracy 0\.3500", text)
    assert re.search(r"trial aaaa completed: PublicTest val_accuracy 0\.5200 \(best epoch\)", text)
    assert re.search(r"\] 2 done \(1 stopped early\), \d running, 0 failed, 2 to start; "
                     r"best 0\.5200 \(aaaa\)", lines[-1]), lines[-1]


def test_trials_are_numbered_as_their_folders_are_not_as_they_happened_to_start():
    cb, lines = console()
    first, second = trial("aaaa", lr=0.001), trial("bbbb", lr=0.01)
    first.experiment_tag, second.experiment_tag = "1_lr=0.001", "2_lr=0.01"
    cb.on_trial_start(0, [first, second], second)   # Ray started the second-created one first
    cb.on_trial_start(0, [first, second], first)
    assert lines == ["trial 2/4 bbbb started: lr=0.01", "trial 1/4 aaaa started: lr=0.001"]


def test_the_default_configurations_trial_says_so():
    cb, lines = console(searched=["lr", "crop"], default={"lr": 0.001, "crop": 0})
    for tid, lr in (("aaaa", 0.001), ("bbbb", 0.01)):
        t = trial(tid, lr=lr, crop=0, epochs=3)
        cb.on_trial_start(0, [t], t)
    assert lines == ["trial 1/4 aaaa started: lr=0.001 crop=0 (the space's default)",
                     "trial 2/4 bbbb started: lr=0.01 crop=0"]


def test_rung_lines_for_a_minimised_metric_point_the_other_way():
    scheduler = SimpleNamespace(decisions=[RungDecision("c", 2, 1.2, 1.1, True, "val_loss", "min"),
                                           RungDecision("d", 2, 1.0, 1.1, False, "val_loss", "min")])
    cb, lines = console(scheduler=scheduler)
    cb.print_decisions()
    assert lines == ["trial c rung 2 (epoch 2): val_loss 1.2000 > cutoff 1.1000, stopped",
                     "trial d rung 2 (epoch 2): val_loss 1.0000 <= cutoff 1.1000, continues"]


def test_a_failed_trial_names_its_reason():
    cb, lines = console()
    t = trial("eeee")
    t.error_msg = "Traceback ...\nNonFiniteLossError: train loss became nan in epoch 2"
    cb.on_trial_start(0, [t], t)
    cb.on_trial_error(0, [t], t)
    assert "trial eeee failed after 0 epoch(s): NonFiniteLossError: train loss became nan" in lines[1]
    assert "1 failed" in lines[-1]


def test_the_estimate_scales_the_epochs_left_by_the_rate_so_far():
    cb, _ = console(time_budget_s=None)
    cb.order = {"a": 1, "b": 2}
    cb.epochs = {"a": 3, "b": 1}
    cb.ended = {"a": "completed"}
    # 4 epochs in 400 s; left: 2 trials to start x 3 epochs (a's length) + b's 2 = 8 epochs
    assert cb.estimate_left(400.0, to_start=2, running=1) == 800.0
    cb.time_budget_s = 600.0
    assert cb.estimate_left(400.0, to_start=2, running=1) == 200.0  # the budget ends it sooner


def test_only_the_searched_params_are_printed():
    cb, lines = console(searched=["lr"])
    t = trial("ffff", lr=0.01, epochs=3, backbone="resnet10t")
    cb.on_trial_start(0, [t], t)
    assert lines == ["trial 1/4 ffff started: lr=0.01"]


def test_format_config_rounds_floats_only():
    assert format_config({"lr": 1 / 3, "backbone": "resnet10t", "epochs": 3}) == \
        "lr=0.3333 backbone=resnet10t epochs=3"


def test_a_time_budget_that_ran_out_says_what_it_cut():
    cb, lines = console(time_budget_s=60.0)
    a, b = trial("aaaa", lr=0.01), trial("bbbb", lr=0.02)
    for t in (a, b):
        cb.on_trial_start(0, [a, b], t)
    a.last_result = {FINISHED_KEY: True}
    cb.on_trial_complete(0, [a, b], a)
    assert cb.budget_line(59.0) is None  # the search ended on its own: nothing was cut
    cb.start -= 61.0
    cb.on_experiment_end([a, b])
    assert lines[-1] == ("search stopped by its 1-minute time budget: 1 trial(s) cut while "
                         "running, 2 never started")
    assert sum(line == lines[-1] for line in lines) == 1


def test_the_search_end_repeats_no_progress_line():
    cb, lines = console()
    a = trial("aaaa", lr=0.01)
    cb.on_trial_start(0, [a], a)
    a.last_result = {FINISHED_KEY: True}
    a.status = "TERMINATED"
    cb.on_trial_complete(0, [a], a)
    cb.on_experiment_end([a])  # same state, same minute: nothing new to say
    assert len(lines) == len(set(lines)) == 3, lines
