"""TensorBoard event files the search writes beside Ray's: the retrain run, and what the HParams
dashboard needs to list and filter every trial.

What Ray 2.60 writes itself (``TBXLoggerCallback``, one events file per trial folder):
every numeric result key as a scalar ``ray/tune/<key>`` at step ``training_iteration``, and, only
when a trial ends *with at least one result*, an hparams session (``_hparams_/session_start_info``
+ ``session_end_info``, always ``STATUS_SUCCESS``) plus an ``_hparams_/experiment`` tag describing
that one trial (no domains; list values dropped). TensorBoard uses the first ``experiment`` tag it
finds, so the dashboard's columns come from one trial; with the fast (Rust) loader, the default,
which one is random, whatever else is in the logdir. A trial that failed before its first epoch is
not listed at all. ``search/tbx_callback.py`` replaces it: no such problems, and the scalars
under this project's tags (:data:`EPOCH_TAGS`), not one ``ray/tune/`` curve per result key.

Added here (every file ends in :data:`SUFFIX`, so rewriting replaces only our own files):

* ``<experiment>/`` (run ``.``): one ``_hparams_/experiment`` for the whole search: every config key
  with its domain (choices, or the range seen), and the metrics below with readable names (the
  one TensorBoard shows when Ray's per-trial ones are absent, or with ``--load_fast=false``);
* each trial folder: ``PublicTest/best_accuracy`` (the selection metric, at the best epoch) and
  ``search/status`` (0 completed, 1 stopped early by ASHA, 2 failed), again after the trial's
  own live ones (search/tbx_callback.py), so a resumed or lost trial has them too; an hparams session
  (``STATUS_FAILURE`` when it failed) for a trial Ray wrote none for;
* ``retrain/``: the winner's retrain under the trials' tags (:data:`EPOCH_TAGS`, so it overlays
  them), its PrivateTest figures (``private_test/*``), the confusion matrix as an image, and an
  hparams session with its config.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from .experiment_folder import (COMPLETED, CONFIG_PREFIX, FAILED, STATUSES, ExperimentFolder,
                                config_columns, config_of, is_missing, plain)
from .trial_names import session_group

SUFFIX = ".fer-report"            # our events files: events.out.tfevents.*.fer-report
# The tag of each per-epoch result key, trials and retrain alike (so their curves overlay),
# grouped for a person: PublicTest first. Result keys not named here (Ray's counters and done
# flags, row counts, EMA bookkeeping) are not written as curves.
EPOCH_TAGS = {
    "val_accuracy": "PublicTest/accuracy",
    "val_loss": "PublicTest/loss",
    "val_macro_f1": "PublicTest/macro_f1",
    "train_loss": "train/loss",
    "lr": "train/lr",
    "images_per_s": "speed/images_per_s",
    "seconds": "speed/epoch_seconds",
    "params_m": "model/params_m",
    "macs_m": "model/macs_m",
    "latency_ms": "model/latency_ms",
}
BEST_TAG = "PublicTest/best_accuracy"   # the best epoch so far: the selection metric
STATUS_TAG = "search/status"
RUNNING = "running"                     # a trial's status until it ends
STATUS_CODES = {status: code for code, status in enumerate((*STATUSES, RUNNING))}

# (tag, display name, description, dataset) of the HParams dashboard's metric columns, in the
# order shown: only what a person compares trials by. Each is written while the trial runs, so
# every row is filled at any moment (search/tbx_callback.py).
METRICS = (
    (BEST_TAG, "PublicTest acc. (best epoch)",
     "The selection metric: the trial's best PublicTest accuracy over its epochs so far.",
     "validation"),
    (EPOCH_TAGS["val_accuracy"], "PublicTest acc. (last epoch)", "", "validation"),
    (EPOCH_TAGS["val_loss"], "PublicTest loss (last epoch)", "", "validation"),
    (EPOCH_TAGS["train_loss"], "train loss (last epoch)", "", "training"),
    (STATUS_TAG, "status",
     ", ".join(f"{code} {status}" for status, code in STATUS_CODES.items()) + ".", ""),
)
# With objectives or constraints on what a model costs (search.objectives), also these.
MEASURE_METRICS = (
    (EPOCH_TAGS["params_m"], "params (M)", "", ""),
    (EPOCH_TAGS["macs_m"], "MACs (M) per face", "", ""),
    (EPOCH_TAGS["latency_ms"], "latency (ms, batch 1, ONNX Runtime)",
     "Median of 50 batch-1 runs on the CPU of the node that ran the trial.", ""),
    ("search/feasible", "feasible", "1: meets every constraint of the space (0: never the winner).",
     ""),
)


def running_best(best: float | None, result: dict) -> float | None:
    """``best`` (the best PublicTest accuracy so far, None before any) with ``result``'s.

    >>> running_best(running_best(None, {"val_accuracy": 0.5}), {"val_accuracy": float("nan")})
    0.5
    """
    value = result.get("val_accuracy")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value) if best is None else max(best, float(value))
    return best


def epoch_scalars(result: dict, best: float | None = None) -> dict[str, float]:
    """The scalars of one epoch's result under :data:`EPOCH_TAGS` (finite numbers only), and
    :data:`BEST_TAG` when ``best`` (the best PublicTest accuracy so far) is given.

    >>> epoch_scalars({"val_accuracy": 0.5, "done": False, "train_loss": float("nan"),
    ...                "training_iteration": 3}, best=0.55)
    {'PublicTest/accuracy': 0.5, 'PublicTest/best_accuracy': 0.55}
    """
    out = {}
    for key, tag in EPOCH_TAGS.items():
        value = result.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[tag] = float(value)
    if best is not None and math.isfinite(best):
        out[BEST_TAG] = float(best)
    return out


def metrics_for(measures: bool) -> tuple:
    return METRICS + MEASURE_METRICS if measures else METRICS


# --- values -----------------------------------------------------------------------------------

def hparam_value(v):
    """A value the HParams plugin can hold: bool, number or string (others as JSON); None: skip."""
    v = plain(v)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return float(v)
    if isinstance(v, float):
        return v
    if isinstance(v, str):
        return v
    return json.dumps(v, sort_keys=True, default=str)


def has_hparams_session(run_dir: Path) -> bool:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    if not run_dir.is_dir():
        return False
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 1, "tensors": 1})
    acc.Reload()
    try:
        return metadata.SESSION_START_INFO_TAG in acc.PluginTagToContent(metadata.PLUGIN_NAME)
    except KeyError:
        return False


# --- writing ----------------------------------------------------------------------------------

def run_writer(run_dir: Path):
    """A SummaryWriter of ``run_dir`` whose file replaces this project's earlier ones there."""
    from torch.utils.tensorboard import SummaryWriter

    run_dir.mkdir(parents=True, exist_ok=True)
    for old in run_dir.glob(f"events.out.tfevents.*{SUFFIX}"):  # rewriting replaces, never doubles
        old.unlink()
    return SummaryWriter(str(run_dir), filename_suffix=SUFFIX, flush_secs=5)


