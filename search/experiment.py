"""The search itself: start or join Ray, run the Tuner; then :mod:`search.finish` retrains the
winner and writes the outputs."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import time
from pathlib import Path

import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.schedulers import FIFOScheduler

from fer_models.audit import private_test_copies
from fer_models.data import FER2013
from fer_models.weights import CACHE_ENV, hub_cache_dir

from .experiment_folder import STUDY_NAME, ExperimentFolder
from .finish import finish_experiment
from .plateau import PlateauStop
from .scheduler import ResumableASHA
from .searcher import PrunedAwareOptunaSearch
from .study_end import close_study
from .samplers import create_sampler
from .console import ConsoleCallback, quiet_ray_console
from .tbx_callback import SearchTBXLoggerCallback
from .tensorboard_logs import write_hparams_experiment
from .space import RUNG_METRICS, SearchSpace
from .staging import ReleaseEndedTrials
from .trainable import train_trial
from .trial_names import trial_namer
from .warm_start import seed_study


class ResourceError(ValueError):
    """The cluster cannot run the search: unreachable, or a trial asks for more than any node
    has (it would wait forever)."""


def check_trial_fits(resources: dict, nodes: list[dict], space_path) -> None:
    """ResourceError unless one node holds a trial's CPUs and GPUs (Ray would queue it forever).

    >>> check_trial_fits({"cpu": 4, "gpu": 0}, [{"CPU": 2.0}], "cpu.yaml")
    Traceback (most recent call last):
        ...
    search.experiment.ResourceError: cpu.yaml: resources: a trial needs 4 CPU and 0 GPU, but the largest node has 2 CPU and 0 GPU; lower resources.cpus_per_trial / gpus_per_trial
    """
    if any(n.get("CPU", 0) >= resources["cpu"] and n.get("GPU", 0) >= resources["gpu"] for n in nodes):
        return
    cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    raise ResourceError(f"{space_path}: resources: a trial needs {resources['cpu']:g} CPU and "
                        f"{resources['gpu']:g} GPU, but the largest node has {cpus:g} CPU and "
                        f"{gpus:g} GPU; lower resources.cpus_per_trial / gpus_per_trial")


def start_ray(address: str | None, num_cpus: int | None) -> None:
    if ray.is_initialized():
        return
    # Trials read ImageNet weights from the cache the driver checked, and never download.
    worker_env = {"HF_HUB_OFFLINE": "1", CACHE_ENV: str(hub_cache_dir().resolve())}
    if address:
        _check_reachable(address)
        # Other machines' workers only get the variables through a job runtime_env.
        try:
            ray.init(address=address, log_to_driver=True, runtime_env={"env_vars": worker_env})
        except (ConnectionError, TimeoutError) as e:
            reason = " ".join(str(e).split())[:200]
            raise ResourceError(f"--address {address}: no Ray cluster reached there ({reason})") \
                from None
        return
    # Embedded local Ray; no dashboard (nothing to expose, and it saves seconds of start-up).
    # Its raylet inherits this environment and its workers the raylet's: no runtime_env, so the
    # workers Ray prestarts at init run the trials. A runtime_env would make Ray start a second
    # set through its runtime-env agent, a few at a time (64 workers on 2 cores: 46.5 s without
    # one, 62.6 s with one; bench/bench_scale.py idle --actors 64 [--job-env]).
    with _environment(worker_env):
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)


def _check_reachable(address: str) -> None:
    """ResourceError at once when nothing listens at a ``host:port`` address: ray.init would
    retry for about 12 minutes before giving up (20 tries of its GCS client)."""
    if address == "auto" or "://" in address:
        return  # found by Ray itself, or a Ray Client address
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=5).close()
    except ValueError:
        raise ResourceError(f"--address {address}: not host:port (or auto, or ray://...)") from None
    except OSError as e:
        raise ResourceError(f"--address {address}: no Ray cluster reached there "
                            f"({e.strerror or e})") from None


@contextlib.contextmanager
def _environment(variables: dict[str, str]):
    """``os.environ`` with ``variables`` set, restored on exit (the raylet keeps its copy)."""
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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


def describe_stopping(asha, max_epochs: int) -> str:
    """How a search stops trials early, for its first console lines."""
    if asha is None:
        return "no early stopping"
    rungs = f", rungs on {asha.rung_metric}" if asha.rung_metric else ""
    return (f"ASHA (first rung at epoch {asha.first_rung(max_epochs)}, 1 in "
            f"{asha.reduction_factor} on{rungs})")


def build_trainable(space: SearchSpace, data: FER2013, resources: dict, trial_fn=train_trial):
    trainable = tune.with_parameters(
        trial_fn, data=data.without_private_test(),  # trials never receive PrivateTest
        threads=max(int(resources["cpu"]), 1), checkpoint=space.search.checkpoint is not False,
        # optional keywords only when set: a trial function written for the plain call still fits
        **({"measure": True} if space.measures else {}),
        **({"checkpoint_every_s": space.search.checkpoint_every_s}
           if space.search.checkpoint_every_s else {}))
    return tune.with_resources(trainable, resources)


def first_points(space: SearchSpace, winner: dict | None = None) -> list[dict] | None:
    """The trials every search starts with: a warm start's earlier winner, then the space's
    default configuration (what the search bought is measured against it)."""
    points = [p for p in (winner, space.default_config()) if p]
    if len(points) == 2 and space.is_default(points[0]):
        points = points[:1]
    return points or None


def build_scheduler(space: SearchSpace, experiment: Path) -> tuple[object, bool]:
    """ASHA as the space sets it (its rungs saved for a resume), else FIFO; and whether the
    scheduler carries its own metric.

    Ray lets a scheduler have its own metric only when the TuneConfig names none: so the search
    metric goes to the TuneConfig unless ASHA's rungs compare another one (or the searcher has
    several objectives)."""
    multi = space.multi_objective
    asha = space.search.asha
    if asha is None:
        return FIFOScheduler(), multi
    rung_metric = asha.rung_metric or space.metric
    own_metric = rung_metric != space.metric or multi
    scheduler = ResumableASHA(ExperimentFolder(experiment).asha_rungs,
                              time_attr="training_iteration", max_t=space.max_epochs,
                              grace_period=asha.first_rung(space.max_epochs),
                              reduction_factor=asha.reduction_factor,
                              **(dict(metric=rung_metric, mode=RUNG_METRICS[rung_metric])
                                 if own_metric else {}))
    return scheduler, own_metric


def build_tuner(space: SearchSpace, data: FER2013, experiment: Path, resources: dict,
                verbose: int = 1, trial_fn=train_trial, reuse_actors: bool = True,
                plateau: PlateauStop | None = None, first: dict | None = None) -> tune.Tuner:
    """The Tuner of a search. ``reuse_actors``: a finished trial's process runs the next trial,
    which saves the next one's 4-5 s of importing torch and timm (bench/bench_scheduling.py).
    ``verbose``: 0 silent, 1 this project's lines (:mod:`search.console`), 2 Ray's output too."""
    multi = space.multi_objective  # Optuna models every objective; ASHA stops on the first
    searcher = PrunedAwareOptunaSearch(
        space=space.suggest, metric=list(space.objectives) if multi else space.metric,
        mode=list(space.objectives.values()) if multi else space.mode,
        sampler=create_sampler(space.search.sampler, space.search.seed),
        study_name=STUDY_NAME, storage=ExperimentFolder(experiment).study_storage(),
        constraints=space.constraints,
        points_to_evaluate=first_points(space, first))
    scheduler, own_metric = build_scheduler(space, experiment)
    # Ray's TBX logger replaced (tbx_callback.py); its CSV and JSON loggers named here (Tune
    # would append them last) so that ReleaseEndedTrials, last, sees a trial's files closed.
    callbacks = [SearchTBXLoggerCallback(), CSVLoggerCallback(), JsonLoggerCallback()]
    searched = [name for name, p in space.params.items() if p.searched]
    default = space.default_config()
    if verbose >= 1:
        callbacks.append(ConsoleCallback(
            metric=space.metric, mode=space.mode, num_samples=space.search.num_samples,
            max_epochs=space.max_epochs, scheduler=scheduler,
            time_budget_s=space.search.time_budget_minutes * 60 or None,
            searched=searched, default=default))
    if plateau is not None:  # a Callback to see trials finish, a Stopper to end the search
        callbacks.append(plateau)
    callbacks.append(ReleaseEndedTrials())  # staging keeps only running trials (staging.py)
    namer = trial_namer(searched, default)
    return tune.Tuner(
        build_trainable(space, data, resources, trial_fn),
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, metric=None if own_metric else space.metric,
            mode=None if own_metric else space.mode,
            num_samples=space.search.num_samples,
            max_concurrent_trials=space.search.max_concurrent, reuse_actors=reuse_actors,
            time_budget_s=space.search.time_budget_minutes * 60 or None,
            trial_name_creator=namer, trial_dirname_creator=namer),
        run_config=tune.RunConfig(
            name=experiment.name, storage_path=str(experiment.parent),
            # Tune snapshots the whole experiment (every trial's state and the pickled searcher)
            # whenever a trial has saved num_to_keep checkpoints since the last snapshot: with 1,
            # after every result, O(trials) each, so the driver's cost per result grows with the
            # search (bench/bench_scale.py), but the snapshot always knows which trials ended.
            # With 2 (exact_resume: false), about one per epoch length. Resume needs only the last.
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1 if space.search.exact_resume else 2),
            failure_config=tune.FailureConfig(max_failures=space.search.max_failures),
            stop=plateau,
            callbacks=callbacks,
            verbose=verbose if verbose >= 2 else 0))


def run_experiment(space: SearchSpace, data: FER2013, experiment: Path, *, address=None,
                   num_cpus=None, verbose: int = 1, command: str = "", started: float | None = None,
                   resume: bool = False, retrain_only: bool = False,
                   trial_fn=train_trial, warm_start=()) -> dict:
    """Run (or, with ``resume``, continue) the search in ``experiment``, then retrain and report.

    ``retrain_only`` skips the search and retrains the best trial of a finished one.
    ``warm_start``: :class:`search.warm_start.Inherited` trials that enter the new study first.
    ``trial_fn`` is the Tune function each trial runs (default: :func:`train_trial`).
    """
    started = started or time.time()
    experiment.mkdir(parents=True, exist_ok=True)
    if verbose < 2:
        quiet_ray_console()
    start_ray(address, num_cpus)
    resources = trial_resources(space)
    if address is None:  # a cluster's autoscaler may still add a node that fits; a local Ray won't
        check_trial_fits(resources, [n["Resources"] for n in ray.nodes() if n.get("Alive")],
                         space.path)
    print(f"experiment: {experiment}{' (resumed)' if resume else ''}\n"
          f"  {space.search.num_samples} trials, sampler {space.search.sampler} "
          f"(seed {space.search.seed}), {describe_stopping(space.search.asha, space.max_epochs)}, "
          f"up to {space.max_epochs} epochs, {resources['cpu']} CPU / {resources['gpu']} GPU per trial\n"
          f"  watch it: tensorboard --logdir {experiment}", flush=True)
    # Faces the trials train or are ranked on that are copies of a PrivateTest face: the one way
    # PrivateTest can reach selection (0 with search.drop_duplicates).
    copies = private_test_copies(data)
    if any(copies.values()):
        print(f"note: {copies['Training']} Training and {copies['PublicTest']} PublicTest faces are "
              "pixel-identical to a PrivateTest face (search.drop_duplicates removes them)",
              flush=True)
    plateau_record = ExperimentFolder(experiment).plateau_json
    plateau = (PlateauStop(space.metric, space.mode, space.search.plateau_trials,
                           space.search.plateau_gain, record=plateau_record)
               if space.search.plateau_trials else None)
    search_started = time.time()
    if resume:
        # The restored Tuner brings its own copy of the plateau rule and its counts; what it
        # decides reaches plateau_record.
        tuner = tune.Tuner.restore(str(experiment),
                                   trainable=build_trainable(space, data, resources, trial_fn),
                                   resume_unfinished=True, resume_errored=False)
        results = tuner.get_results() if retrain_only else tuner.fit()
    else:
        write_hparams_experiment(experiment, space)
        if warm_start:
            seed_study(ExperimentFolder(experiment).study_storage(), STUDY_NAME, space, warm_start)
        winner = next((got.winner for got in warm_start if got.winner), None)
        tuner = build_tuner(space, data, experiment, resources, verbose, trial_fn=trial_fn,
                            plateau=plateau, first=winner)
        results = tuner.fit()
    ended_by = search_end(space, results, time.time() - search_started, plateau_record, resume)
    if ended_by.startswith("the plateau rule"):
        print(f"search stopped: {ended_by}", flush=True)
    if not retrain_only:  # a retrain of a finished search leaves its study as it ended
        end_study(space, experiment, ended_by)
    return finish_experiment(space, data, experiment, results, command=command,
                             started=started, resources=resources, ended_by=ended_by,
                             copies=copies)


def search_end(space, results, seconds: float, plateau_record: Path, resume: bool) -> str:
    """Why the search ended, for the console, summary.json and the Optuna study."""
    if plateau_record.is_file() and len(results) < space.search.num_samples:
        try:
            return f"the plateau rule: {json.loads(plateau_record.read_text())['reason']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "the plateau rule"
    budget = space.search.time_budget_minutes
    if budget and (seconds >= budget * 60 or len(results) < space.search.num_samples):
        return f"its {budget:g}-minute time budget"
    if len(results) >= space.search.num_samples:
        return f"all {space.search.num_samples} trials run"
    return "a resumed search's end" if resume else "the search's end"


def end_study(space, experiment: Path, ended_by: str) -> None:
    """Close the trials the search's end cut in the Optuna study (search/study_end.py)."""
    reason = f"the search's end ({ended_by})"
    folder = ExperimentFolder(experiment)
    if not folder.journal.exists():
        return
    study = folder.load_study()
    closed = close_study(study, list(space.objectives), reason)
    # What was searched, for optuna-dashboard's readers: each value's distribution as written.
    searched = {name: {"kind": p.kind, **{k: v for k, v in dataclasses.asdict(p).items()
                                          if v is not None and k not in ("name", "log")
                                          or (k == "log" and v)}}
                for name, p in space.params.items() if p.searched}
    if study.user_attrs.get("search_space") != searched:
        study.set_user_attr("search_space", searched)
    study.set_user_attr("search_ended_by", ended_by)
    if closed:
        print(f"{closed} trial(s) cut by {reason} before they finished: closed in the Optuna "
              "study (PRUNED with epochs, FAIL without)", flush=True)
