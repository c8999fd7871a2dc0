"""ASHA whose rung records survive a driver restart.

Ray Tune's restore brings back trials and the searcher, but not the scheduler: a restored ASHA
starts with empty rungs and would promote every later trial. This subclass writes its rungs to
a JSON file in the experiment folder after each rung decision (not after every result: most
results reach no rung) and reads them back on restore. Each decision is also kept in
``decisions`` for the console to print (:mod:`search.console`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ray.tune.schedulers import ASHAScheduler, TrialScheduler


@dataclass
class RungDecision:
    trial_id: str
    milestone: int          # the rung: epochs trained when it was judged
    value: float            # its rung metric there
    cutoff: float | None    # the bar it had to reach (None: first at this rung, passes)
    stopped: bool
    metric: str
    mode: str               # max | min: which side of the cutoff passes


class ResumableASHA(ASHAScheduler):
    def __init__(self, state_file: str | os.PathLike, **kwargs):
        super().__init__(**kwargs)
        self._state_file = str(state_file)
        self.decisions: list[RungDecision] = []
        self._load()

    def on_trial_result(self, tune_controller, trial, result):
        pending = self._pending_rung(trial, result)
        decision = super().on_trial_result(tune_controller, trial, result)
        if pending is not None and trial.trial_id in pending[1]:  # judged at this rung now
            milestone, recorded, cutoff = pending
            self.decisions.append(RungDecision(
                trial.trial_id, milestone, float(result[self._metric]),
                None if cutoff is None else float(self._metric_op * cutoff),
                decision == TrialScheduler.STOP, self._metric, self._mode))
            self._save()
        return decision

    def _pending_rung(self, trial, result):
        """(milestone, its records, cutoff) of the rung this result will be judged at, if any."""
        bracket = self._trial_info.get(trial.trial_id)
        if bracket is None or self._time_attr not in result or self._metric not in result:
            return None
        for milestone, recorded in bracket._rungs:  # descending, as _Bracket.on_result walks them
            if trial.trial_id in recorded:
                return None
            if result[self._time_attr] >= milestone:
                return milestone, recorded, bracket.cutoff(recorded)
        return None

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
        state = self.__dict__.copy()
        state["decisions"] = []  # what the console printed; not scheduler state
        return state
