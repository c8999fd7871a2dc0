"""``python -m search.seed_parity spaces/seed.yaml``: the seed study's runs, side by side.

Each run of the file is trained with the study's recipe (see spaces/seed.yaml), validated on
PublicTest, scored once on PrivateTest, and written to a table next to the study's own number.

Example (a shortened CPU run, labelled as such in the table):
    python -m search.seed_parity spaces/seed.yaml --data data/fer2013.csv --max-epochs 2 \\
        --train-limit 4000 --output results/seed-parity
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_models.cli import EXIT_BAD_INPUT, add_data_argument, error_line, prog, resolve_data_path
from fer_models.config import TrainConfig
from fer_models.textfiles import load_yaml
from fer_models.data import FER2013, DataError, Split, load_fer2013
from fer_models.models import ModelConfigError, check_input_size
from fer_models.weights import (FETCH_COMMAND, cached_weights_file, describe_weights,
                                pretrained_weights_file)


@dataclass
class SeedRun:
    name: str
    study: str
    config: TrainConfig
    weights_note: str = ""   # set when the run could not use the weights the file asks for


WEIGHTS_MODES = {"auto": "ImageNet weights where the cache has them, else from scratch (said "
                         "in the table)",
                 "imagenet": "ImageNet weights for every run that asks; exit 2 if not cached",
                 "scratch": "every run from scratch"}


def resolve_weights(runs: list[SeedRun], mode: str, runs_file: str) -> None:
    """Apply ``--weights``: which runs that ask for ImageNet weights (``pretrained: true``) get
    them. Raises WeightsError in ``imagenet`` mode when the cache lacks some."""
    for run in runs:
        cfg = run.config
        if not cfg.pretrained:
            continue
        if mode == "scratch":
            cfg.pretrained, run.weights_note = False, "from scratch (--weights scratch)"
        elif cached_weights_file(cfg.backbone) is None:
            if mode == "imagenet":
                pretrained_weights_file(cfg.backbone)  # raises, naming the fetch command
            cfg.pretrained = False
            run.weights_note = (f"from scratch (ImageNet weights of {cfg.backbone} not in the "
                                f"cache; {FETCH_COMMAND} {runs_file})")


def load_runs(path: str | Path) -> list[SeedRun]:
    """The runs of a seed file, each as a resolved TrainConfig (``common`` + its own ``params``)."""
    path = Path(path)
    doc = load_yaml(path)  # InputFileError (a ValueError) names the file
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list) or not doc["runs"]:
        raise ValueError(f"{path}: needs a non-empty 'runs' list")
    runs = []
    for i, run in enumerate(doc["runs"]):
        try:
            cfg = TrainConfig.from_dict({**(doc.get("common") or {}), **(run.get("params") or {})})
            check_input_size(cfg.backbone, cfg.input_size)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: runs[{i}] ({run.get('name', '?')}): {e}") from None
        runs.append(SeedRun(str(run.get("name", f"run {i}")), str(run.get("study", "")), cfg))
    return runs


def subsample(data: FER2013, limit: int, seed: int = 0) -> FER2013:
    """A stratified subset of Training (PublicTest and PrivateTest stay whole)."""
    if not limit or limit >= len(data.train):
        return data
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.permutation(np.flatnonzero(data.train.labels == c))[
        :max(1, round(limit * np.mean(data.train.labels == c)))] for c in range(7)])
    idx.sort()
    return FER2013(Split(data.train.images[idx], data.train.labels[idx]), data.public_test,
                   data.private_test, data.source)


def run_one(run: SeedRun, data: FER2013) -> dict:
    import torch

    from fer_models.evaluate import evaluate
    from fer_models.train import fit, resolve_device

    cfg = run.config
    start = time.time()
    result = fit(cfg, data, log=lambda line: print(f"  [{run.name}] {line}", flush=True))
    device = resolve_device(cfg.device)
    with torch.no_grad():
        public = evaluate(result.model, data.public_test.images, data.public_test.labels,
                          cfg.input_size, cfg.in_chans, cfg.eval_batch_size, device)
        private = evaluate(result.model, data.private_test.images, data.private_test.labels,
                           cfg.input_size, cfg.in_chans, cfg.eval_batch_size, device)
    train_acc = evaluate(result.model, data.train.images[:4000], data.train.labels[:4000],
                         cfg.input_size, cfg.in_chans, cfg.eval_batch_size, device)["accuracy"]
    return {
        "run": run.name, "backbone": cfg.backbone, "input": f"{cfg.input_size}x{cfg.input_size}",
        "head": f"pool -> dropout {cfg.dropout} -> Dense {cfg.head_hidden} ReLU -> Dense 7"
                if cfg.head_hidden else "timm head" if cfg.pre_logits else "timm head without fc6/fc7",
        "weights": run.weights_note or describe_weights(cfg.backbone, cfg.pretrained,
                                                        cfg.pretrained_file),
        "epochs_run": len(result.history), "epochs_max": cfg.epochs,
        "train_rows": len(data.train), "train_accuracy": round(train_acc, 4),
        "public_test_accuracy": round(public["accuracy"], 4),
        "private_test_accuracy": round(private["accuracy"], 4),
        "study": run.study, "minutes": round((time.time() - start) / 60, 1),
    }


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    p = argparse.ArgumentParser(prog=prog("search.seed_parity"), description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="?", default="spaces/seed.yaml", help="seed runs file")
    add_data_argument(p)
    p.add_argument("--output", default="results/seed-parity", help="folder for table.csv/.md")
    p.add_argument("--max-epochs", type=int, help="cap every run's epochs (shortened runs)")
    p.add_argument("--train-limit", type=int, default=0, help="stratified Training subset size")
    p.add_argument("--only", help="comma-separated backbones to run")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--weights", choices=list(WEIGHTS_MODES), default="auto",
                   help="; ".join(f"{k}: {v}" for k, v in WEIGHTS_MODES.items()))
    args = p.parse_args(argv)
    try:
        runs = load_runs(args.runs)
        resolve_weights(runs, args.weights, args.runs)
        data = subsample(load_fer2013(resolve_data_path(args.data)), args.train_limit)
        data.require({"Training": "training", "PublicTest": "validation",
                      "PrivateTest": "the table's test accuracy"})
    except (ValueError, DataError, ModelConfigError, OSError) as e:  # WeightsError: a ValueError
        print(error_line(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.only:
        runs = [r for r in runs if r.config.backbone in args.only.split(",")]
    rows = []
    for run in runs:
        if args.max_epochs:
            run.config.epochs = min(run.config.epochs, args.max_epochs)
        run.config.threads = args.threads
        weights = run.weights_note or describe_weights(run.config.backbone, run.config.pretrained,
                                                       run.config.pretrained_file)
        print(f"{run.name}: {run.config.backbone} at {run.config.input_size} px, "
              f"up to {run.config.epochs} epochs on {len(data.train)} Training rows, "
              f"weights: {weights}", flush=True)
        rows.append(run_one(run, data))
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows)
    table.to_csv(out / "table.csv", index=False)
    (out / "table.md").write_text(table.to_markdown(index=False) if _has_tabulate()
                                  else table.to_string(index=False))
    print(table.to_string(index=False))
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
        return True
    except ImportError:
        return False


if __name__ == "__main__":
    sys.exit(main())
