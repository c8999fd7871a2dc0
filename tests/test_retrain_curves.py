"""The retrain's curves reach TensorBoard while it trains: each seed's run has its first epoch on
disk before the retrain has ended (before ``model/`` is saved), and holds every epoch once."""
from __future__ import annotations

import threading
import time

import pytest

from tests.tensorboard_events import scalars

pytestmark = pytest.mark.slow

SPACE = """\
search: {sampler: random, num_samples: 1, asha: false}
retrain: {epochs: 3, seeds: [0, 1], tta: false}
params: {backbone: resnet10t, epochs: 3, batch_size: 128, lr: {loguniform: [1.0e-3, 1.0e-2]}}
"""
ACCURACY = "PublicTest/accuracy"


def test_each_seed_curve_is_in_tensorboard_before_the_retrain_ends(tmp_path, small_data):
    import ray

    from search.retrain import retrain_top
    from search.space import load_space

    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    space = load_space(path)
    config = {**space.fixed(), **space.default_config()}
    experiment = tmp_path / "experiment"
    experiment.mkdir()
    seed1_run, model_dir = experiment / "retrain" / "member-0-seed1", experiment / "model"
    first_sight = {}
    done = threading.Event()

    def watch():
        while not done.is_set():
            if seed1_run.is_dir() and 1 in scalars(seed1_run, ACCURACY):
                first_sight.update(time=time.time(), model_saved=model_dir.exists())
                return
            time.sleep(0.3)

    watcher = threading.Thread(target=watch)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        watcher.start()
        out = retrain_top(space, small_data, [config], experiment, trial_ids=["t1"])
    finally:
        done.set()
        watcher.join()
        ray.shutdown()

    assert first_sight, "seed 1's first epoch never reached retrain/member-0-seed1"
    assert not first_sight["model_saved"], "seed 1's curve appeared only after the retrain ended"
    # the run that becomes model/ is retrain/ itself, epoch by epoch as history.json has it
    history = {h["epoch"]: h["val_accuracy"] for h in out["history"]}
    assert scalars(experiment / "retrain", ACCURACY) == pytest.approx(history)
    assert sorted(scalars(seed1_run, ACCURACY)) == [1, 2, 3]
    assert sorted(scalars(seed1_run, "PublicTest/best_accuracy")) == [1, 2, 3]
