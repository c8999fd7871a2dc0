"""The Optuna study of a search, closed when the search ends.

Ray Tune stops a search (its time budget, Ctrl-C) without telling the study about the trials it
cut: they stay RUNNING in the journal forever, and optuna-dashboard draws them growing. Here
every such trial gets a final state (PRUNED when it reported epochs, FAIL when it had none), the
study's ``ended_by`` user attribute says why, trial by trial, and the study names its objectives.

Example:
    >>> import optuna
    >>> study = optuna.create_study(direction="maximize")
    >>> cut = study.ask()
    >>> cut.report(0.4, 1)
    >>> close_study(study, ["val_accuracy"], "the search's time budget")
    1
    >>> study.trials[0].state.name, study.user_attrs["ended_by"], study.metric_names
    ('PRUNED', {'0': "the search's time budget"}, ['val_accuracy'])
"""
from __future__ import annotations

import warnings

__all__ = ["close_study", "name_objectives"]


def close_study(study, metric_names: list[str], reason: str) -> int:
    """Give each RUNNING trial of ``study`` a final state and name the objectives; returns how
    many trials were closed."""
    import optuna

    TrialState = optuna.trial.TrialState
    ended_by = dict(study.user_attrs.get("ended_by", {}))
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in running:
        study.tell(trial.number, state=TrialState.PRUNED if trial.intermediate_values
                   else TrialState.FAIL)
        ended_by[str(trial.number)] = reason
    if running:
        study.set_user_attr("ended_by", ended_by)
    name_objectives(study, metric_names)
    return len(running)


def name_objectives(study, metric_names: list[str]) -> None:
    """Name the study's objectives (optuna-dashboard shows "Objective 0" otherwise): when the
    search starts, so that a study watched mid-search is named too, and again when it ends."""
    import optuna

    if study.metric_names != list(metric_names):
        with warnings.catch_warnings():  # "experimental": a note for Optuna's users, not ours
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(metric_names))
