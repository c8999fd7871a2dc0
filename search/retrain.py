"""Retrain the winning configuration as Ray tasks (so a cluster runs it on a GPU worker), then
evaluate PrivateTest once per retrained model. Several seeds give mean +- sd; the saved model is
the first seed's (choosing a seed by its PrivateTest score would be selecting on the test set)."""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import ray

from fer_models.config import TrainConfig
from fer_models.data import FER2013


@ray.remote(max_retries=1)
def retrain_one(config: dict, data: FER2013, threads: int, tta: bool) -> dict:
    import torch
    from safetensors.torch import save as to_safetensors

    from fer_models.evaluate import evaluate
    from fer_models.train import fit, resolve_device

    torch.set_num_threads(max(threads, 1))
    cfg = TrainConfig.from_dict(config)
    tag = f"[retrain seed {cfg.seed}]"
    result = fit(cfg, data, log=lambda line: print(tag, line, flush=True))  # reads no PrivateTest
    device = resolve_device(cfg.device)
    test = data.private_test
    out = {"seed": cfg.seed, "history": result.history,
           "metrics": evaluate(result.model, test.images, test.labels, cfg.input_size, cfg.in_chans,
                               cfg.eval_batch_size, device)}
    if tta:
        out["metrics_tta"] = evaluate(result.model, test.images, test.labels, cfg.input_size,
                                      cfg.in_chans, cfg.eval_batch_size, device, tta=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in result.model.state_dict().items()}
    out["weights"] = to_safetensors(state)
    return out


def retrain_resources() -> dict:
    """One task's resources must fit on a single node: a request no node can hold waits forever."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    gpu_nodes = [r for r in nodes if r.get("GPU", 0) >= 1]
    if gpu_nodes:
        node_cpus = max(int(r.get("CPU", 0)) for r in gpu_nodes)
        return {"num_gpus": 1, "num_cpus": max(1, min(4, node_cpus // 2))}
    node_cpus = max((int(r.get("CPU", 0)) for r in nodes), default=1)
    return {"num_gpus": 0, "num_cpus": max(node_cpus, 1)}


def retrain_winner(space, data: FER2013, best_config: dict, model_dir: Path) -> dict:
    from fer_models.checkpoint import CONFIG_FILE, MODEL_FILE

    config = dict(best_config)
    epochs = space.retrain.epochs or int(config.get("epochs", TrainConfig().epochs))
    config.update(epochs=epochs, train_on_public=space.retrain.train_on_public)
    if config["train_on_public"] and config.get("scheduler") == "plateau":
        config["scheduler"] = "cosine"  # plateau needs a validation split, which is trained on
    resources = retrain_resources()
    data_ref = ray.put(data)  # the only object that carries PrivateTest
    start = time.time()
    refs = [retrain_one.options(**resources).remote({**config, "seed": int(s)}, data_ref,
                                                      resources["num_cpus"], space.retrain.tta)
            for s in space.retrain.seeds]
    print(f"retraining {len(refs)} seed(s) for {epochs} epochs "
          f"({resources['num_cpus']} CPU, {resources['num_gpus']} GPU each) ...", flush=True)
    outs = ray.get(refs)
    first = outs[0]
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / MODEL_FILE).write_bytes(first["weights"])
    cfg = TrainConfig.from_dict({**config, "seed": first["seed"]})
    import json

    (model_dir / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2))
    (model_dir / "history.json").write_text(json.dumps(first["history"], indent=2))
    accs = [o["metrics"]["accuracy"] for o in outs]
    metrics = dict(first["metrics"])
    metrics.update(
        split="PrivateTest", seed=first["seed"], retrain_epochs=epochs,
        accuracy_mean=statistics.fmean(accs),
        accuracy_sd=statistics.stdev(accs) if len(accs) > 1 else 0.0,
        per_seed=[{"seed": o["seed"], "accuracy": o["metrics"]["accuracy"],
                   "macro_f1": o["metrics"]["macro_f1"],
                   **({"accuracy_tta": o["metrics_tta"]["accuracy"]} if "metrics_tta" in o else {})}
                  for o in outs],
        retrain_seconds=round(time.time() - start, 1))
    if "metrics_tta" in first:
        metrics["tta"] = first["metrics_tta"]
    return {"metrics": metrics, "epochs": epochs, "seeds": [o["seed"] for o in outs],
            "history": first["history"]}
