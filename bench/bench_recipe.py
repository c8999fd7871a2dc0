"""Ablation of the training recipe: each addition switched on alone from one base recipe.

Every arm trains the same backbone for the same number of epochs (the "longer" arm aside: it is
the schedule's own ablation) with each of ``--seeds``, on Training, validated on **PublicTest**
(PrivateTest is never loaded: the data handed to the trainer has none). Runs go ``--workers`` at a
time, one torch thread each, as a CPU search runs its trials; arms of one seed are interleaved so
each arm shares the machine with the same mix of neighbours.

    .venv/bin/python bench/bench_recipe.py                          # full data, 5 epochs, 2 seeds
    .venv/bin/python bench/bench_recipe.py --epochs 8 --seeds 0 1 2 --arms base ema crop
    .venv/bin/python bench/bench_recipe.py --analyse bench/results/recipe    # reprint a table

Each finished run is one JSON line in ``--out``/runs.jsonl (a rerun skips what is there, so an
interrupted ablation continues). The table (mean +- sd over seeds of the last epoch's PublicTest
accuracy, plain and ten-crop TTA, and training img/s) is printed and written as table.md and
runs.csv. Last line (machine-readable):

    RESULT recipe epochs=<E> seeds=<n> <arm>=<mean acc> ...
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA_DIR = Path(os.environ.get("FER_DATA_DIR") or REPO.parent / "shared" / "data")
DEFAULT_OUT = REPO / "bench" / "results" / "recipe"

# The winner of the last full-data spaces/cpu.yaml search (docs/results.md): what each arm adds to.
BASE = dict(backbone="resnet10t", input_size=48, batch_size=128, optimizer="adamw", lr=3.6e-3,
            weight_decay=0.034, scheduler="cosine", warmup_epochs=0.5, dropout=0.2,
            label_smoothing=0.1, hflip=0.5, rotate=15.0, translate=0.1, scale=0.15, erase_prob=0.0)

# One addition per arm. "longer" doubles the epochs; "sgd" swaps the optimizer with the lr and
# (L2) weight decay the from-scratch FER recipes use with it.
ARMS: dict[str, dict] = {
    "base": {},
    "mixup": dict(mixup_alpha=0.2),
    "cutmix": dict(cutmix_alpha=1.0),
    "ema": dict(ema_decay=0.999),
    "crop44": dict(crop=44, input_size=44),
    "sgd_nesterov": dict(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4),
    "longer": dict(epochs_factor=2),
    "erase": dict(erase_prob=0.5),
    "no_stem_pool": dict(stem_pool=False),  # 2x the map side in every stage, ~3x the compute
}


def default_data() -> Path:
    full = DATA_DIR / "fer2013.csv.gz"
    return full if full.exists() else DATA_DIR / "fer2013-small.csv.gz"


def run_config(arm: str, seed: int, epochs: int) -> dict:
    extra = dict(ARMS[arm])
    factor = extra.pop("epochs_factor", 1)
    return {**BASE, **extra, "epochs": epochs * factor, "seed": seed, "threads": 1}


_DATA = None


def _load(data_path: str, train_limit: int) -> None:
    """Worker initializer: each process reads the CSV once (PrivateTest dropped at once)."""
    global _DATA
    import numpy as np

    from fer_models.data import FER2013, Split, load_fer2013

    data = load_fer2013(data_path)
    train = data.train
    if train_limit:
        idx = np.sort(np.random.default_rng(0).permutation(len(train))[:train_limit])
        train = Split(train.images[idx], train.labels[idx])
    _DATA = FER2013(train, data.public_test, None, data.source)


def train_arm(arm: str, seed: int, epochs: int) -> dict:
    import statistics

    import torch

    from fer_models.config import TrainConfig
    from fer_models.evaluate import evaluate
    from fer_models.train import fit

    torch.set_num_threads(1)
    cfg = TrainConfig.from_dict(run_config(arm, seed, epochs))
    start = time.perf_counter()
    result = fit(cfg, _DATA)
    seconds = time.perf_counter() - start
    public = _DATA.public_test
    tta = evaluate(result.model, public.images, public.labels, cfg.input_size, cfg.in_chans,
                   cfg.eval_batch_size, tta=True, channels_last=cfg.channels_last, crop=cfg.crop)
    last = result.history[-1]
    return {"arm": arm, "seed": seed, "epochs": cfg.epochs, "val_accuracy": last["val_accuracy"],
            "val_accuracy_tta": tta["accuracy"], "val_loss": last["val_loss"],
            "best_val_accuracy": max(h["val_accuracy"] for h in result.history),
            "images_per_s": statistics.median(h["images_per_s"] for h in result.history),
            "minutes": seconds / 60, "ema_selected": last.get("ema_selected"),
            "config": cfg.to_dict(), "history": result.history}


def read_runs(out: Path) -> list[dict]:
    path = out / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def table(runs: list[dict]):
    """One row per arm: mean and sd over seeds (pandas), in ARMS order."""
    import pandas as pd

    frame = pd.DataFrame([{**{k: r[k] for k in ("arm", "seed", "epochs", "val_accuracy",
                                                "val_accuracy_tta", "images_per_s", "minutes")},
                           # the EMA weights' own score (val_accuracy is the better of raw / EMA)
                           "val_accuracy_ema": r["history"][-1].get("val_accuracy_ema", float("nan"))}
                          for r in runs])
    grouped = frame.groupby("arm")
    summary = pd.DataFrame({
        "epochs": grouped["epochs"].first(), "seeds": grouped["seed"].count(),
        "val_acc_mean": grouped["val_accuracy"].mean(), "val_acc_sd": grouped["val_accuracy"].std(),
        "val_acc_tta_mean": grouped["val_accuracy_tta"].mean(),
        "val_acc_tta_sd": grouped["val_accuracy_tta"].std(),
        "val_acc_ema_mean": grouped["val_accuracy_ema"].mean(),
        "img_s": grouped["images_per_s"].median(), "minutes": grouped["minutes"].median()})
    order = [a for a in ARMS if a in summary.index] + [a for a in summary.index if a not in ARMS]
    summary = summary.loc[order]
    base = summary["val_acc_mean"].get("base")
    summary["delta_pt"] = (summary["val_acc_mean"] - base) * 100 if base is not None else float("nan")
    return frame, summary


def markdown(summary, epochs: int) -> str:
    lines = [f"| arm | what it adds | epochs | seeds | PublicTest acc. | with ten-crop TTA | "
             f"vs base (pt) | EMA weights alone | train img/s | min/run |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for arm, r in summary.iterrows():
        adds = ", ".join(f"{k}={v}" for k, v in ARMS.get(arm, {}).items()) or "(the base recipe)"
        lines.append(f"| {arm} | {adds} | {int(r.epochs)} | {int(r.seeds)} | "
                     f"{r.val_acc_mean:.4f} +- {r.val_acc_sd:.4f} | "
                     f"{r.val_acc_tta_mean:.4f} +- {r.val_acc_tta_sd:.4f} | {r.delta_pt:+.2f} | "
                     f"{'' if r.val_acc_ema_mean != r.val_acc_ema_mean else f'{r.val_acc_ema_mean:.4f}'} | "
                     f"{r.img_s:.0f} | {r.minutes:.1f} |")
    return "\n".join(lines)


def report(out: Path, epochs: int) -> int:
    runs = read_runs(out)
    if not runs:
        print(f"error: no finished runs in {out / 'runs.jsonl'}", file=sys.stderr)
        return 2
    frame, summary = table(runs)
    frame.to_csv(out / "runs.csv", index=False)
    text = markdown(summary, epochs)
    (out / "table.md").write_text(text + "\n")
    print(text)
    accs = " ".join(f"{arm}={r.val_acc_mean:.4f}" for arm, r in summary.iterrows())
    print(f"RESULT recipe epochs={epochs} seeds={int(summary['seeds'].max())} {accs}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/bench_recipe.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data(),
                        help="FER2013 CSV (default: ../shared/data/fer2013.csv.gz, else the small sample)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of every arm (longer: twice)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--workers", type=int, default=2, help="runs at once, one thread each")
    parser.add_argument("--train-limit", type=int, default=0,
                        help="train on this many Training images (0: all); for a quick look")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    parser.add_argument("--analyse", type=Path, metavar="DIR", help="only reprint the table of DIR")
    args = parser.parse_args(argv)
    if args.analyse:
        runs = read_runs(args.analyse)
        return report(args.analyse, min((r["epochs"] for r in runs), default=args.epochs))
    if not args.data.exists():
        print(f"error: {args.data}: no such file", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    done = {(r["arm"], r["seed"]) for r in read_runs(args.out) if r["epochs"] in
            (args.epochs, args.epochs * ARMS[r["arm"]].get("epochs_factor", 1))}
    # Longest first, so the two workers finish together; seeds interleaved within each length.
    jobs = [(arm, seed) for seed in args.seeds for arm in args.arms if (arm, seed) not in done]
    jobs.sort(key=lambda j: -ARMS[j[0]].get("epochs_factor", 1))
    print(f"{len(jobs)} run(s) to do, {len(done)} already in {args.out}; data {args.data}", flush=True)
    start = time.time()
    import multiprocessing

    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_load, initargs=(str(args.data), args.train_limit)) as pool:
        futures = {pool.submit(train_arm, arm, seed, args.epochs): (arm, seed) for arm, seed in jobs}
        for n, future in enumerate(as_completed(futures), 1):
            r = future.result()
            with open(args.out / "runs.jsonl", "a") as f:
                f.write(json.dumps(r) + "\n")
            print(f"[{n}/{len(jobs)} {(time.time() - start) / 60:.1f} min] {r['arm']} seed {r['seed']}: "
                  f"PublicTest {r['val_accuracy']:.4f} (TTA {r['val_accuracy_tta']:.4f}), "
                  f"{r['images_per_s']:.0f} img/s, {r['minutes']:.1f} min", flush=True)
    return report(args.out, args.epochs)


if __name__ == "__main__":
    sys.exit(main())
