"""Warm start: a new search that begins with what finished searches already paid for.

``python -m search.run SPACE.yaml --warm-start results/<a> [results/<b> ...]``: each earlier
trial whose configuration this space could have proposed enters the new Optuna study with its
result (``Study.add_trial``, with this space's distributions): a completed trial as COMPLETE with
its best PublicTest value, an ASHA-stopped one as PRUNED with its per-epoch values, a failed one
as FAIL. The sampler starts informed; the earlier winner runs first (then this space's default),
and trials.csv lists the inherited trials after the new ones (``inherited_from``: the folder).
A trial that does not fit is skipped, and each reason is said once with its count.

Only JSON, YAML and CSV are read from an earlier folder (never a pickle), and nothing in it is
written: warm start is a new search in a new folder; ``--resume`` continues an interrupted one.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .experiment_folder import (COMPLETED, FAILED, INHERITED_COLUMN, STOPPED_EARLY,
                                ExperimentFolder, config_of)
from fer_models.config import TrainConfig
from fer_models.textfiles import InputFileError, load_json_object

from .space import SearchSpace, SpaceError, load_space

__all__ = ["WarmStartError", "Inherited", "frozen_trial", "inherited_rows", "load_warm_start",
           "seed_study"]


class WarmStartError(ValueError):
    """An earlier folder that cannot seed this search: the message names it and why."""


@dataclass
class Inherited:
    """What one earlier folder gives the new search."""
    folder: Path
    trials: list = field(default_factory=list)     # optuna FrozenTrials to add
    rows: list = field(default_factory=list)       # their trials.csv rows (dicts)
    skipped: Counter = field(default_factory=Counter)  # reason -> trials
    winner: dict | None = None                     # the earlier winner's searched values, if it fits

    def describe(self) -> str:
        text = f"warm start from {self.folder}: {len(self.trials)} trial(s) inherited"
        if self.skipped:
            text += "; skipped: " + "; ".join(f"{n} ({why})" for why, n in self.skipped.items())
        return text


def _fail(folder: Path, why: str) -> WarmStartError:
    return WarmStartError(f"--warm-start {folder}: {why}")


def _same_data(recorded: str, data_path: Path) -> bool:
    old, new = Path(recorded), Path(data_path).resolve()
    if old == new:
        return True
    if old.is_file() and new.is_file():
        return old.name == new.name and old.stat().st_size == new.stat().st_size
    return old.name == new.name


def check_folder(folder: Path, space: SearchSpace, data_path: Path) -> tuple[dict, SearchSpace]:
    """The earlier run's summary and space, or :class:`WarmStartError` (missing, unfinished,
    another metric or data file, corrupt)."""
    if space.multi_objective or space.constraints:
        # Inherited trials would need every objective's value and each constraint's measure
        # (a trial without constraints counts as feasible to Optuna's samplers).
        raise _fail(folder, f"{space.path} has several objectives or constraints: warm start "
                            "takes one objective and no constraints")
    ef = ExperimentFolder(folder)
    if not folder.is_dir():
        raise _fail(folder, "no such folder")
    if not ef.summary_json.is_file():
        raise _fail(folder, f"unfinished (no {ef.SUMMARY}); finish it with --resume first")
    missing = ef.missing(ef.TRIALS, ef.RUN, ef.SPACE)
    if missing:
        raise _fail(folder, f"corrupt: {', '.join(missing)} missing")
    try:
        summary = ef.read_summary()
        run = load_json_object(ef.run_json)
        earlier = load_space(ef.space_yaml, upgrade_earlier=True)
    except (InputFileError, SpaceError) as e:
        raise _fail(folder, f"corrupt: {str(e)[:200]}") from None
    if not isinstance(summary, dict) or not isinstance(run, dict) \
            or not isinstance(run.get("data"), str):
        raise _fail(folder, f"corrupt: {ef.SUMMARY} or {ef.RUN} is not what this tool writes")
    if summary.get("metric") != space.metric:
        raise _fail(folder, f"searched {summary.get('metric')!r}, this space {space.metric!r}")
    if not _same_data(run["data"], data_path):
        raise _fail(folder, f"searched {run['data']}, this search uses {Path(data_path).resolve()}")
    return summary, earlier


def _number(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _as_space_value(p, value):
    """A value read back from trials.csv in the type the space proposes (pandas reads an int
    column with a gap as floats: 40.0 is the choice 40)."""
    return p.from_table(value)


def _misfit(config: dict, space: SearchSpace, earlier: SearchSpace) -> str | None:
    """Why this space could not have proposed ``config`` (None: it could)."""
    for name, value in space.fixed().items():
        if name in config and config[name] != value:
            return f"{name} differs from this space's fixed {value!r}"
    for name, p in space.params.items():
        if p.searched and not p.contains(config.get(name)):
            return f"{name} outside this space's {p.kind}"
    for name, p in earlier.params.items():
        if p.searched and name not in space.params:
            return f"{name} was searched there and is not in this space"
    return None


def _progress(ef: ExperimentFolder, trial_id: str, metric: str) -> dict[int, float]:
    dirs = ef.trial_dirs([trial_id])
    if trial_id not in dirs:
        return {}
    try:
        df = pd.read_csv(dirs[trial_id] / ef.PROGRESS)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return {}
    if metric not in df or "training_iteration" not in df:
        return {}
    return {int(s): float(v) for s, v in zip(df["training_iteration"], df[metric])
            if _number(v) is not None}


def frozen_trial(space: SearchSpace, config: dict, status: str, value: float | None,
            steps: dict[int, float]):
    """The FrozenTrial the new study gets: this space's distributions for the values."""
    import optuna

    scratch = optuna.create_study(direction="maximize" if space.mode == "max" else "minimize")
    searched = {k: config[k] for k, p in space.params.items() if p.searched}
    scratch.enqueue_trial(searched)
    trial = scratch.ask()
    space.suggest(trial)
    states = {COMPLETED: optuna.trial.TrialState.COMPLETE,
              STOPPED_EARLY: optuna.trial.TrialState.PRUNED, FAILED: optuna.trial.TrialState.FAIL}
    state = states[status]
    return optuna.trial.create_trial(
        params=dict(trial.params), distributions=dict(trial.distributions), state=state,
        value=value if state == optuna.trial.TrialState.COMPLETE else None,
        intermediate_values=steps if state != optuna.trial.TrialState.FAIL else None)


