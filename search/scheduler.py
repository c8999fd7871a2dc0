"""ASHA whose rung records survive a driver restart.

Ray Tune's restore brings back trials and the searcher, but not the scheduler: a restored ASHA
starts with empty rungs and would promote every later trial. This subclass writes its rungs to
a JSON file in the experiment folder after each decision and reads them back on restore.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ray.tune.schedulers import ASHAScheduler


class ResumableASHA(ASHAScheduler):
    def __init__(self, state_file: str | os.PathLike, **kwargs):
        super().__init__(**kwargs)
        self._state_file = str(state_file)
        self._load()

    def on_trial_result(self, tune_controller, trial, result):
        decision = super().on_trial_result(tune_controller, trial, result)
        self._save()
        return decision

    def rungs(self) -> list[list[tuple[int, dict]]]:
        return [[(m, dict(rec)) for m, rec in b._rungs] for b in self._brackets]

    def _save(self) -> None:
        tmp = f"{self._state_file}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.rungs(), f)
        os.replace(tmp, self._state_file)

    def _load(self) -> None:
        path = Path(self._state_file)
        if not path.exists():
            return
        saved = json.loads(path.read_text())
        for bracket, rungs in zip(self._brackets, saved):
            by_milestone = {int(m): rec for m, rec in rungs}
            bracket._rungs = [(m, dict(by_milestone.get(int(m), rec))) for m, rec in bracket._rungs]

    def __getstate__(self):  # pickled into tuner.pkl: keep it a plain object
        return self.__dict__.copy()