def write_events_file(run_dir: Path, summaries, *, stamp: int | None = None,
                      suffix: str = SUFFIX) -> Path:
    """One complete events file (written synchronously and closed) holding ``summaries``;
    ``stamp`` is the time in its name, which orders a run's files for TensorBoard's loader."""
    import socket

    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    now = time.time()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / (f"events.out.tfevents.{int(now) if stamp is None else stamp:010d}."
                      f"{socket.gethostname()}{suffix}")
    with open(path, "wb") as f:
        w = RecordWriter(f)
        w.write(event_pb2.Event(wall_time=now, file_version="brain.Event:2").SerializeToString())
        for s in summaries:
            w.write(event_pb2.Event(wall_time=now, summary=s).SerializeToString())
        w.flush()
    return path


def scalar_summary(values: dict[str, float]):
    """One Summary of scalars (``{tag: value}``) for :func:`write_events_file`."""
    from tensorboard.compat.proto import summary_pb2

    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(v))
                                      for tag, v in values.items()])


def _hparams_summary(tag: str, data):
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import metadata

    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(
        tag=tag, metadata=metadata.create_summary_metadata(data))])


def session_summaries(hparams: dict, group: str, status: str, start: float, end: float):
    """A session's start (TensorBoard's ``summary_v2.hparams_pb``) and end summaries. The end is
    built here: summary_v2 has no session end (so no failed status), and the v1 helpers that
    do import TensorFlow."""
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2, summary_v2

    values = {name: v for name, value in sorted(hparams.items())
              if (v := hparam_value(value)) is not None}
    start_summary = summary_v2.hparams_pb(values, trial_id=group, start_time_secs=start)
    end_info = plugin_data_pb2.SessionEndInfo(
        status=api_pb2.STATUS_FAILURE if status == FAILED else api_pb2.STATUS_SUCCESS,
        end_time_secs=end)
    return (start_summary,
            _hparams_summary(metadata.SESSION_END_INFO_TAG,
                             plugin_data_pb2.HParamsPluginData(session_end_info=end_info)))