def load_warm_start(folders, space: SearchSpace, data_path: Path) -> list[Inherited]:
    """Check every folder (raising :class:`WarmStartError` for the first bad one) and collect
    the trials that fit ``space``. Reads only; writes nothing anywhere."""
    import warnings

    out = []
    defaults = TrainConfig()
    value_key = "last_val_accuracy" if space.mode == "max" else "best_val_loss"
    for text in folders:
        folder = Path(text).resolve()
        summary, earlier = check_folder(folder, space, data_path)
        ef = ExperimentFolder(folder)
        try:
            table = ef.read_trials()  # its own trials: what it inherited is its source's to give
        except (OSError, ValueError, KeyError) as e:
            raise _fail(folder, f"corrupt {ef.TRIALS}: {str(e)[:200]}") from None
        got = Inherited(folder)
        for row in table.to_dict("records"):
            # What the earlier trial trained with: its config, its space's fixed values, and
            # TrainConfig's defaults for anything neither names.
            config = {**{k: getattr(defaults, k) for k in space.params if hasattr(defaults, k)},
                      **earlier.fixed(), **config_of(pd.Series(row))}
            config = {k: _as_space_value(space.params[k], v) if k in space.params else v
                      for k, v in config.items()}
            why = _misfit(config, space, earlier)
            status = row.get("status")
            if why is None and status not in (COMPLETED, STOPPED_EARLY, FAILED):
                why = f"status {status!r}"
            steps = _progress(ef, str(row["trial_id"]), space.metric) if why is None else {}
            # What Ray's OptunaSearch tells the study of a finished trial: its last epoch's value.
            value = steps[max(steps)] if steps else _number(row.get(value_key))
            if why is None and status == COMPLETED and value is None:
                why = f"no {space.metric}"
            if why is None:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # Optuna's notes on enqueued trials
                        trial = frozen_trial(space, config, status, value, steps)
                except ValueError:  # e.g. an input_size under its backbone's minimum here
                    why = "a value outside this space's distributions"
            if why:
                got.skipped[why] += 1
                continue
            got.trials.append(trial)
            got.rows.append({**row, INHERITED_COLUMN: str(folder)})
            if str(row["trial_id"]) == str(summary.get("best_trial")):
                got.winner = {k: config[k] for k, p in space.params.items() if p.searched}
        out.append(got)
    return out


def seed_study(storage, study_name: str, space: SearchSpace, inherited: list[Inherited]) -> int:
    """Add the inherited trials to the new search's study (created here); returns how many."""
    import optuna

    study = optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True,
                                direction="maximize" if space.mode == "max" else "minimize")
    trials = [t for got in inherited for t in got.trials]
    if trials:
        study.add_trials(trials)
    study.set_user_attr("warm_start", [str(got.folder) for got in inherited])
    return len(trials)


def inherited_rows(inherited: list[Inherited]) -> pd.DataFrame:
    """The inherited trials as trials.csv rows, ``inherited_from`` naming their folder."""
    return pd.DataFrame([r for got in inherited for r in got.rows])
