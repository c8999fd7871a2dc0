"""ASHA whose rung records survive a driver restart.

Ray Tune's restore brings back trials and the searcher, but not the scheduler: a restored ASHA
starts with empty rungs and would promote every later trial. This subclass appends each rung
record to a JSON Lines file in the experiment folder when it is made (one short line: rewriting
every rung at each decision grew with the trials, bench/bench_scale.py) and reads them back on
restore. Each decision is also kept in ``decisions`` for the console to print
(:mod:`search.console`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ray.tune.schedulers import TrialScheduler

from .private_api import ASHAWithRungs


@dataclass
class RungDecision:
    trial_id: str
    milestone: int          # the rung: epochs trained when it was judged
    value: float            # its rung metric there
    cutoff: float | None    # the bar it had to reach (None: first at this rung, passes)
    stopped: bool
    metric: str
    mode: str               # max | min: which side of the cutoff passes


class ResumableASHA(ASHAWithRungs):
    def __init__(self, state_file: str | os.PathLike, **kwargs):
        super().__init__(**kwargs)
        self.state_file = str(state_file)
        self.decisions: list[RungDecision] = []
        self.load_rungs()

    def on_trial_result(self, tune_controller, trial, result):
        pending = self.pending_rung(trial.trial_id, result)
        decision = super().on_trial_result(tune_controller, trial, result)
        if pending is not None and trial.trial_id in pending[1]:  # judged at this rung now
            milestone, recorded, cutoff = pending
            self.decisions.append(RungDecision(
                trial.trial_id, milestone, float(result[self.metric]),
                None if cutoff is None else float(self.metric_sign * cutoff),
                decision == TrialScheduler.STOP, self.metric, self.mode))
            self.append_record(self.bracket_of(trial.trial_id), milestone, trial.trial_id,
                               recorded[trial.trial_id])
        return decision

    def pending_rung(self, trial_id: str, result: dict):
        """(milestone, its records, cutoff) of the rung this result will be judged at, if any."""
        bracket = self.bracket_of(trial_id)
        if bracket is None or self.time_attr not in result or self.metric not in result:
            return None
        for milestone, recorded in self.bracket_rungs(bracket):  # highest first, as ASHA walks
            if trial_id in recorded:
                return None
            if result[self.time_attr] >= milestone:
                return milestone, recorded, self.rung_cutoff(bracket, recorded)
        return None

    def rungs(self) -> list[list[tuple[int, dict]]]:
        return [[(m, dict(rec)) for m, rec in self.bracket_rungs(b)]
                for b in range(self.bracket_count())]

    def append_record(self, bracket: int, milestone: int, trial_id: str, value: float) -> None:
        with open(self.state_file, "a") as f:
            f.write(json.dumps([bracket, milestone, trial_id, value]) + "\n")

    def load_rungs(self) -> None:
        saved = read_rungs(self.state_file)
        for bracket, rungs in zip(range(self.bracket_count()), saved):
            by_milestone = {int(m): rec for m, rec in rungs}
            self.set_bracket_rungs(bracket, [(m, dict(by_milestone.get(int(m), rec)))
                                             for m, rec in self.bracket_rungs(bracket)])

    def __getstate__(self):  # pickled into tuner.pkl: keep it a plain object
        state = self.__dict__.copy()
        state["decisions"] = []  # what the console printed; not scheduler state
        return state


def read_rungs(path: str | os.PathLike) -> list[list[tuple[int, dict]]]:
    """The rung records of a search, per bracket: ``[[(milestone, {trial_id: value}), ...]]``
    (values as ASHA keeps them: negated for a minimised metric). [] when there are none yet.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "asha-rungs.jsonl"
    >>> _ = path.write_text('[0, 1, "a", 0.5]\\n[0, 1, "b", 0.4]\\n[0, 2, "a", 0.6]\\n')
    >>> read_rungs(path)
    [[(2, {'a': 0.6}), (1, {'a': 0.5, 'b': 0.4})]]
    """
    path = Path(path)
    legacy = path.with_suffix(".json")  # before JSON Lines: the whole list, rewritten each time
    if not path.exists() and legacy.exists():
        return [[(int(m), rec) for m, rec in rungs] for rungs in json.loads(legacy.read_text())]
    if not path.exists():
        return []
    brackets: dict[int, dict[int, dict]] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            bracket, milestone, trial_id, value = json.loads(line)
        except ValueError:  # a line cut short by a killed driver: that record was never acted on
            continue
        brackets.setdefault(int(bracket), {}).setdefault(int(milestone), {})[trial_id] = value
    return [sorted(brackets[b].items(), reverse=True) for b in sorted(brackets)]