def _experiment_summary(values: dict[str, list], space_params: dict, measures: bool = False):
    """The search-wide ``_hparams_/experiment``: every hparam with a domain, every metric."""
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    infos = []
    for name in sorted(values):
        seen = [v for v in (hparam_value(x) for x in values[name]) if v is not None]
        param = space_params.get(name)
        info = api_pb2.HParamInfo(name=name)
        if param is not None:  # the space's values or range ends, known before any trial ran
            seen += [v for v in (hparam_value(x) for x in param.known_points()) if v is not None]
        kinds = {type(v) for v in seen}
        if not seen:
            continue
        ranged = param.is_range if param is not None else kinds == {float}
        if ranged and kinds <= {int, float}:
            info.type = api_pb2.DATA_TYPE_FLOAT64
            info.domain_interval.min_value = float(min(seen))
            info.domain_interval.max_value = float(max(seen))
        else:
            if kinds == {float}:
                info.type, distinct = api_pb2.DATA_TYPE_FLOAT64, sorted(set(seen))
            elif kinds == {bool}:
                info.type, distinct = api_pb2.DATA_TYPE_BOOL, sorted(set(seen))
            else:
                info.type, distinct = api_pb2.DATA_TYPE_STRING, sorted({str(v) for v in seen})
            info.domain_discrete.extend(distinct)
        info.differs = len({json.dumps(v) for v in seen}) > 1
        if param is not None:
            info.description = f"{param.kind} in the space file"
        infos.append(info)
    datasets = {"validation": api_pb2.DATASET_VALIDATION, "training": api_pb2.DATASET_TRAINING,
                "": api_pb2.DATASET_UNKNOWN}
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag), display_name=display,
                                  description=desc, dataset_type=datasets[ds])
               for tag, display, desc, ds in metrics_for(measures)]
    experiment = api_pb2.Experiment(
        name="FER2013 search", hparam_infos=infos, metric_infos=metrics,
        description="Every trial of the search (t<n>-<id>_...) and the winner's retrain (retrain).",
        time_created_secs=time.time())
    from tensorboard.plugins.hparams import metadata

    return _hparams_summary(metadata.EXPERIMENT_TAG,
                            plugin_data_pb2.HParamsPluginData(experiment=experiment))


def write_hparams_experiment(experiment: Path, space) -> Path:
    """The search-wide ``_hparams_/experiment`` from the space alone, written before the first
    trial, so the HParams tab shows :data:`METRICS` while the search runs (without it,
    TensorBoard makes a column of every scalar it finds). The report step rewrites it with the
    values seen."""
    searched = {name: [] for name, p in space.params.items() if p.searched}
    return write_events_file(Path(experiment),
                             [_experiment_summary(searched, space.params, space.measures)])


def _load_space_params(folder: ExperimentFolder) -> dict:
    try:
        from .space import load_space

        return load_space(folder.space_yaml, upgrade_earlier=True).params
    except Exception:  # an unreadable copy only costs the domains their space bounds
        return {}


