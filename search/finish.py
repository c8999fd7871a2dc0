"""The end of a run, after the search: trials.csv, the winner (and top-k or Pareto points) picked on
PublicTest, retrained and scored once on PrivateTest, then summary.json, metrics.json, best.yaml,
ONNX and report.md."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from .default_baseline import compare_with_default, describe_comparison
from .experiment_folder import (COMPLETED, CONFIG_PREFIX, FAILED, INHERITED_COLUMN, STOPPED_EARLY,
                                ExperimentFolder, config_columns, is_missing, write_json)
from .objectives import describe_constraints, feasible_mask, pareto_front
from .outputs import trials_table, write_best_yaml
from .report import log_retrain_tensorboard, write_report
from .retrain import planned_epochs, retrain_top

__all__ = ["AllTrialsFailed", "finish_experiment", "nothing_to_retrain"]


class AllTrialsFailed(RuntimeError):
    pass


def finish_experiment(space, data, experiment: Path, results, *, command: str, started: float,
                      resources: dict, ended_by: str = "",
                      copies: dict | None = None) -> dict:
    """After the search: trials.csv, the winner (and top-k / Pareto points) retrained and scored
    once on PrivateTest, summary.json, metrics.json, best.yaml, ONNX and report.md."""
    folder = ExperimentFolder(experiment)
    table = trials_table(results, space)
    _write_trials_csv(folder, table)
    top, front = _pick_retrained(space, table, folder, ended_by)
    pareto = bool(space.retrain.pareto) and front is not None and not front.empty
    winner, best_config = top[0]
    kept = folder.keep_earlier_retrain()
    if kept is not None:
        print(f"the earlier retrain is kept in {kept}; PrivateTest is scored again "
              f"(look {len(folder.earlier_retrains()) + 1} in this folder)", flush=True)
    epochs, plan = planned_epochs(space, float(winner["seconds"]), int(winner["epochs"]))
    write_best_yaml(folder.best_yaml, space, best_config, epochs)
    vs_default = compare_with_default(table, folder, str(winner["trial_id"]))
    print(f"best trial {winner['trial_id']}: PublicTest accuracy {winner['best_val_accuracy']:.4f}"
          f" after {int(winner['epochs'])} epochs; retraining ...", flush=True)
    print(describe_comparison(vs_default), flush=True)
    if space.retrain.top_k > 1:
        print(f"ensemble of the top {len(top)} distinct configs: "
              + ", ".join(f"{row['trial_id']} ({row['best_val_accuracy']:.4f})" for row, _ in top),
              flush=True)

    if plan:
        print(plan, flush=True)
    retrain = retrain_top(space, data, [cfg for _, cfg in top], experiment,
                          trial_ids=[str(row["trial_id"]) for row, _ in top], ensemble=not pareto,
                          epochs=epochs)
    retrain["plan"] = plan
    metrics = retrain["metrics"]
    write_json(folder.metrics_json, metrics)
    summary = _summary(space, experiment, table, winner, retrain, command=command,
                       ended_by=ended_by, vs_default=vs_default, copies=copies,
                       resources=resources,
                       looks=len(folder.earlier_retrains()) + 1)
    if space.measures:
        summary.update(objectives=space.objectives, constraints=space.constraints,
                       winner_rule=f"the best {space.metric} on PublicTest among trials meeting "
                                   f"the constraints ({describe_constraints(space.constraints)})",
                       pareto_front=[] if front is None else [str(t) for t in front["trial_id"]])
        try:
            summary.update(_retrained_measures(folder, resources, table, front, top, metrics,
                                               space.retrain.pareto))
        except Exception as e:  # a failed measurement must not cost the run its summary
            print(f"warning: could not measure the retrained model(s): {type(e).__name__}: {e}",
                  flush=True)
    summary["wall_seconds"] = round(time.time() - started, 1)
    write_json(folder.summary_json, summary)
    if space.retrain.onnx:
        export_onnx_safely(experiment)
    write_report_safely(experiment)
    return {"summary": summary, "metrics": metrics, "table": table}


def _write_trials_csv(folder: ExperimentFolder, table: pd.DataFrame) -> None:
    written = table
    if folder.inherited_csv.is_file() and folder.inherited_csv.stat().st_size > 1:
        # A warm start: its earlier trials listed after the new ones.
        written = pd.concat([table.assign(**{INHERITED_COLUMN: ""}),
                             pd.read_csv(folder.inherited_csv, dtype={"trial_id": str})],
                            ignore_index=True)
    written.to_csv(folder.trials_csv, index=False)


def nothing_to_retrain(table: pd.DataFrame, ended_by: str) -> str:
    """Why no trial can be retrained, in one line: each failure's reason, and for the trials that
    did not fail, that the search ended before they finished an epoch (with how to give them time,
    where a time budget ended it).

    Example:
        >>> import pandas as pd
        >>> cut = pd.DataFrame({"trial_id": ["a1", "b2"], "status": ["stopped_early"] * 2,
        ...                     "error": ["", ""]})
        >>> print(nothing_to_retrain(cut, "its 0.3-minute time budget"))  # doctest: +NORMALIZE_WHITESPACE
        no trial finished an epoch before the search ended (its 0.3-minute time budget): 2 trials
        started, nothing to retrain; give the search more time (search.time_budget_minutes)
    """
    when = f" before the search ended ({ended_by})" if ended_by else ""
    hint = ("; give the search more time (search.time_budget_minutes)"
            if "time budget" in ended_by else "")
    if table.empty:
        return f"no trial started{when}, nothing to retrain{hint}"
    failed = table["status"] == FAILED
    if not failed.any():
        started = f"{len(table)} trial{'s' if len(table) != 1 else ''} started"
        return f"no trial finished an epoch{when}: {started}, nothing to retrain{hint}"
    reasons = "; ".join(f"{r.trial_id}: {r.error or 'no reason recorded'}"
                        if r.status == FAILED else f"{r.trial_id}: no epoch{when}"
                        for r in table.itertuples())
    noun = "trial" if len(table) == 1 else "trials"
    if failed.all():
        return f"all {len(table)} {noun} failed, nothing to retrain ({reasons})"
    rest = len(table) - int(failed.sum())
    return (f"{int(failed.sum())} of {len(table)} {noun} failed and {rest} finished no epoch, "
            f"nothing to retrain ({reasons}){hint}")


def _pick_retrained(space, table: pd.DataFrame, folder: ExperimentFolder, ended_by: str = ""):
    """The configs to retrain, best first, as (row, config) pairs: the winner by the first
    objective on PublicTest (best epoch of each trial, among trials meeting the constraints),
    then the next distinct top-k configs or Pareto points; and the Pareto front (or None)."""
    ok = table[table["status"] != FAILED] if not table.empty else table
    if ok.empty or ok["best_val_accuracy"].isna().all():
        raise AllTrialsFailed(nothing_to_retrain(table, ended_by) + f"; see {folder.trials_csv}")
    if space.constraints:  # a trial that breaks a constraint is never the winner
        ok = ok[feasible_mask(ok)]
        if ok.empty:
            raise AllTrialsFailed(f"no trial meets the constraints ({describe_constraints(space.constraints)}); "
                                  f"see the measures in {folder.trials_csv}")
    key = "best_val_accuracy" if space.mode == "max" else "best_val_loss"
    ranked = ok.dropna(subset=[key]).sort_values(key, ascending=space.mode != "max", kind="stable")
    front = pareto_front(table, space.objectives) if space.multi_objective else None
    if space.retrain.pareto and front is not None and not front.empty:
        # The winner, then the points of the front (up to retrain.pareto in all), best first:
        # each retrained and scored once.
        rest = front[front["trial_id"] != ranked.iloc[0]["trial_id"]]
        return _distinct_top(pd.concat([ranked.head(1), rest]), config_columns(table),
                             space.retrain.pareto), front
    return _distinct_top(ranked, config_columns(table), space.retrain.top_k), front


def _summary(space, experiment: Path, table: pd.DataFrame, winner, retrain: dict, *,
             command: str, ended_by: str, vs_default, copies, resources: dict,
             looks: int) -> dict:
    """summary.json: the run in one record (its measures added by the caller)."""
    metrics = retrain["metrics"]
    return {
        "space": str(space.path), "experiment": str(experiment), "command": command,
        "sampler": space.search.sampler, "seed": space.search.seed,
        "scheduler": "asha" if space.search.asha else "none", "metric": space.metric,
        "trials_requested": space.search.num_samples, "trials_run": int(len(table)),
        "search_ended_by": ended_by,
        "trials_completed": int((table["status"] == COMPLETED).sum()),
        "trials_stopped_early": int((table["status"] == STOPPED_EARLY).sum()),
        "trials_failed": int((table["status"] == FAILED).sum()),
        "total_epochs": int(table["epochs"].sum()),
        "best_trial": str(winner["trial_id"]),
        "best_public_test_accuracy": float(winner["best_val_accuracy"]),
        "default_config": space.default_config(), "vs_default": vs_default,
        "private_test_copies": copies,
        # How many retrains have scored PrivateTest in this folder (1 = this is the first look);
        # the earlier ones are kept, with their figures, in earlier-retrains/.
        "private_test_looks": looks,
        "retrain_epochs": retrain["epochs"], "retrain_seeds": retrain["seeds"],
        "retrain_epochs_rule": retrain.get("plan") or "retrain.epochs",
        "private_test_accuracy": metrics["accuracy"],
        "private_test_accuracy_mean": metrics["accuracy_mean"],
        "private_test_accuracy_sd": metrics["accuracy_sd"],
        "private_test_n": metrics["n"],
        **_headline_scores(metrics),
        "resources_per_trial": resources,
    }


def _retrained_measures(folder: ExperimentFolder, resources: dict, table, front, top, metrics,
                        pareto: bool) -> dict:
    """The winner's measures again, on the retrained model, here (the driver's CPU, the trials'
    thread count); with ``retrain.pareto`` also the winner's and each retrained point of the
    front's (pareto.csv)."""
    from fer_models.checkpoint import load_model
    from fer_models.profile import profile_model

    threads = max(int(resources["cpu"]), 1)
    model, cfg = load_model(folder.model_dir)
    winner = profile_model(model, cfg, threads).to_dict()
    winner_id = str(top[0][0]["trial_id"])
    out = {"winner_measures_retrained": winner}
    members = []
    if pareto and front is not None and not front.empty:
        # Each retrained front point (pareto/), or the winner alone (model/).
        members = metrics.get("alternatives") or [
            {"member": None, "trial_id": winner_id, "accuracy": metrics["accuracy"]}]
    if members:
        rows = []
        for m in members:
            model, cfg = load_model(folder.pareto_dir / m["member"] if m["member"]
                                    else folder.model_dir)
            # The winner (member-0) is model/'s model: measured above, not again.
            measured = (winner if str(m["trial_id"]) == winner_id
                        else profile_model(model, cfg, threads).to_dict())
            search_row = table[table["trial_id"].astype(str) == str(m["trial_id"])].iloc[0]
            rows.append({"trial_id": m["trial_id"], "backbone": cfg.backbone,
                         "input_size": cfg.input_size,
                         "on_front": str(m["trial_id"]) in set(front["trial_id"].astype(str)),
                         "public_test_accuracy": float(search_row["best_val_accuracy"]),
                         "private_test_accuracy": m["accuracy"],
                         "latency_ms_search": float(search_row["latency_ms"]),
                         **{f"{k}_retrained" if k == "latency_ms" else k: v
                            for k, v in measured.items()}})
        pd.DataFrame(rows).to_csv(folder.pareto_csv, index=False)
        out["pareto_retrained"] = rows
    return out


