"""Every use of Ray Tune's, Optuna's and tensorboardX's private state, in one place.

Each adapter below exists because a public API lacks something the search needs (the defect is
named beside it). The rest of ``search/`` subclasses these adapters and calls their public
methods; nothing else reads another library's underscored attribute.

:func:`check` tests each assumption against the installed versions and names what moved; the
suite runs it (tests/test_private_api.py) and :mod:`search.run` runs it before Ray starts, so a
Ray or Optuna release that changed them stops a search with one line instead of searching
differently. ``TESTED`` is what it passes on; pyproject's ranges are the same.
"""
from __future__ import annotations

import threading

import optuna
from ray.tune.logger import TBXLoggerCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

__all__ = ["ASHAWithRungs", "OptunaSearchWithTrials", "PicklableNSGAIISampler",
           "TBXWithTrialWriters", "TESTED", "check",
           "wait_for_tune_background_copies"]

TESTED = {"ray": "2.60", "optuna": "5.1", "tensorboardX": "2.6"}

# Tune's background copies run in threads named after their function
# (ray.train._internal.syncer._BackgroundProcess: "Thread-N (entrypoint)"), the only such
# threads on the driver; nothing public says when a copy is in flight.
_COPY_THREAD_SUFFIX = "(entrypoint)"


class OptunaSearchWithTrials(OptunaSearch):
    """OptunaSearch with its per-trial Optuna state readable. Needed because Ray tells the study
    that a trial ASHA stopped is COMPLETE (search.searcher fixes that), and keeps the Optuna
    trial objects and the told set private (``_ot_trials``, ``_completed_trials``)."""

    def optuna_trial(self, trial_id: str) -> optuna.trial.Trial | None:
        return self._ot_trials.get(trial_id)

    def is_told(self, trial_id: str) -> bool:
        return trial_id in self._completed_trials

    def mark_told(self, trial_id: str) -> None:
        self._completed_trials.add(trial_id)

    @property
    def study(self) -> optuna.Study:
        return self._ot_study


class ASHAWithRungs(ASHAScheduler):
    """ASHA with its brackets' rungs readable and writable. Needed because Tune's restore does
    not bring a scheduler back (search.scheduler keeps the rungs in a file), and the rungs, the
    trial -> bracket map and the metric's sign live in private attributes."""

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def time_attr(self) -> str:
        return self._time_attr

    @property
    def metric_sign(self) -> float:
        """+1 when the metric is maximised, -1 when minimised: rungs hold ``sign * value``."""
        return self._metric_op

    def bracket_count(self) -> int:
        return len(self._brackets)

    def bracket_of(self, trial_id: str) -> int | None:
        bracket = self._trial_info.get(trial_id)
        return None if bracket is None else self._brackets.index(bracket)

    def bracket_rungs(self, index: int) -> list[tuple[int, dict]]:
        """``[(milestone, {trial_id: sign * value})]``, highest milestone first (the order ASHA
        walks them in); the dicts are ASHA's own."""
        return self._brackets[index]._rungs

    def set_bracket_rungs(self, index: int, rungs: list[tuple[int, dict]]) -> None:
        self._brackets[index]._rungs = rungs

    def rung_cutoff(self, index: int, recorded: dict) -> float | None:
        return self._brackets[index].cutoff(recorded)


class TBXWithTrialWriters(TBXLoggerCallback):
    """TBXLoggerCallback with each trial's writer and last scalars reachable (``_trial_writer``,
    ``_trial_result``), and without Ray's per-trial ``_hparams_/experiment`` (``_try_log_hparams``):
    TensorBoard shows the first experiment summary it meets, a random trial's, which hides the one
    the driver writes for the whole search."""

    def has_writer(self, trial) -> bool:
        return trial in self._trial_writer

    def trial_writer(self, trial):
        return self._trial_writer[trial]

    def set_trial_writer(self, trial, writer) -> None:
        self._trial_writer[trial] = writer

    def set_trial_scalars(self, trial, scalars: dict) -> None:
        """What Ray writes as the trial's hparams metrics when it ends."""
        self._trial_result[trial] = scalars

    def _try_log_hparams(self, trial, result):
        pass


class PicklableNSGAIISampler(optuna.samplers.NSGAIISampler):
    """NSGA-II that Ray Tune can save with its searcher (for --resume): Optuna's genetic samplers
    hold a thread lock (``_thread_lock``), which cannot be pickled. Dropped on saving, made anew
    on loading."""

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_thread_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()


def wait_for_tune_background_copies(timeout_s: float) -> None:
    """Wait for Tune's experiment-folder copies in flight on this driver to finish."""
    for thread in threading.enumerate():
        if thread.name.endswith(_COPY_THREAD_SUFFIX) and thread.is_alive():
            thread.join(timeout_s)


def check() -> list[str]:
    """What of the above no longer holds in the installed Ray / Optuna / tensorboardX: one line
    each; [] when all holds.

    >>> check()
    []
    """
    import inspect

    import ray
    import tensorboardX
    from ray.train._internal import syncer

    problems: list[str] = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    asha = ASHAScheduler(metric="m", mode="max", max_t=9, grace_period=1, reduction_factor=3)
    need(isinstance(getattr(asha, "_brackets", None), list) and asha._brackets,
         "ASHAScheduler._brackets (a list of brackets)")
    for attr in ("_trial_info", "_time_attr", "_metric_op", "_mode"):
        need(hasattr(asha, attr), f"ASHAScheduler.{attr}")
    need(getattr(asha, "_metric_op", None) == 1.0, "ASHAScheduler._metric_op (+1 for mode=max)")
    bracket = asha._brackets[0] if getattr(asha, "_brackets", None) else None
    rungs = getattr(bracket, "_rungs", None)
    need(isinstance(rungs, list) and all(isinstance(m, (int, float)) and isinstance(r, dict)
                                         for m, r in rungs)
         and [m for m, _ in rungs] == sorted((m for m, _ in rungs), reverse=True),
         "ASHA's _Bracket._rungs ([(milestone, {trial_id: value})], highest first)")
    need(callable(getattr(bracket, "cutoff", None)), "ASHA's _Bracket.cutoff(recorded)")

    source = inspect.getsource(OptunaSearch)
    for attr in ("_ot_trials", "_completed_trials", "_ot_study"):
        need(f"self.{attr}" in source, f"OptunaSearch.{attr}")

    tbx = TBXLoggerCallback()
    for attr in ("_trial_writer", "_trial_result"):
        need(isinstance(getattr(tbx, attr, None), dict), f"TBXLoggerCallback.{attr} (a dict)")
    need(callable(getattr(TBXLoggerCallback, "_try_log_hparams", None)),
         "TBXLoggerCallback._try_log_hparams (Ray's per-trial hparams writer)")

    need("_thread_lock" in vars(optuna.samplers.NSGAIISampler(seed=0)),
         "optuna.samplers.NSGAIISampler._thread_lock")
    need("def entrypoint" in inspect.getsource(syncer._BackgroundProcess),
         "ray.train._internal.syncer._BackgroundProcess runs its copy in entrypoint()")

    if problems:
        found = f"ray {ray.__version__}, optuna {optuna.__version__}, " \
                f"tensorboardX {tensorboardX.__version__}"
        tested = ", ".join(f"{k} {v}" for k, v in TESTED.items())
        problems = [f"{p} changed in {found} (tested: {tested})" for p in problems]
    return problems
