"""Does ASHA earn its keep? The same space, the same sampler seed, with ASHA and without early
stopping, on the small real sample: total epochs consumed and the best PublicTest accuracy of each.

    python bench/bench_asha.py                                   # 12 trials x 8 epochs, rungs 1, 4
    python bench/bench_asha.py --trials 16 --epochs 12 --rung-metric train_loss --sampler random

The space is the smoke space (resnet10t, lr 1e-4..3e-2, AdamW or SGD, weight decay, dropout) with
`--epochs` epochs a trial at batch `--batch-size`, two trials at a time on one CPU each.
Per-trial training is seeded, so a config that both runs propose trains identically in both; the
table at the end shows, for each config of the full-budget run, how far ASHA let it go.

With TPE (the default) the two runs part ways after TPE's startup trials: what TPE learns from a
pruned trial differs from what it learns from a finished one, so the comparison mixes ASHA's
savings with the sampler's luck. `--sampler random` (or `qmc`) proposes the same configurations in
the same order in both runs, whatever the scheduler does: the controlled experiment, where the only
difference is whether ASHA stops trials, and the gap says whether it stopped the best one.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from search.space import RUNG_METRICS

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FER_DATA_DIR") or REPO.parent / "shared" / "data") / "fer2013-small.csv.gz"


def run(space: dict, data: str, out: Path, name: str) -> float:
    """One search of ``space`` into ``out/name``; returns its wall seconds."""
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "search.run", str(path), "--data", data, "--output",
                    str(out), "--name", name, "--verbose", "0"], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def load(out: Path, name: str) -> tuple[dict, pd.DataFrame]:
    return (json.loads((out / name / "summary.json").read_text()),
            pd.read_csv(out / name / "trials.csv"))


def curves(experiment: Path, trial_ids) -> dict[str, pd.DataFrame]:
    """Each trial's per-epoch results (progress.csv), by trial id."""
    out = {}
    for trial_id in trial_ids:
        (folder,) = experiment.glob(f"train_trial_{trial_id}_*")
        out[trial_id] = pd.read_csv(folder / "progress.csv").set_index("training_iteration")
    return out


