"""The experiment folder ``results/<name>/``: every file name in it, the trial statuses, and how
to read it back.

This is the one module that knows the layout. The driver writes through it (``write_json``, the
names below), and the report, the TensorBoard logs, ``--resume`` and the benches read through
:class:`ExperimentFolder`, so a file renamed here is renamed everywhere.

Example:
    >>> folder = ExperimentFolder("results/my-search")
    >>> folder.trials_csv.name, folder.model_dir.name
    ('trials.csv', 'model')
    >>> folder.is_finished()  # no summary.json there
    False
    >>> STATUSES
    ('completed', 'stopped_early', 'failed')
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from fer_models.textfiles import load_json, load_json_object

from .result_records import check_metrics, check_summary
from .trial_names import NAME_RE

__all__ = ["COMPLETED", "STOPPED_EARLY", "FAILED", "STATUSES", "STUDY_NAME", "ExperimentFolder",
           "INHERITED_COLUMN", "config_of", "is_missing", "plain", "write_json"]

# A trial's status in trials.csv (and everywhere it is counted or drawn).
COMPLETED = "completed"          # ran every epoch of its config (or the trainer's early stop)
STOPPED_EARLY = "stopped_early"  # ASHA stopped it at a rung
FAILED = "failed"                # raised (NaN loss, out of memory, a bug): the reason is kept
STATUSES = (COMPLETED, STOPPED_EARLY, FAILED)

STUDY_NAME = "fer-search"        # the Optuna study inside the journal file

CONFIG_PREFIX = "config/"        # trials.csv: one column per config key
INHERITED_COLUMN = "inherited_from"  # trials.csv: a warm start's earlier trial (its folder)


class ExperimentFolder:
    """The layout of one experiment folder and its readers (nothing here trains or writes)."""

    TRIALS = "trials.csv"            # one row per trial (see search.outputs.trials_table)
    SUMMARY = "summary.json"         # the run in one record: trials, best PublicTest, PrivateTest
    METRICS = "metrics.json"         # PrivateTest metrics of the retrain (and the ensemble)
    BEST = "best.yaml"               # the winner as a re-runnable space file
    SPACE = "space.yaml"             # the space file as used
    RUN = "run.json"                 # how the run was started: what --resume needs
    JOURNAL = "optuna-journal.log"   # the Optuna study
    ASHA_RUNGS = "asha-rungs.jsonl"  # ASHA's rung records, a line each (Ray's restore drops them)
    REPORT = "report.md"
    MODEL = "model"                  # the retrained winner
    ENSEMBLE = "ensemble"            # the top-k members, with retrain.top_k > 1
    PARETO_MODELS = "pareto"         # retrain.pareto: each retrained front point's model
    PARETO = "pareto.csv"            # retrain.pareto: each retrained front point, scored once
    RETRAIN_RUN = "retrain"          # TensorBoard run of the retrain
    INHERITED = "inherited.csv"      # a warm start's earlier trials (search/warm_start.py)
    PLATEAU = "plateau-stop.json"    # why the plateau rule stopped the search (search/plateau.py)
    HISTORY = "history.json"         # inside model/: the retrain's per-epoch metrics
    PROGRESS = "progress.csv"        # inside a trial folder: Ray's per-epoch results
    EARLIER = "earlier-retrains"     # each earlier retrain's outputs, numbered (--retrain-only)
    # Folders that are not Ray trial folders.
    NOT_TRIALS = (MODEL, ENSEMBLE, PARETO_MODELS, RETRAIN_RUN, EARLIER)
    # What one retrain writes (and report.md's figures, report_*.png).
    RETRAIN_OUTPUTS = (MODEL, ENSEMBLE, PARETO_MODELS, RETRAIN_RUN, METRICS, SUMMARY, BEST, REPORT,
                       PARETO)

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ExperimentFolder({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # --- paths -----------------------------------------------------------------------------
    trials_csv = property(lambda self: self.path / self.TRIALS)
    pareto_csv = property(lambda self: self.path / self.PARETO)
    summary_json = property(lambda self: self.path / self.SUMMARY)
    metrics_json = property(lambda self: self.path / self.METRICS)
    best_yaml = property(lambda self: self.path / self.BEST)
    space_yaml = property(lambda self: self.path / self.SPACE)
    run_json = property(lambda self: self.path / self.RUN)
    journal = property(lambda self: self.path / self.JOURNAL)
    inherited_csv = property(lambda self: self.path / self.INHERITED)
    plateau_json = property(lambda self: self.path / self.PLATEAU)
    asha_rungs = property(lambda self: self.path / self.ASHA_RUNGS)
    report_md = property(lambda self: self.path / self.REPORT)
    model_dir = property(lambda self: self.path / self.MODEL)
    ensemble_dir = property(lambda self: self.path / self.ENSEMBLE)
    pareto_dir = property(lambda self: self.path / self.PARETO_MODELS)
    retrain_run = property(lambda self: self.path / self.RETRAIN_RUN)
    history_json = property(lambda self: self.path / self.MODEL / self.HISTORY)

    def is_finished(self) -> bool:
        """A finished run has its summary (written after the retrain)."""
        return self.summary_json.is_file()

    def earlier_retrains(self) -> list[Path]:
        """The earlier retrains kept in this folder, oldest first."""
        kept = self.path / self.EARLIER
        numbered = [p for p in kept.iterdir() if p.name.isdigit()] if kept.is_dir() else []
        return sorted(numbered, key=lambda p: int(p.name))

    def keep_earlier_retrain(self) -> Path | None:
        """Move the last retrain's outputs to ``earlier-retrains/<n>/`` (n = 1, 2, ...), so a new
        retrain overwrites nothing; returns that folder, or None when nothing was retrained."""
        outputs = [self.path / name for name in self.RETRAIN_OUTPUTS if (self.path / name).exists()]
        outputs += sorted(self.path.glob("report_*.png"))
        if not outputs:
            return None
        earlier = self.earlier_retrains()
        target = self.path / self.EARLIER / str(int(earlier[-1].name) + 1 if earlier else 1)
        target.mkdir(parents=True)
        for path in outputs:
            path.rename(target / path.name)
        return target

    def missing(self, *names: str) -> list[str]:
        """Which of the files ``names`` are not there."""
        return [n for n in names if not (self.path / n).is_file()]

    # --- reading ---------------------------------------------------------------------------
    def read_trials(self, inherited: bool = False) -> pd.DataFrame:
        """trials.csv with trial ids kept as text (an id like ``31832772`` or ``12e4`` is no
        number): this search's own trials, and with ``inherited`` also the rows a warm start
        listed from earlier searches (``inherited_from`` names their folder)."""
        table = pd.read_csv(self.trials_csv, dtype={"trial_id": str, "error": str,
                                                    INHERITED_COLUMN: str},
                            keep_default_na=True)
        table["error"] = table["error"].fillna("")
        if INHERITED_COLUMN in table:
            table[INHERITED_COLUMN] = table[INHERITED_COLUMN].fillna("")
            if not inherited:
                table = table[table[INHERITED_COLUMN] == ""].reset_index(drop=True)
        return table

    def read_summary(self) -> dict:
        """summary.json ({} when absent); InputFileError when it is not what this tool writes."""
        summary = _read_json(self.summary_json)
        check_summary(summary, self.summary_json)
        return summary

    def read_metrics(self) -> dict:
        """metrics.json ({} when absent); InputFileError when it is not what this tool writes."""
        metrics = _read_json(self.metrics_json)
        check_metrics(metrics, self.metrics_json)
        return metrics

    def read_run(self) -> dict:
        return _read_json(self.run_json)

    def read_history(self) -> list[dict]:
        """The retrain's per-epoch metrics (model/history.json), or [] when there is none."""
        return load_json(self.history_json) if self.history_json.is_file() else []

    def read_model_config(self) -> dict:
        return _read_json(self.model_dir / "config.json")

    def trial_dirs(self, trial_ids: Iterable[str]) -> dict[str, Path]:
        """The folder of each trial: ``t<counter>-<trial_id>_<values>`` (search/trial_names.py),
        or Ray's own ``<trainable>_<trial_id>_<counter>_<params>_<date>`` in older folders."""
        folders = [p for p in sorted(self.path.iterdir())
                   if p.is_dir() and p.name not in self.NOT_TRIALS]
        found = {}
        for tid in trial_ids:
            for p in folders:
                if re.search(rf"[_-]{re.escape(tid)}(?:_|$)", p.name):
                    found[tid] = p
                    break
        return found

    @staticmethod
    def trial_counter(folder: Path, trial_id: str | None = None) -> int | None:
        """The creation counter in a trial folder's name (1, 2, ...); ``trial_id``, when given,
        must be the id the name holds (a trial that failed before its first result has no id in
        its results)."""
        name = Path(folder).name
        ours = NAME_RE.match(name)
        if ours:
            return int(ours["number"]) if trial_id in (None, ours["trial_id"]) else None
        m = (re.search(rf"_{re.escape(trial_id)}_(\d+)(?:_|$)", name) if trial_id
             else re.match(r"[A-Za-z_]+?_[0-9a-f]{5,}_(\d+)", name))
        return int(m.group(1)) if m else None

    def progress(self, trial_ids: Iterable[str]) -> dict[str, pd.DataFrame]:
        """Each trial's per-epoch results (its progress.csv, every column), by trial id; trials
        without a folder or with an empty progress.csv are left out."""
        out = {}
        for tid, folder in self.trial_dirs(trial_ids).items():
            try:
                df = pd.read_csv(folder / self.PROGRESS, dtype={"trial_id": str})
            except (OSError, pd.errors.EmptyDataError):
                continue
            if "training_iteration" in df:
                out[tid] = df
        return out

    def study_storage(self):
        """Optuna's journal storage in this folder: the study survives the driver."""
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(str(self.journal)))

    def load_study(self):
        """The search's Optuna study, read from its journal."""
        import optuna

        return optuna.load_study(study_name=STUDY_NAME, storage=self.study_storage())


# --- values in trials.csv ------------------------------------------------------------------

def config_of(row: pd.Series) -> dict[str, Any]:
    """A trials.csv row's config (the ``config/*`` columns), missing values left out."""
    return {k[len(CONFIG_PREFIX):]: plain(v) for k, v in row.items()
            if k.startswith(CONFIG_PREFIX) and not is_missing(v)}


def config_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c.startswith(CONFIG_PREFIX)]


def plain(v):
    """numpy scalars as Python values (lists/dicts come back from trials.csv as their text)."""
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        return v.item()
    return v


def is_missing(v) -> bool:
    if v is None:
        return True
    if isinstance(v, (list, dict, str)):
        return False
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


# --- writing -------------------------------------------------------------------------------

def write_json(path: Path, obj) -> None:
    """``obj`` as indented JSON, atomically: a reader never sees a half-written file."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=plain))
    tmp.replace(path)


def _read_json(path: Path) -> dict:
    return load_json_object(path) if path.is_file() else {}  # InputFileError names a bad file
