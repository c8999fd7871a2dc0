"""OptunaSearch that tells Optuna the truth about trials ASHA stopped.

Ray's OptunaSearch (2.60) reports every epoch as an intermediate value, but then tells the study
that a trial ASHA stopped early is COMPLETE with its low-budget value, so TPE treats a 1-epoch
score as a final one. Here such trials reach the study as PRUNED, keeping their intermediate
values (TPE uses those to rank pruned trials); failed trials are FAIL.
"""
from __future__ import annotations

import logging
import warnings

import optuna

from .objectives import constraint_values
from .private_api import OptunaSearchWithTrials
from .study_end import name_objectives
from .trainable import FINISHED_KEY

logger = logging.getLogger(__name__)


class PrunedAwareOptunaSearch(OptunaSearchWithTrials):
    """``constraints`` (a space's, :mod:`search.objectives`): set on each finished trial with
    ``Trial.set_constraint`` from the measures in its results, before the study is told."""

    def __init__(self, *args, constraints: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.constraints = constraints or {}
        if self.study is not None:  # set up in __init__ when the space is given (as here)
            name_objectives(self.study, self.metric if isinstance(self.metric, list)
                            else [self.metric])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if self.constraints and result and self.optuna_trial(trial_id) is not None \
                and not self.is_told(trial_id) \
                and all(name in result for name in self.constraints):
            ot_trial = self.optuna_trial(trial_id)
            try:
                for key, value in constraint_values(self.constraints, result).items():
                    ot_trial.set_constraint(key, value)
            except Exception as exc:  # e.g. told already after a restore, or a NaN measure
                logger.warning("could not set the constraints of trial %s: %s", trial_id, exc)
        if error or not result or result.get(FINISHED_KEY, True) or self.is_told(trial_id) \
                or self.optuna_trial(trial_id) is None:
            return super().on_trial_complete(trial_id, result, error)
        ot_trial = self.optuna_trial(trial_id)
        step = result.get("training_iteration")
        # Optuna keeps no intermediate values for several objectives: only the state is told.
        value = None if isinstance(self.metric, list) else result.get(self.metric)
        if value is not None and step is not None:
            with warnings.catch_warnings():  # the step is usually reported already: Optuna ignores it
                warnings.simplefilter("ignore")
                ot_trial.report(value, step)
        try:
            self.study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
        except Exception as exc:  # e.g. the study was told already after a restore
            logger.warning("could not mark trial %s pruned: %s", trial_id, exc)
        self.mark_told(trial_id)

