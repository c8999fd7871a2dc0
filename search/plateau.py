"""Stop a search that has stopped improving (``search.plateau_trials`` / ``plateau_gain``).

After ``trials`` finished trials in a row none of which beat the best finished trial by more
than ``gain`` (in the metric's units: 0.008 is about one standard error of PublicTest accuracy),
the search stops, running trials too, as a time budget stops it; the retrain then runs as usual.
A trial that ASHA stopped or that failed counts as finished: it was paid for. Ray Tune's
``ExperimentPlateauStopper`` judges the spread of the top results instead, which a search of
noisy, differently-long trials rarely settles; its ``Stopper.stop_all`` hook is what this uses,
with a ``Callback`` to see trials finish.

    >>> from types import SimpleNamespace as T
    >>> rule = PlateauStop("val_accuracy", "max", trials=2, gain=0.01)
    >>> for tid, acc in [("a", 0.50), ("b", 0.505), ("c", 0.52), ("d", 0.51), ("e", 0.525)]:
    ...     rule.on_trial_result(0, [], T(trial_id=tid), {"val_accuracy": acc})
    ...     rule.on_trial_complete(0, [], T(trial_id=tid))
    >>> rule.stop_all(), rule.reason()
    (True, 'no gain above 0.01 in val_accuracy over the last 2 finished trials (best 0.5200, trial c)')
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ray.tune import Callback
from ray.tune.stopper import Stopper

__all__ = ["PlateauStop"]


class PlateauStop(Callback, Stopper):
    """Pass one instance as both ``RunConfig(stop=...)`` and one of its ``callbacks``. Its counts
    travel in Tune's experiment checkpoints (``get_state``), so a resumed search goes on counting;
    when it stops a search it writes its reason to ``record`` (a JSON file), which the driver
    reads whichever copy of the rule the (restored) Tuner used."""

    def __init__(self, metric: str, mode: str, trials: int, gain: float = 0.0,
                 record: str | Path | None = None):
        self.metric, self.mode, self.trials, self.gain = metric, mode, int(trials), float(gain)
        self.record = None if record is None else str(record)
        self.trial_best: dict[str, float] = {}   # trial id -> its best value so far
        self.best: float | None = None           # the best finished trial's value
        self.best_trial = ""
        self.since = 0                           # finished trials since the best improved

    def better(self, value: float, than: float) -> bool:
        return value > than + self.gain if self.mode == "max" else value < than - self.gain

    # --- Callback: what the trials report ------------------------------------------------
    def on_trial_result(self, iteration, trials, trial, result, **info):
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            old = self.trial_best.get(trial.trial_id)
            if old is None or (value > old if self.mode == "max" else value < old):
                self.trial_best[trial.trial_id] = float(value)

    def on_trial_complete(self, iteration, trials, trial, **info):
        value = self.trial_best.get(trial.trial_id)
        if value is not None and (self.best is None or self.better(value, self.best)):
            self.best, self.best_trial, self.since = value, trial.trial_id, 0
        else:
            self.since += 1

    def on_trial_error(self, iteration, trials, trial, **info):
        self.since += 1

    # --- Stopper: Tune asks after every result ---------------------------------------------
    def __call__(self, trial_id, result) -> bool:
        return False  # no single trial is stopped here

    def stop_all(self) -> bool:
        stop = self.best is not None and self.since >= self.trials
        if stop and self.record and not Path(self.record).exists():
            Path(self.record).write_text(json.dumps({"reason": self.reason()}))
        return stop

    # --- Tune's experiment checkpoints (a resumed search keeps counting) ---------------------
    def get_state(self) -> dict:
        return {"trial_best": dict(self.trial_best), "best": self.best,
                "best_trial": self.best_trial, "since": self.since}

    def set_state(self, state: dict) -> None:
        self.trial_best = dict(state.get("trial_best", {}))
        self.best, self.best_trial = state.get("best"), state.get("best_trial", "")
        self.since = int(state.get("since", 0))

    def reason(self) -> str:
        return (f"no gain above {self.gain:g} in {self.metric} over the last {self.since} finished "
                f"trials (best {self.best:.4f}, trial {self.best_trial})")
