"""Retrain the winning configuration (and, with ``retrain.top_k`` > 1, the next best distinct ones)
as Ray tasks, so a cluster runs them on GPU workers; then score PrivateTest once per model.

* Several seeds of the winner give mean +- sd; the saved ``model/`` is the first seed's (choosing a
  seed by its PrivateTest score would be selecting on the test set).
* With top_k > 1 the members (the first seed of each of the k best configs) are saved in
  ``ensemble/`` and their averaged probabilities are scored beside each member's own. With
  ``retrain.ensemble_seeds`` the winner's other seeds are members too (``member-0-seed<s>``):
  on two cores, one config x two seeds side by side gives its mean +- sd and an ensemble.
* Every score is reported plain and, with ``retrain.tta``, with ten-crop + flip TTA.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import ray

from fer_models.config import TrainConfig
from fer_models.data import FER2013
from fer_models.schedulers import SCHEDULES

from .experiment_folder import ExperimentFolder, write_json
from .retrain_curves import RetrainCurves


@ray.remote(max_retries=1)
def retrain_one(config: dict, data: FER2013, threads: int, tta: bool, curves,
                run: str) -> dict:
    """One retrain run; each epoch's result goes to the ``curves`` queue
    (:class:`search.retrain_curves.RetrainCurves`) as ``(run, metrics)``."""
    import torch
    from safetensors.torch import save as to_safetensors

    from fer_models.evaluate import predict_proba
    from fer_models.train import fit, resolve_device

    torch.set_num_threads(max(threads, 1))
    cfg = TrainConfig.from_dict(config)
    tag = f"[retrain {config.get('extra', {}).get('member', '')} seed {cfg.seed}]"
    result = fit(cfg, data, on_epoch=lambda metrics, _state: curves.put((run, metrics)),
                 log=lambda line: print(tag, line, flush=True))  # reads no PrivateTest
    device = resolve_device(cfg.device)
    test = data.private_test
    out = {"seed": cfg.seed, "history": result.history, "weights_epoch": result.weights_epoch,
           "probs": predict_proba(result.model, test.images, cfg.input_size, cfg.in_chans,
                                  cfg.eval_batch_size, device, crop=cfg.crop)}
    if tta:
        out["probs_tta"] = predict_proba(result.model, test.images, cfg.input_size, cfg.in_chans,
                                         cfg.eval_batch_size, device, tta=True, crop=cfg.crop)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in result.model.state_dict().items()}
    out["weights"] = to_safetensors(state)
    return out


def retrain_resources(n_tasks: int = 1) -> dict:
    """One task's resources, fitting on a single node (a request no node can hold waits forever).
    The devices are shared out so that ``n_tasks`` run side by side: more tasks than GPUs get a
    fraction of one each (small FER models leave most of a big GPU idle), and on CPU-only nodes two
    1-thread trainings get more images per second from two cores than one 2-thread training."""
    return task_resources([n["Resources"] for n in ray.nodes() if n.get("Alive")], n_tasks)


def task_resources(nodes: list[dict], n_tasks: int) -> dict:
    """:func:`retrain_resources` for the nodes' resource dicts (``{"CPU": 16, "GPU": 1}``, ...).

    Example:
        >>> task_resources([{"CPU": 16, "GPU": 1}], n_tasks=3)
        {'num_gpus': 0.33, 'num_cpus': 4}
        >>> task_resources([{"CPU": 2}], n_tasks=2)
        {'num_gpus': 0, 'num_cpus': 1}
    """
    gpu_nodes = [r for r in nodes if r.get("GPU", 0) >= 1]
    if gpu_nodes:
        gpus = sum(int(r["GPU"]) for r in gpu_nodes)
        per_gpu = -(-n_tasks // gpus)  # tasks sharing one GPU, so that all of them run at once
        share = 1.0 if per_gpu == 1 else int(100 / per_gpu) / 100
        # CPUs for each task on every GPU node, so that a node can hold all the tasks it gets.
        cpus = min(int(r.get("CPU", 0)) // (int(r["GPU"]) * per_gpu) for r in gpu_nodes)
        return {"num_gpus": share, "num_cpus": max(1, min(4, cpus))}
    node_cpus = max((int(r.get("CPU", 0)) for r in nodes), default=1)
    return {"num_gpus": 0, "num_cpus": max(1, node_cpus // max(n_tasks, 1))}


# A retrain epoch can take longer than the winner's did in its trial: a shared machine's pace
# drifts (wide-fast in docs/results.md: 42.6 s an epoch in the trial, 43-50 s in the retrain).
# The plan assumes this much slower, so that a run keeps inside its wall budget.
PACE_MARGIN = 1.15


def budget_epochs(budget_minutes: float, cap: int, pace_s: float) -> int:
    """The epochs that fit ``budget_minutes`` at ``pace_s`` seconds an epoch slowed by
    :data:`PACE_MARGIN`, at most ``cap``.

    The pace is the winner's in its trial, which ran beside as many others as the retrain runs
    seeds side by side (two 1-CPU trainings on two cores), its epochs including evaluation,
    checkpoints and start-up.

    Example:
        >>> budget_epochs(75, cap=120, pace_s=50.0)   # 4,500 s at 57.5 s an epoch
        78
        >>> budget_epochs(75, cap=60, pace_s=50.0)
        60
        >>> budget_epochs(0.1, cap=60, pace_s=50.0)  # one at least
        1
    """
    return max(1, min(cap, int(budget_minutes * 60 // (pace_s * PACE_MARGIN))))


def planned_epochs(space, trial_seconds: float, trial_epochs: int) -> tuple[int, str]:
    """The retrain's epochs under ``retrain.time_budget_minutes``, and a line saying how they
    were chosen; (0, "") without a budget: ``retrain.epochs`` applies as written."""
    budget, cap = space.retrain.time_budget_minutes, space.retrain.epochs  # space.py: a budget
    if not budget:                                                         # needs a cap
        return 0, ""
    if trial_seconds <= 0 or trial_epochs <= 0:
        return cap, (f"retrain: {cap} epochs (the winner's trial measured no pace to fit "
                     f"the {budget:g}-minute budget)")
    pace = trial_seconds / trial_epochs
    epochs = budget_epochs(budget, cap, pace)
    why = "the cap, retrain.epochs" if epochs == cap else f"what fits {budget:g} minutes"
    return epochs, (f"retrain: {epochs} epochs ({why}) at {pace * PACE_MARGIN:.0f} s an epoch, "
                    f"the winner's pace in its trial ({pace:.0f} s) + {PACE_MARGIN - 1:.0%}")


def retrain_configs(space, configs: list[dict], epochs: int = 0) -> list[dict]:
    """The training configs of every retrain task: member i's config x seeds (seeds beyond the
    first for the winner only: they measure its spread, the ensemble uses the first seed).
    ``epochs`` (from :func:`planned_epochs`) overrides ``retrain.epochs``."""
    epochs = epochs or space.retrain.epochs
    tasks = []
    for i, best in enumerate(configs):
        config = {**best, **space.retrain.params}  # what a short trial cannot judge
        config.update(epochs=epochs or int(config.get("epochs", TrainConfig().epochs)))
        schedule = config.get("scheduler", TrainConfig().scheduler)
        if config.get("train_on_public") and SCHEDULES[schedule].needs_validation:
            config["scheduler"] = "cosine"  # it steps on a validation split, which is trained on
        seeds = space.retrain.seeds if i == 0 else space.retrain.seeds[:1]
        for j, s in enumerate(seeds):
            extra = {**(config.get("extra") or {}), "member": f"member-{i}", "rank": i,
                     "first_seed": j == 0}
            tasks.append({**config, "seed": int(s), "extra": extra})
    return tasks


def retrain_top(space, data: FER2013, configs: list[dict], experiment: Path,
                trial_ids: list[str] | None = None, ensemble: bool = True,
                epochs: int = 0) -> dict:
    """Retrain ``configs`` (best first), write ``model/`` and the other configs' models, return
    metrics. ``ensemble``: the models are an ensemble (``ensemble/``, their averaged
    probabilities scored too); else each stands alone, scored once (``pareto/``: points of a
    Pareto front are alternatives, not members of one model)."""
    tasks = retrain_configs(space, configs, epochs)
    start = time.time()
    outs = _run_on_ray(tasks, data, space.retrain.tta, len(configs), experiment)
    labels = np.asarray(data.private_test.labels)
    # An earlier retrain's outputs were moved to earlier-retrains/ (finish_experiment).
    folder = ExperimentFolder(experiment)
    winner_runs = [(t, o) for t, o in zip(tasks, outs) if t["extra"]["member"] == "member-0"]
    metrics = _single_model(folder, winner_runs, labels)
    metrics["retrain_seconds"] = round(time.time() - start, 1)
    members = ensemble_runs(list(zip(tasks, outs)), space.retrain.ensemble_seeds and ensemble)
    if len(members) > 1:
        member_info, ens = _save_members(folder, members, trial_ids or [None] * len(configs),
                                         labels, ensemble)
        if ensemble:
            metrics["ensemble"] = ens
        else:
            metrics["alternatives"] = member_info
    first_task, first = winner_runs[0]
    return {"metrics": metrics, "epochs": first_task["epochs"],
            "seeds": [o["seed"] for _, o in winner_runs], "history": first["history"]}


def _run_on_ray(tasks: list[dict], data: FER2013, tta: bool, n_configs: int,
                experiment: Path) -> list[dict]:
    """Every retrain task at once on the cluster, their curves written to TensorBoard as they
    train; their outcomes in the tasks' order."""
    resources = retrain_resources(len(tasks))
    data_ref = ray.put(data)  # the only object that carries PrivateTest
    curves = RetrainCurves(experiment)
    try:
        refs = [retrain_one.options(**resources).remote(t, data_ref, resources["num_cpus"], tta,
                                                        curves.queue, run_name(t))
                for t in tasks]
        print(f"retraining {n_configs} config(s), {len(refs)} run(s) of {tasks[0]['epochs']} "
              f"epochs ({resources['num_cpus']} CPU, {resources['num_gpus']} GPU each); their "
              f"curves: TensorBoard's {ExperimentFolder.RETRAIN_RUN} runs ...", flush=True)
        curves.follow(refs)
        return ray.get(refs)
    finally:
        curves.close()


