"""search/staging.py on a real local Ray: an ended trial's staged folder is uploaded once and
removed, so Tune's copy after each snapshot carries only the running trials."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

ITERATIONS = 3


def _trial_fn(config):
    from ray import tune

    for i in range(ITERATIONS):
        if config["fail"] and i == 1:
            raise RuntimeError("this trial fails on purpose")
        tune.report({"score": config["x"] * (i + 1)})


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


def _look(trial, staging: Path) -> dict:
    staged, stored = Path(trial.local_path), Path(trial.path)
    return {"trial": trial.trial_id, "fail": trial.config["fail"], "path": str(stored),
            "status": trial.status, "staged": staged.exists(),
            "staging_trials": sorted(p.name for p in staging.iterdir() if p.is_dir()),
            "stored": sorted(p.name for p in stored.iterdir()) if stored.is_dir() else [],
            "rows": len(pd.read_csv(stored / "progress.csv"))
            if (stored / "progress.csv").is_file() else 0}


def test_ended_trials_leave_staging_with_their_files_in_the_experiment_folder(ray_local, tmp_path):
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from search.staging import ReleaseEndedTrials
    from search.tbx_callback import SearchTBXLoggerCallback

    class Watch(tune.Callback):
        """After ReleaseEndedTrials: at each trial's start (one trial at a time, so every trial
        before it has ended), what staging and the experiment folder hold for the ended ones."""

        def __init__(self):
            self.seen, self.ended, self.staging = [], [], None

        def on_trial_start(self, iteration, trials, trial, **info):
            self.staging = Path(trial.local_path).parent
            for done in self.ended:
                self.seen.append(_look(done, self.staging))
            self.ended = []

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.ended.append(trial)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.ended.append(trial)

        def on_experiment_end(self, trials, **info):
            for done in self.ended:
                self.seen.append(_look(done, self.staging))

    watch = Watch()
    tuner = tune.Tuner(
        _trial_fn,
        param_space={"x": tune.grid_search([1, 2, 3]),
                     "fail": tune.sample_from(lambda spec: spec.config.x == 2)},
        tune_config=tune.TuneConfig(max_concurrent_trials=1),
        run_config=tune.RunConfig(
            name="staging", storage_path=str(tmp_path), verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
            callbacks=[SearchTBXLoggerCallback(), CSVLoggerCallback(), JsonLoggerCallback(),
                       ReleaseEndedTrials(), watch]))
    results = tuner.fit()

    assert len(watch.seen) == 3

    def ended_before(seen):
        names = [Path(s["path"]).name for s in watch.seen]
        return set(names[:names.index(Path(seen["path"]).name) + 1])

    for seen in watch.seen:
        assert not seen["staged"], seen                      # gone from staging when it ended
        assert not set(seen["staging_trials"]) & ended_before(seen), seen  # none lingers
        assert {"progress.csv", "result.json", "params.json"} <= set(seen["stored"]), seen
        # Ray's events file and the session file search/tbx_callback.py writes beside it
        assert sum(name.startswith("events.out.tfevents") for name in seen["stored"]) == 2, seen
        assert seen["rows"] == (1 if seen["fail"] else ITERATIONS), seen  # every row, closed
        if seen["fail"]:
            assert "error.txt" in seen["stored"], seen
    # Tune reads the results back from the experiment folder as before
    frames = {r.config["x"]: r.metrics_dataframe for r in results}
    assert [len(frames[x]) for x in (1, 2, 3)] == [ITERATIONS, 1, ITERATIONS]
    assert list(frames[3]["score"]) == [3, 6, 9]
    assert sum(r.error is not None for r in results) == 1
