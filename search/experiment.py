"""The search itself: start or join Ray, run the Tuner, then retrain the winner and write outputs."""
from __future__ import annotations

import time
from pathlib import Path

import ray
from ray import tune
from ray.tune.schedulers import FIFOScheduler

from fer_models.data import FER2013

from .outputs import trials_table, write_best_yaml, write_json
from .retrain import retrain_top
from .scheduler import ResumableASHA
from .tbx_callback import SearchTBXLoggerCallback
from .searcher import PrunedAwareOptunaSearch, make_sampler
from .space import RUNG_METRICS, SearchSpace
from .trainable import train_trial

STUDY_NAME = "fer-search"
JOURNAL_FILE = "optuna-journal.log"
ASHA_STATE_FILE = "asha-rungs.json"
RUN_FILE = "run.json"   # how the run was started: what --resume needs to continue it


class AllTrialsFailed(RuntimeError):
    pass


def start_ray(address: str | None, num_cpus: int | None) -> None:
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        # Embedded local Ray; no dashboard (nothing to expose, and it saves seconds of start-up).
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)


def trial_resources(space: SearchSpace) -> dict:
    """CPUs/GPUs per trial: from the space, or fractional GPUs when the cluster has them."""
    total = ray.cluster_resources()
    cpus_total, gpus_total = int(total.get("CPU", 1)), total.get("GPU", 0)
    res = space.resources
    gpu = res.gpus_per_trial
    if gpu == "auto":
        gpu = round(1.0 / res.trials_per_gpu, 4) if gpus_total > 0 else 0
    cpu = res.cpus_per_trial
    if cpu == "auto":
        if gpu:  # feeding a GPU from on-device batches needs little CPU
            cpu = max(1, min(4, cpus_total // max(int(gpus_total * res.trials_per_gpu), 1)))
        else:   # share the CPUs among the concurrent trials, whole CPUs each
            cpu = max(1, cpus_total // space.search.max_concurrent)
    return {"cpu": cpu, "gpu": gpu}


def open_study_storage(experiment: Path):
    """Optuna's journal file in the experiment folder: the study survives the driver."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(experiment / JOURNAL_FILE)))


def build_trainable(space: SearchSpace, data: FER2013, resources: dict, trial_fn=train_trial):
    trainable = tune.with_parameters(
        trial_fn, data=data.without_private_test(),  # trials never receive PrivateTest
        threads=max(int(resources["cpu"]), 1), checkpoint=space.search.checkpoint)
    return tune.with_resources(trainable, resources)


def build_tuner(space: SearchSpace, data: FER2013, experiment: Path, resources: dict,
                verbose: int = 1, trial_fn=train_trial, reuse_actors: bool = True) -> tune.Tuner:
    """The Tuner of a search. ``reuse_actors``: a finished trial's process runs the next trial,
    which saves the next one's 4-5 s of importing torch and timm (bench/bench_scheduling.py)."""
    searcher = PrunedAwareOptunaSearch(
        space=space.suggest, metric=space.metric, mode=space.mode,
        sampler=make_sampler(space.search.sampler, space.search.seed),
        study_name=STUDY_NAME, storage=open_study_storage(experiment))
    # Ray lets a scheduler have its own metric only when the TuneConfig names none: so the
    # search metric goes to the TuneConfig unless ASHA's rungs compare another one.
    own_metric = False
    if space.search.scheduler == "asha":
        rung_metric = space.search.rung_metric or space.metric
        own_metric = rung_metric != space.metric
        scheduler = ResumableASHA(experiment / ASHA_STATE_FILE,
                                  time_attr="training_iteration", max_t=space.max_epochs,
                                  grace_period=min(space.search.grace_period, space.max_epochs),
                                  reduction_factor=space.search.reduction_factor,
                                  **(dict(metric=rung_metric, mode=RUNG_METRICS[rung_metric])
                                     if own_metric else {}))
    else:
        scheduler = FIFOScheduler()
    return tune.Tuner(
        build_trainable(space, data, resources, trial_fn),
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, metric=None if own_metric else space.metric,
            mode=None if own_metric else space.mode,
            num_samples=space.search.num_samples,
            max_concurrent_trials=space.search.max_concurrent, reuse_actors=reuse_actors,
            time_budget_s=space.search.time_budget_minutes * 60 or None),
        run_config=tune.RunConfig(
            name=experiment.name, storage_path=str(experiment.parent),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # resume needs only the last
            failure_config=tune.FailureConfig(max_failures=space.search.max_failures),
            # Replaces Ray's TBX logger: HParams sessions from trial start, failures marked.
            callbacks=[SearchTBXLoggerCallback()],
            verbose=verbose))


def run_experiment(space: SearchSpace, data: FER2013, experiment: Path, *, address=None,
                   num_cpus=None, verbose: int = 1, command: str = "", started: float | None = None,
                   resume: bool = False, retrain_only: bool = False) -> dict:
    """Run (or, with ``resume``, continue) the search in ``experiment``, then retrain and report.

    ``retrain_only`` skips the search and retrains the best trial of a finished one.
    """
    started = started or time.time()
    experiment.mkdir(parents=True, exist_ok=True)
    start_ray(address, num_cpus)
    resources = trial_resources(space)
    print(f"experiment: {experiment}{' (resumed)' if resume else ''}\n"
          f"  {space.search.num_samples} trials, sampler {space.search.sampler} "
          f"(seed {space.search.seed}), scheduler {space.search.scheduler}"
          f"{f' (rungs on {space.search.rung_metric})' if space.search.rung_metric else ''}, "
          f"up to {space.max_epochs} epochs, {resources['cpu']} CPU / {resources['gpu']} GPU per trial\n"
          f"  watch it: tensorboard --logdir {experiment}", flush=True)
    if resume:
        tuner = tune.Tuner.restore(str(experiment), trainable=build_trainable(space, data, resources),
                                   resume_unfinished=True, resume_errored=False)
        results = tuner.get_results() if retrain_only else tuner.fit()
    else:
        tuner = build_tuner(space, data, experiment, resources, verbose)
        results = tuner.fit()
    return finish_experiment(space, data, experiment, results, command=command,
                             started=started, resources=resources)


def finish_experiment(space, data, experiment: Path, results, *, command: str, started: float,
                      resources: dict) -> dict:
    table = trials_table(results, space)
    table.to_csv(experiment / "trials.csv", index=False)
    ok = table[table["status"] != "failed"]
    if ok.empty or ok["best_val_accuracy"].isna().all():
        reasons = "; ".join(f"{r.trial_id}: {r.error}" for r in table.itertuples())
        noun = "trial" if len(table) == 1 else "trials"
        raise AllTrialsFailed(f"all {len(table)} {noun} failed, nothing to retrain ({reasons}); "
                              f"see {experiment / 'trials.csv'}")
    # The winner by the search metric on PublicTest (best epoch of each trial).
    key = "best_val_accuracy" if space.mode == "max" else "best_val_loss"
    ranked = ok.dropna(subset=[key]).sort_values(key, ascending=space.mode != "max", kind="stable")
    top = _distinct_top(ranked, [c for c in table.columns if c.startswith("config/")],
                        space.retrain.top_k)
    winner = top[0][0]
    best_config = top[0][1]
    write_best_yaml(experiment / "best.yaml", space, best_config)
    print(f"best trial {winner['trial_id']}: PublicTest accuracy {winner['best_val_accuracy']:.4f}"
          f" after {int(winner['epochs'])} epochs; retraining ...", flush=True)
    if space.retrain.top_k > 1:
        print(f"ensemble of the top {len(top)} distinct configs: "
              + ", ".join(f"{row['trial_id']} ({row['best_val_accuracy']:.4f})" for row, _ in top),
              flush=True)

    retrain = retrain_top(space, data, [cfg for _, cfg in top], experiment,
                          trial_ids=[str(row["trial_id"]) for row, _ in top])
    metrics = retrain["metrics"]
    write_json(experiment / "metrics.json", metrics)
    summary = {
        "space": str(space.path), "experiment": str(experiment), "command": command,
        "sampler": space.search.sampler, "seed": space.search.seed,
        "scheduler": space.search.scheduler, "metric": space.metric,
        "trials_requested": space.search.num_samples, "trials_run": int(len(table)),
        "trials_completed": int((table["status"] == "completed").sum()),
        "trials_stopped_early": int((table["status"] == "stopped_early").sum()),
        "trials_failed": int((table["status"] == "failed").sum()),
        "total_epochs": int(table["epochs"].sum()),
        "best_trial": str(winner["trial_id"]),
        "best_public_test_accuracy": float(winner["best_val_accuracy"]),
        "retrain_epochs": retrain["epochs"], "retrain_seeds": retrain["seeds"],
        "private_test_accuracy": metrics["accuracy"],
        "private_test_accuracy_mean": metrics["accuracy_mean"],
        "private_test_accuracy_sd": metrics["accuracy_sd"],
        "private_test_n": metrics["n"],
        **_headline_scores(metrics),
        "resources_per_trial": resources,
        "wall_seconds": round(time.time() - started, 1),
    }
    write_json(experiment / "summary.json", summary)
    export_onnx_safely(experiment)
    write_report_safely(experiment)
    return {"summary": summary, "metrics": metrics, "table": table}


def _distinct_top(ranked, config_columns: list[str], k: int) -> list[tuple]:
    """The first ``k`` rows of ``ranked`` whose configs differ, as (row, config dict) pairs."""
    top, seen = [], set()
    for _, row in ranked.iterrows():
        config = {c[len("config/"):]: row[c] for c in config_columns if not _is_missing(row[c])}
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

    for folder in ("model", "ensemble"):
        if not (experiment / folder).is_dir():
            continue
        try:
            print(f"ONNX: {export_onnx(experiment / folder)}", flush=True)
        except Exception as e:  # e.g. an operator the exporter does not know yet
            print(f"warning: could not export {experiment / folder} to ONNX: "
                  f"{type(e).__name__}: {e}", flush=True)


def write_report_safely(experiment: Path) -> None:
    """TensorBoard logs of the retrain and report.md; a plotting failure must not lose the run."""
    from .report import log_retrain_tensorboard, write_report

    for step, what in ((log_retrain_tensorboard, "the retrain's TensorBoard logs"),
                       (write_report, "report.md")):
        try:
            path = step(experiment)
            print(f"{what}: {path}", flush=True)
        except Exception as e:  # the results are already on disk; say what failed and go on
            print(f"warning: could not write {what}: {type(e).__name__}: {e}", flush=True)


def _is_missing(v) -> bool:
    try:
        import pandas as pd

        return v is None or (not isinstance(v, (list, dict, str)) and pd.isna(v))
    except (TypeError, ValueError):
        return False