def _scores(out: dict, labels: np.ndarray) -> dict:
    """One run's PrivateTest accuracy and macro-F1 (and TTA accuracy), with its seed and epoch."""
    from fer_models.evaluate import metrics_from_probs

    s = {"seed": out["seed"], "weights_epoch": out["weights_epoch"],
         **_short(metrics_from_probs(out["probs"], labels))}
    if "probs_tta" in out:
        s["accuracy_tta"] = metrics_from_probs(out["probs_tta"], labels)["accuracy"]
    return s


def _single_model(folder: ExperimentFolder, winner_runs: list[tuple[dict, dict]],
                  labels: np.ndarray) -> dict:
    """The winner's runs (one per seed): its first seed saved as ``model/``, the metrics of that
    model with the mean and sd over the seeds."""
    from fer_models.checkpoint import save_model_bytes
    from fer_models.evaluate import metrics_from_probs

    first_task, first = winner_runs[0]
    save_model_bytes(folder.model_dir, first["weights"], TrainConfig.from_dict(first_task))
    write_json(folder.history_json, first["history"])
    per_seed = [_scores(o, labels) for _, o in winner_runs]
    accs = [s["accuracy"] for s in per_seed]
    metrics = metrics_from_probs(first["probs"], labels)
    metrics.update(
        split="PrivateTest", seed=first["seed"], retrain_epochs=first_task["epochs"],
        accuracy_mean=statistics.fmean(accs),
        accuracy_sd=statistics.stdev(accs) if len(accs) > 1 else 0.0,
        per_seed=per_seed)
    if "probs_tta" in first:
        metrics["tta"] = metrics_from_probs(first["probs_tta"], labels)
    return metrics


