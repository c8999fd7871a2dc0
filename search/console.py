"""What a search prints by default: one line per trial event and a progress line.

Ray Tune's own console output (its trial table every 30 s, checkpoint and syncing warnings, and a
``tensorboard --logdir`` hint naming its staging folder instead of the experiment's) is switched
off below ``--verbose 2``; this callback prints instead::

    trial 1/8 00a1b2c3 started: lr=0.0031 dropout=0.2 crop=44
    trial 00a1b2c3 rung 1 (epoch 1): val_accuracy 0.4312 >= cutoff 0.4120, continues
    trial 00a1b2c3 completed: PublicTest 0.5731 (best, epoch 3 of 3), 2.1 min
    [4.2 min] 3 done (1 stopped early), 2 running, 0 failed, 3 to start; best 0.5731 (00a1b2c3); ~9 min left

Example (the line a finished trial gets):
    >>> from search.console import format_config
    >>> format_config({"lr": 0.0031234, "backbone": "resnet10t", "mixup_alpha": 0.0})
    'lr=0.003123 backbone=resnet10t mixup_alpha=0'
"""
from __future__ import annotations

import logging
import math
import os
import time

from ray.tune import Callback

from .experiment_folder import COMPLETED, FAILED, STOPPED_EARLY
from .space import holds_default
from .trainable import FINISHED_KEY
from .trial_names import trial_number

PROGRESS_EVERY_S = 30.0


def quiet_ray_console() -> None:
    """Ray Tune's console off (for ``--verbose`` 0 and 1): its classic reporter at verbosity 0
    prints nothing, where the newer one still prints a TensorBoard hint naming Ray's staging
    folder; its checkpoint/syncing warnings are not for a person following a search."""
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    logging.getLogger("ray.train").setLevel(logging.ERROR)


def print_line(text: str) -> None:
    """The console's output. A module function, looked up when called: Tune pickles its
    callbacks, and Ray may swap ``builtins.print`` in the driver (tqdm_ray) once worker logs
    arrive, after which a reference to the old ``print`` no longer pickles."""
    print(text, flush=True)


def format_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def format_config(config: dict) -> str:
    return " ".join(f"{k}={format_value(v)}" for k, v in config.items())


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