def _distinct_top(ranked, columns: list[str], k: int) -> list[tuple]:
    """The first ``k`` rows of ``ranked`` whose configs differ, as (row, config dict) pairs."""
    top, seen = [], set()
    for _, row in ranked.iterrows():
        config = {c[len(CONFIG_PREFIX):]: row[c] for c in columns if not is_missing(row[c])}
        fingerprint = repr(sorted((k_, repr(v)) for k_, v in config.items()))
        if fingerprint not in seen:
            seen.add(fingerprint)
            top.append((row, config))
        if len(top) == k:
            break
    return top


def _headline_scores(metrics: dict) -> dict:
    """PrivateTest figures worth a column: TTA and the ensemble, when they were computed."""
    out = {}
    if "tta" in metrics:
        out["private_test_accuracy_tta"] = metrics["tta"]["accuracy"]
    if "ensemble" in metrics:
        ens = metrics["ensemble"]
        out["ensemble_k"] = ens["k"]
        out["ensemble_private_test_accuracy"] = ens["accuracy"]
        if "tta" in ens:
            out["ensemble_private_test_accuracy_tta"] = ens["tta"]["accuracy"]
    return out


def export_onnx_safely(experiment: Path) -> None:
    """model/model.onnx (and ensemble/ensemble.onnx); an export failure must not lose the run."""
    from fer_models.export import export_onnx

    folder = ExperimentFolder(experiment)
    for model_dir in (folder.model_dir, folder.ensemble_dir):
        if not model_dir.is_dir():
            continue
        try:
            print(f"ONNX: {export_onnx(model_dir)}", flush=True)
        except Exception as e:  # e.g. an operator the exporter does not know yet
            print(f"warning: could not export {model_dir} to ONNX: "
                  f"{type(e).__name__}: {e}", flush=True)


def write_report_safely(experiment: Path) -> None:
    """TensorBoard logs of the retrain and report.md; a plotting failure must not lose the run."""
    for step, what in ((log_retrain_tensorboard, "the retrain's TensorBoard logs"),
                       (write_report, ExperimentFolder.REPORT)):
        try:
            path = step(experiment)
            print(f"{what}: {path}", flush=True)
        except Exception as e:  # the results are already on disk; say what failed and go on
            print(f"warning: could not write {what}: {type(e).__name__}: {e}", flush=True)