def _save_members(folder: ExperimentFolder, members: list[tuple[dict, dict]], trial_ids: list,
                  labels: np.ndarray, ensemble: bool) -> tuple[list[dict], dict | None]:
    """Save each member's model (``ensemble/`` or ``pareto/``) and score it; as an ensemble,
    also save the ensemble and score the members' averaged probabilities (with TTA when the
    runs have it). Returns (the members' rows, the ensemble's metrics or None)."""
    from fer_models.checkpoint import save_model_bytes
    from fer_models.ensemble import save_ensemble
    from fer_models.evaluate import metrics_from_probs

    home = folder.ensemble_dir if ensemble else folder.pareto_dir
    cfgs = [TrainConfig.from_dict(t) for t, _ in members]
    names = [member_name(t) for t, _ in members]
    member_dirs = [save_model_bytes(home / name, o["weights"], c)
                   for name, (_, o), c in zip(names, members, cfgs)]
    member_info = [{"member": name, "trial_id": trial_ids[t["extra"]["rank"]],
                    "backbone": c.backbone, **_scores(o, labels)}
                   for name, (t, o), c in zip(names, members, cfgs)]
    if not ensemble:
        return member_info, None
    save_ensemble(folder.ensemble_dir, member_dirs, {"members_info": member_info})
    ens = {"k": len(members), "members": member_info,
           **metrics_from_probs(np.mean([o["probs"] for _, o in members], axis=0), labels)}
    if "probs_tta" in members[0][1]:
        ens["tta"] = metrics_from_probs(np.mean([o["probs_tta"] for _, o in members], axis=0),
                                        labels)
    return member_info, ens


