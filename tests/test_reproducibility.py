"""A seeded search is reproducible: run twice, one trial at a time, it proposes the same configs
and its trials report the same per-epoch metrics (real Ray, Optuna TPE, ASHA and timm)."""
from __future__ import annotations

import numpy as np
import pytest
import ray

from fer_models.data import FER2013, Split
from search.experiment import build_tuner
from search.space import load_space

TIMING = {"seconds", "images_per_s", "time_this_iter_s", "time_total_s", "timestamp", "date",
          "time_since_restore", "pid", "hostname", "node_ip", "node_id", "trial_id",
          "experiment_tag", "checkpoint_dir_name", "done"}
pytestmark = pytest.mark.slow


def _subset(split: Split, n: int, seed: int) -> Split:
    idx = np.sort(np.random.default_rng(seed).permutation(len(split))[:n])
    return Split(split.images[idx], split.labels[idx])


def _search(space, data, folder) -> list[tuple[dict, list[dict]]]:
    folder.mkdir()
    results = build_tuner(space, data, folder, {"cpu": 1, "gpu": 0}, verbose=0).fit()
    assert not results.errors, results.errors
    # search.checkpoint: 3600 paces checkpoints out: none within an hour of a trial's start
    assert all(r.checkpoint is None for r in results)
    assert not list(folder.glob("*/checkpoint_*"))
    runs = []
    for r in sorted(results, key=lambda r: r.path):  # Tune numbers trial folders in creation order
        history = r.metrics_dataframe.drop(columns=[c for c in TIMING
                                                    if c in r.metrics_dataframe.columns])
        runs.append((dict(r.config), history.to_dict("records")))
    return sorted(runs, key=lambda run: repr(sorted(run[0].items())))


def test_a_seeded_search_twice_gives_the_same_trials(tmp_path, small_data):
    space_file = tmp_path / "repro.yaml"
    space_file.write_text("""
search: {sampler: tpe, seed: 7, num_samples: 2, max_concurrent: 1,
         asha: {grace_period: 1, reduction_factor: 2}, checkpoint: 3600}
params:
  backbone: resnet10t
  epochs: 2
  batch_size: 64
  threads: 1
  lr: {loguniform: [1.0e-4, 1.0e-2]}
  dropout: {uniform: [0.0, 0.5]}
""")
    space = load_space(space_file)
    data = FER2013(_subset(small_data.train, 384, 0), _subset(small_data.public_test, 96, 1), None)
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        first = _search(space, data, tmp_path / "first")
        second = _search(space, data, tmp_path / "second")
    finally:
        ray.shutdown()
    assert len(first) == 2   # the space's default, then the sampler's first proposal
    assert [c for c, _ in first] == [c for c, _ in second]          # the same configs proposed
    assert len({repr(sorted(c.items())) for c, _ in first}) == 2      # and they do differ
    for (_, a), (_, b) in zip(first, second):                         # the same metrics, exactly
        assert a == b
        assert a and all("val_accuracy" in row for row in a)