class ConsoleCallback(Callback):
    """Trial events and progress as plain lines. ``scheduler``: a ResumableASHA whose
    ``decisions`` are printed as rung lines; ``max_epochs``, ``num_samples`` and
    ``time_budget_s`` drive the estimate of what is left; ``searched`` names the keys a
    trial's line prints, ``default`` the space's default configuration, whose line says so."""

    def __init__(self, *, metric: str, mode: str, num_samples: int, max_epochs: int,
                 scheduler=None, time_budget_s: float | None = None, searched=None,
                 default: dict | None = None, print_fn=None,
                 progress_every_s: float = PROGRESS_EVERY_S):
        self.metric, self.mode = metric, mode
        self.num_samples, self.max_epochs = num_samples, max_epochs
        self.scheduler, self.time_budget_s = scheduler, time_budget_s
        self.searched = None if searched is None else list(searched)  # None: print every key
        self.default = default   # the space's default configuration: its trial says so
        self.print = print_fn or print_line
        self.every = progress_every_s
        self.start = time.time()
        self.last_progress = 0.0
        self.last_text = ""
        self.order: dict[str, int] = {}        # trial id -> its number (trial_names.trial_number)
        self.best: dict[str, float] = {}       # trial id -> best metric so far
        self.epochs: dict[str, int] = {}
        self.started_at: dict[str, float] = {}
        self.ended: dict[str, str] = {}        # trial id -> its status (experiment_folder)

    # --- events ---------------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        # The creation counter the trial's folder and TensorBoard run are named by (the space's
        # default is 1); with several trials starting at once, Ray may start them out of order.
        self.order.setdefault(trial.trial_id, trial_number(trial) or len(self.order) + 1)
        self.started_at.setdefault(trial.trial_id, time.time())
        config = dict(trial.evaluated_params or trial.config)
        if self.searched is not None:  # the fixed values are the same for every trial
            config = {k: v for k, v in config.items() if k in self.searched}
        is_default = holds_default(config, self.default or {})
        self.print(f"trial {self.order[trial.trial_id]}/{self.num_samples} {trial.trial_id} "
                   f"started: {format_config(config)}"
                   + (" (the space's default)" if is_default else ""))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        value = result.get(self.metric)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            old = self.best.get(trial.trial_id)
            better = old is None or (value > old if self.mode == "max" else value < old)
            if better:
                self.best[trial.trial_id] = float(value)
        self.epochs[trial.trial_id] = int(result.get("training_iteration", 0))
        self.print_decisions()
        self.maybe_progress(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.print_decisions()
        epochs = self.epochs.get(trial.trial_id, 0)
        stopped = not (trial.last_result or {}).get(FINISHED_KEY, False)  # as trials.csv decides
        self.ended[trial.trial_id] = STOPPED_EARLY if stopped else COMPLETED
        what = f"stopped early after {epochs} epoch(s)" if stopped else COMPLETED
        best = self.best.get(trial.trial_id)
        score = f": PublicTest {self.metric} {best:.4f} (best epoch)" if best is not None else ""
        self.print(f"trial {trial.trial_id} {what}{score}, {self.took(trial)}")
        self.maybe_progress(trials, force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.ended[trial.trial_id] = FAILED
        error = str(getattr(trial, "error_msg", "") or "").strip().splitlines()
        reason = error[-1] if error else "see its error.txt"
        self.print(f"trial {trial.trial_id} failed after {self.epochs.get(trial.trial_id, 0)} "
                   f"epoch(s): {reason[:200]}")
        self.maybe_progress(trials, force=True)

    def on_step_end(self, iteration, trials, **info):
        self.maybe_progress(trials)

    def on_experiment_end(self, trials, **info):
        self.maybe_progress(trials, force=True)
        line = self.budget_line(time.time() - self.start)
        if line:
            self.print(line)

    def budget_line(self, elapsed: float) -> str | None:
        """What the time budget cut, once it has run out: trials stopped while they ran and
        trials never started (the progress line's "to start" would read as still to come)."""
        if not self.time_budget_s or elapsed < self.time_budget_s:
            return None
        cut = sum(1 for t in self.order if t not in self.ended)
        never = max(self.num_samples - len(self.order), 0)
        return (f"search stopped by its {self.time_budget_s / 60:g}-minute time budget: {cut} "
                f"trial(s) cut while running, {never} never started")

    # --- helpers --------------------------------------------------------------------------
    def took(self, trial) -> str:
        return _minutes(time.time() - self.started_at.get(trial.trial_id, time.time()))

    def print_decisions(self) -> None:
        decisions = getattr(self.scheduler, "decisions", None)
        while decisions:
            d = decisions.pop(0)
            if d.cutoff is None:
                verdict = "first at this rung, continues"
            else:
                passes, fails = (">=", "<") if d.mode == "max" else ("<=", ">")
                sign = fails if d.stopped else passes
                verdict = f"{sign} cutoff {d.cutoff:.4f}, {'stopped' if d.stopped else 'continues'}"
            self.print(f"trial {d.trial_id} rung {d.milestone} (epoch {d.milestone}): "
                       f"{d.metric} {d.value:.4f} {verdict}")

    def progress_line(self, trials) -> str:
        elapsed = time.time() - self.start
        statuses = [t.status for t in trials]
        running = statuses.count("RUNNING")
        failed = sum(1 for v in self.ended.values() if v == FAILED)
        stopped = sum(1 for v in self.ended.values() if v == STOPPED_EARLY)
        done = sum(1 for v in self.ended.values() if v != FAILED)
        to_start = max(self.num_samples - len(self.order), 0)
        text = (f"[{_minutes(elapsed)}] {done} done ({stopped} stopped early), {running} "
                f"running, {failed} failed, {to_start} to start")
        if self.best:
            pick = max if self.mode == "max" else min
            tid = pick(self.best, key=self.best.get)
            text += f"; best {self.best[tid]:.4f} ({tid})"
        left = self.estimate_left(elapsed, to_start, running)
        if left is not None:
            text += f"; ~{_minutes(left)} left"
        return text

    def estimate_left(self, elapsed: float, to_start: int, running: int) -> float | None:
        """Epochs still to run (finished trials' mean length for those not started, the rest
        of max_epochs for the running ones) at the rate epochs have gone so far; capped by
        the time budget."""
        epochs_done = sum(self.epochs.values())
        if not epochs_done or elapsed <= 0:
            return None
        finished = [self.epochs[t] for t in self.ended if t in self.epochs]
        per_trial = sum(finished) / len(finished) if finished else self.max_epochs
        running_left = sum(max(self.max_epochs - e, 0) for t, e in self.epochs.items()
                           if t not in self.ended)
        left = (to_start * per_trial + running_left) * elapsed / epochs_done
        if self.time_budget_s:
            left = min(left, max(self.time_budget_s - elapsed, 0.0))
        return left

    def maybe_progress(self, trials, force: bool = False) -> None:
        now = time.time()
        if force or now - self.last_progress >= self.every:
            self.last_progress = now
            text = self.progress_line(trials)
            if text != self.last_text:  # the last trial's end and the search's end: one line
                self.last_text = text
                self.print(text)