def ensemble_runs(runs: list[tuple[dict, dict]], every_seed: bool) -> list[tuple[dict, dict]]:
    """The (task, outcome) pairs the ensemble averages: each config's first seed, and with
    ``every_seed`` the winner's (member-0's) other seeds too.

    >>> runs = [({"extra": {"member": m}, "seed": s}, {}) for m, s in
    ...         [("member-0", 0), ("member-0", 1), ("member-1", 0)]]
    >>> [(t["extra"]["member"], t["seed"]) for t, _ in ensemble_runs(runs, False)]
    [('member-0', 0), ('member-1', 0)]
    >>> [(t["extra"]["member"], t["seed"]) for t, _ in ensemble_runs(runs, True)]
    [('member-0', 0), ('member-0', 1), ('member-1', 0)]
    """
    chosen, seen = [], set()
    for task, out in runs:
        member = task["extra"]["member"]
        if member not in seen or (every_seed and member == "member-0"):
            chosen.append((task, out))
            seen.add(member)
    return chosen


def member_name(task: dict) -> str:
    """A retrain task's member: ``member-<i>``, or ``member-0-seed<s>`` for the winner's seeds
    after the first (the folder its model is saved in, and its TensorBoard run)."""
    name, first = task["extra"]["member"], task["extra"].get("first_seed", True)
    return name if first else f"{name}-seed{task['seed']}"


def run_name(task: dict) -> str:
    """The task's TensorBoard run under ``retrain/``: "" for the run that becomes ``model/``.

    >>> run_name({"seed": 0, "extra": {"member": "member-0", "first_seed": True}})
    ''
    >>> run_name({"seed": 1, "extra": {"member": "member-0", "first_seed": False}})
    'member-0-seed1'
    """
    name = member_name(task)
    return "" if name == "member-0" else name


def _short(m: dict) -> dict:
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}