def write_hparams_overview(experiment: Path) -> dict[str, str]:
    """The experiment-level HParams summary, per-trial extras, and the sessions Ray did not write.

    Returns {trial_id: what was added} (for logs and tests).
    """
    folder = ExperimentFolder(experiment)
    table = folder.read_trials()
    dirs = folder.trial_dirs(table["trial_id"])
    added: dict[str, str] = {}
    values: dict[str, list] = {}
    for _, row in table.iterrows():
        for k, v in config_of(row).items():
            values.setdefault(k, []).append(v)
    retrain_cfg = {k: v for k, v in folder.read_model_config().items() if k in values}
    for k, v in retrain_cfg.items():
        values.setdefault(k, []).append(v)

    for _, row in table.iterrows():
        tid = row["trial_id"]
        trial_dir = dirs.get(tid)
        if trial_dir is None:
            added[tid] = "no trial folder"
            continue
        writer = run_writer(trial_dir)
        notes = []
        try:
            epochs = int(row["epochs"]) if not is_missing(row["epochs"]) else 0
            if not is_missing(row.get("best_val_accuracy")):
                # At the last epoch, where the live series ends: an earlier step would read as a
                # restart to TensorBoard's loader, which then drops the points after it.
                writer.add_scalar(BEST_TAG, float(row["best_val_accuracy"]),
                                  global_step=max(epochs, 1))
                notes.append("best")
            writer.add_scalar(STATUS_TAG, STATUS_CODES.get(row["status"], STATUS_CODES[FAILED]),
                              global_step=max(epochs, 1))
            if "feasible" in row:
                writer.add_scalar("search/feasible", float(bool(row["feasible"])),
                                  global_step=max(epochs, 1))
            if not has_hparams_session(trial_dir):
                start = trial_dir.stat().st_mtime
                seconds = 0.0 if is_missing(row.get("seconds")) else float(row["seconds"])
                group = session_group(trial_dir.name, tid)
                for summary in session_summaries(config_of(row), group, row["status"], start,
                                                  start + seconds):
                    writer.file_writer.add_summary(summary)
                notes.append("session")
        finally:
            writer.close()
        added[tid] = "+".join(notes)

    writer = run_writer(folder.path)  # the root run "." : found first by TensorBoard
    try:
        writer.file_writer.add_summary(_experiment_summary(values, _load_space_params(folder),
                                                           "latency_ms" in table))
    finally:
        writer.close()
    return added


def write_retrain_run(experiment: Path, figures: dict | None = None) -> Path:
    """``retrain/``: per-epoch scalars from model/history.json under Ray's tags, PrivateTest
    scalars, ``figures`` ({tag: matplotlib Figure}) as images, and an hparams session."""
    folder = ExperimentFolder(experiment)
    run = folder.retrain_run
    history = folder.read_history()
    metrics = folder.read_metrics()
    writer = run_writer(run)
    try:
        last, best = 1, None
        for i, entry in enumerate(history, start=1):
            step = int(entry.get("epoch", i))
            last = step
            best = running_best(best, entry)
            for tag, value in epoch_scalars(entry, best).items():
                writer.add_scalar(tag, value, global_step=step)
        if metrics:
            writer.add_scalar("private_test/accuracy", metrics["accuracy"], global_step=last)
            writer.add_scalar("private_test/macro_f1", metrics["macro_f1"], global_step=last)
            writer.add_scalar("private_test/loss", metrics["loss"], global_step=last)
            for emotion, acc in metrics.get("per_class_accuracy", {}).items():
                writer.add_scalar(f"private_test/per_class_accuracy/{emotion}", acc, global_step=last)
            if "tta" in metrics:
                writer.add_scalar("private_test/accuracy_tta", metrics["tta"]["accuracy"],
                                  global_step=last)
            writer.add_text("private_test/summary", _metrics_markdown(metrics), global_step=last)
        for tag, fig in (figures or {}).items():
            writer.add_figure(tag, fig, global_step=last, close=False)
        config_path = folder.model_dir / "config.json"
        if config_path.is_file():
            keys = _trial_config_keys(folder)
            hp = {k: v for k, v in folder.read_model_config().items() if not keys or k in keys}
            start = config_path.stat().st_mtime - float(metrics.get("retrain_seconds", 0) or 0)
            for summary in session_summaries(hp, folder.RETRAIN_RUN, COMPLETED, start,
                                              config_path.stat().st_mtime):
                writer.file_writer.add_summary(summary)
    finally:
        writer.close()
    return run


def _trial_config_keys(folder: ExperimentFolder) -> set[str]:
    try:
        return {c[len(CONFIG_PREFIX):] for c in config_columns(folder.read_trials())}
    except (OSError, ValueError):
        return set()


def _metrics_markdown(m: dict) -> str:
    rows = [f"| accuracy | {m['accuracy']:.4f} |",
            f"| mean ± sd over seeds | {m.get('accuracy_mean', m['accuracy']):.4f} ± "
            f"{m.get('accuracy_sd', 0.0):.4f} |",
            f"| macro-F1 | {m['macro_f1']:.4f} |", f"| n | {m['n']} |"]
    if "tta" in m:
        rows.insert(1, f"| accuracy, ten-crop TTA | {m['tta']['accuracy']:.4f} |")
    return "| PrivateTest | |\n| --- | --- |\n" + "\n".join(rows)