def replay_synchronous_halving(full: dict[str, pd.DataFrame], max_t: int, grace: int, rf: int,
                               rung_metric: str) -> tuple[int, float]:
    """What synchronous successive halving (every trial reaches a rung before any is promoted,
    then the best 1/rf go on) would have spent and found, replayed over the full-budget run's
    real curves: training is seeded, so a trial stopped at epoch e has exactly these first e
    epochs. The contrast with the real asynchronous run is ASHA's early-trial bias: with few
    records at a rung, ASHA promotes whoever arrives early. Returns (epochs, best accuracy)."""
    sign = 1 if RUNG_METRICS[rung_metric] == "max" else -1  # larger is better below
    alive, stopped_at, rung = list(full), {}, grace
    while rung < max_t and len(alive) > 1:
        ranked = sorted(alive, key=lambda t: sign * full[t].loc[rung, rung_metric], reverse=True)
        keep = max(1, -(-len(ranked) // rf))  # ceil: ASHA's top 1/rf
        stopped_at.update({t: rung for t in ranked[keep:]})
        alive, rung = ranked[:keep], rung * rf
    stopped_at.update({t: max_t for t in alive})
    best = max(full[t].loc[:e, "val_accuracy"].max() for t, e in stopped_at.items())
    return sum(stopped_at.values()), float(best)


def bench_space(args) -> dict:
    space = yaml.safe_load((REPO / "spaces" / "smoke.yaml").read_text())
    space["params"].update(epochs=args.epochs, batch_size=args.batch_size)
    space["retrain"] = {"epochs": 1, "seeds": [0], "tta": False}
    space["resources"] = {"cpus_per_trial": args.cpus_per_trial}
    space["search"].update(sampler=args.sampler, num_samples=args.trials, seed=args.seed,
                           max_concurrent=args.concurrent,
                           grace_period=args.grace_period, reduction_factor=args.reduction_factor,
                           rung_metric=args.rung_metric,
                           checkpoint=False)  # neither run resumes; checkpoints only cost time
    return space


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--epochs", type=int, default=8, help="epochs per trial (ASHA's max_t)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--grace-period", type=int, default=1)
    p.add_argument("--reduction-factor", type=int, default=4)
    p.add_argument("--rung-metric", default="", choices=("", *RUNG_METRICS),
                   help="what ASHA compares at a rung (default: the search metric, val_accuracy)")
    p.add_argument("--concurrent", type=int, default=2, help="trials at a time")
    p.add_argument("--cpus-per-trial", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed, the same in both runs")
    p.add_argument("--sampler", default="tpe", choices=("tpe", "random", "qmc"),
                   help="random/qmc: both runs propose identical configs (see above)")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--keep", help="keep both experiments in this folder (default: a temp folder)")
    p.add_argument("--analyse", metavar="DIR",
                   help="train nothing: print the figures of a folder that --keep kept")
    args = p.parse_args()
    if args.analyse:
        return report(Path(args.analyse), {})
    base = bench_space(args)
    with tempfile.TemporaryDirectory() as d:
        out = Path(args.keep or d)
        out.mkdir(parents=True, exist_ok=True)
        walls = {name: run({**base, "search": {**base["search"], "scheduler": scheduler}},
                           args.data, out, name)
                 for name, scheduler in (("asha", "asha"), ("full", "none"))}
        report(out, walls)


def report(out: Path, walls: dict) -> None:
    """Both runs' figures, the per-config table, the synchronous replay and the RESULT line."""
    design = yaml.safe_load((out / "asha.yaml").read_text())
    search, params = design["search"], design["params"]
    rung_metric = search.get("rung_metric") or design.get("metric", "val_accuracy")
    (asha, asha_trials), (full, full_trials) = load(out, "asha"), load(out, "full")
    walls = {"asha": asha["wall_seconds"], "full": full["wall_seconds"], **walls}
    for name, s, wall in (("ASHA", asha, walls["asha"]), ("no early stopping", full, walls["full"])):
        print(f"{name:>18}: {s['total_epochs']} epochs, best PublicTest "
              f"{s['best_public_test_accuracy']:.4f}, {s['trials_stopped_early']} stopped early, "
              f"{wall:.0f} s")
    # The same config in both runs (the sampler's seeded proposals) lines up on its config columns.
    keys = [c for c in full_trials.columns if c.startswith("config/")]
    side = full_trials[keys + ["best_val_accuracy", "epochs"]].merge(
        asha_trials[keys + ["best_val_accuracy", "epochs"]], on=keys, how="left",
        suffixes=("_full", "_asha"))
    short = {c: c.removeprefix("config/") for c in keys}
    varying = [c for c in keys if side[c].nunique() > 1]
    print(side.rename(columns=short)[[short[c] for c in varying] + [
        "best_val_accuracy_full", "epochs_full", "best_val_accuracy_asha", "epochs_asha"]]
          .sort_values("best_val_accuracy_full", ascending=False).to_string(index=False))
    matched = int(side["epochs_asha"].notna().sum())  # all of them with --sampler random/qmc
    print(f"configs proposed by both runs: {matched} of {len(side)}")
    sync_epochs, sync_best = replay_synchronous_halving(
        curves(out / "full", full_trials["trial_id"]), int(params["epochs"]),
        int(search["grace_period"]),
        int(search["reduction_factor"]), rung_metric)
    print(f"synchronous successive halving, same rungs, replayed over the full run's curves: "
          f"{sync_epochs} epochs, best PublicTest {sync_best:.4f}")
    ratio = asha["total_epochs"] / full["total_epochs"]
    gap = (full["best_public_test_accuracy"] - asha["best_public_test_accuracy"]) * 100
    print(f"RESULT sampler={search['sampler']} trials={search['num_samples']} "
          f"epochs={params['epochs']} batch={params['batch_size']} grace={search['grace_period']} "
          f"rf={search['reduction_factor']} rung_metric={rung_metric} "
          f"asha_epochs={asha['total_epochs']} full_epochs={full['total_epochs']} "
          f"epoch_ratio={ratio:.3f} matched={matched} "
          f"asha_best={asha['best_public_test_accuracy']:.4f} "
          f"full_best={full['best_public_test_accuracy']:.4f} gap_pt={gap:.2f} "
          f"sync_sh_epochs={sync_epochs} sync_sh_ratio={sync_epochs / full['total_epochs']:.3f} "
          f"sync_sh_gap_pt={(full['best_public_test_accuracy'] - sync_best) * 100:.2f} "
          f"asha_wall_s={walls['asha']:.0f} full_wall_s={walls['full']:.0f}")


if __name__ == "__main__":
    main()
