"""Does ASHA earn its keep? The same space, the same sampler seed, with ASHA and without early
stopping, on the small real sample: total epochs consumed and the best PublicTest accuracy of each.

    python bench/bench_asha.py                                   # 12 trials x 8 epochs, rungs 1, 4
    python bench/bench_asha.py --trials 16 --epochs 12 --rung-metric train_loss --sampler random
    # the issue's target (~95 min on 2 cores):
    python bench/bench_asha.py --trials 64 --epochs 12 --rung-metric train_loss --sampler random --keep /tmp/asha-64
    python bench/bench_asha.py --analyse /tmp/asha-64            # its figures again, no training
    # another ASHA design against the same no-early-stopping run (only ASHA trains, ~25 min):
    python bench/bench_asha.py --trials 64 --epochs 12 --rung-metric train_loss --sampler random --reduction-factor 3 --full-from /tmp/asha-64 --keep /tmp/asha-64-rf3

The space is the smoke space (resnet10t, lr 1e-4..3e-2, AdamW or SGD, weight decay, dropout) with
`--epochs` epochs a trial at batch `--batch-size`, two trials at a time on one CPU each.
Per-trial training is seeded, so a config that both runs propose trains identically in both; the
table at the end shows, for each config of the full-budget run, how far ASHA let it go.

With TPE (the default) the two runs part ways after TPE's startup trials: what TPE learns from a
pruned trial differs from what it learns from a finished one, so the comparison mixes ASHA's
savings with the sampler's luck. `--sampler random` (or `qmc`) proposes the same configurations in
the same order in both runs, whatever the scheduler does: the controlled experiment, where the only
difference is whether ASHA stops trials, and the gap says whether it stopped the best one.

Both runs kept (`--keep DIR`), the report replays over the full run's real curves (seeded: a trial
stopped at epoch e had exactly its first e epochs) synchronous successive halving, and Ray's own
ASHA rule in the real arrival order (a check: it must spend what the run spent) and in 200 random
orders: one ASHA run is one draw of who reaches a rung first.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import yaml

from search.experiment_folder import ExperimentFolder
from search.scheduler import read_rungs
from search.space import RUNG_METRICS

REPO = Path(__file__).resolve().parents[1]
# The target: ASHA within 0.5 pt of the full-budget best on <= 35% of its epochs.
TARGET_EPOCH_RATIO, TARGET_GAP_PT = 0.35, 0.5
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
    folder = ExperimentFolder(out / name)
    return folder.read_summary(), folder.read_trials()


def curves(experiment: Path, trial_ids) -> dict[str, pd.DataFrame]:
    """Each trial's per-epoch results (progress.csv), by trial id, indexed by epoch."""
    return {tid: df.set_index("training_iteration")
            for tid, df in ExperimentFolder(experiment).progress(trial_ids).items()}


def larger_is_better(rung_metric: str) -> int:
    """+1 or -1: multiplied into a rung value so that larger is better (Ray's metric_op)."""
    return 1 if RUNG_METRICS[rung_metric] == "max" else -1


def outcome(full: dict[str, pd.DataFrame], stopped_at: dict[str, int]) -> tuple[int, float]:
    """Epochs spent and best PublicTest accuracy seen when each trial stops at ``stopped_at``:
    training is seeded, so a trial stopped at epoch e has exactly the full run's first e epochs."""
    best = max(full[t].loc[:e, "val_accuracy"].max() for t, e in stopped_at.items())
    return sum(stopped_at.values()), float(best)


def replay_synchronous_halving(full: dict[str, pd.DataFrame], max_t: int, grace: int, rf: int,
                               rung_metric: str) -> tuple[int, float]:
    """What synchronous successive halving (every trial reaches a rung before any is promoted,
    then the best 1/rf go on) would have spent and found, replayed over the full-budget run's
    real curves. The contrast with the real asynchronous run is ASHA's early-trial bias: with few
    records at a rung, ASHA promotes whoever arrives early. Returns (epochs, best accuracy)."""
    sign = larger_is_better(rung_metric)
    alive, stopped_at, rung = list(full), {}, grace
    while rung < max_t and len(alive) > 1:
        ranked = sorted(alive, key=lambda t: sign * full[t].loc[rung, rung_metric], reverse=True)
        keep = max(1, -(-len(ranked) // rf))  # ceil: ASHA's top 1/rf
        stopped_at.update({t: rung for t in ranked[keep:]})
        alive, rung = ranked[:keep], rung * rf
    stopped_at.update({t: max_t for t in alive})
    return outcome(full, stopped_at)


def replay_asha(full: dict[str, pd.DataFrame], order: list[str], max_t: int, grace: int, rf: int,
                rung_metric: str, concurrent: int) -> tuple[int, float]:
    """Ray's own ASHA rule (its ``_Bracket``, what ``ASHAScheduler`` asks at every result), fed
    the full run's real curves with the trials started in ``order``, ``concurrent`` at a time,
    every epoch equally long. ASHA's decisions depend on who reaches a rung first, and one real
    run is one draw of that order; replaying many orders shows where the draw sits. Returns
    (epochs, best accuracy)."""
    from ray.tune.schedulers.async_hyperband import _Bracket  # private, but the exact rule

    sign = larger_is_better(rung_metric)
    bracket = _Bracket(grace, max_t, rf, s=0)
    waiting, running, stopped_at, now = list(enumerate(order)), [], {}, 0
    while waiting or running:
        while waiting and len(running) < concurrent:
            running.append((now + 1, *waiting.pop(0), 1))  # (finishes at, start no., trial, epoch)
        running.sort()  # ties: the earlier-started trial reports first
        now, start, trial, epoch = running.pop(0)
        value = sign * full[trial].loc[epoch, rung_metric]
        if bracket.on_result(SimpleNamespace(trial_id=trial), epoch, value) == "STOP" \
                or epoch >= max_t:
            stopped_at[trial] = epoch
        else:
            running.append((now + 1, start, trial, epoch + 1))
    return outcome(full, stopped_at)


def bench_space(args) -> dict:
    space = yaml.safe_load((REPO / "spaces" / "smoke.yaml").read_text())
    space["params"].update(epochs=args.epochs, batch_size=args.batch_size)
    space["retrain"] = {"epochs": 1, "seeds": [0], "tta": False}
    space["resources"] = {"cpus_per_trial": args.cpus_per_trial}
    space["search"].update(sampler=args.sampler, num_samples=args.trials, seed=args.seed,
                           max_concurrent=args.concurrent,
                           asha={"grace_period": args.grace_period,
                                 "reduction_factor": args.reduction_factor,
                                 "rung_metric": args.rung_metric},
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
    p.add_argument("--full-from", metavar="DIR",
                   help="reuse the no-early-stopping run of a folder that --keep kept (it does "
                        "not depend on grace, reduction or rung metric); only ASHA trains")
    p.add_argument("--analyse", metavar="DIR",
                   help="train nothing: print the figures of a folder that --keep kept")
    args = p.parse_args()
    if args.analyse:
        return report(Path(args.analyse), {})
    base = bench_space(args)
    with tempfile.TemporaryDirectory() as d:
        out = Path(args.keep or d)
        out.mkdir(parents=True, exist_ok=True)
        if args.full_from:  # checked before any training starts
            reuse_full_run(Path(args.full_from), out, with_scheduler(base, "none"), args.data)
        walls = {name: run(with_scheduler(base, scheduler), args.data, out, name)
                 for name, scheduler in (("asha", "asha"), ("full", "none"))
                 if not (name == "full" and args.full_from)}
        report(out, walls)


def with_scheduler(space: dict, scheduler: str) -> dict:
    """The space with ASHA (as designed) or without early stopping (``search.asha: false``)."""
    if scheduler == "asha":
        return space
    return {**space, "search": {**space["search"], "asha": False}}


# What ASHA alone reads (and, in folders kept before search.asha, its keys then): a run without
# early stopping is the same run whatever these are.
ASHA_ONLY_KEYS = ("asha", "scheduler", "grace_period", "reduction_factor", "rung_metric")


def asha_settings(search: dict) -> dict:
    """A kept design's ASHA settings, in either schema."""
    return search.get("asha") or {k: search[k] for k in ASHA_ONLY_KEYS[2:] if k in search}


def reuse_full_run(source: Path, out: Path, full_space: dict, data: str) -> None:
    """Copy the no-early-stopping run kept in ``source`` into ``out``, after checking it is the
    run this design would train: the same space (ASHA's own settings aside) and the same data."""
    kept = source / "full.yaml"
    if not kept.is_file():
        sys.exit(f"--full-from {source}: no full.yaml there (a folder that --keep kept has one)")
    def without_asha_keys(space: dict) -> dict:
        return {**space, "search": {k: v for k, v in space["search"].items()
                                    if k not in ASHA_ONLY_KEYS}}

    theirs = without_asha_keys(yaml.safe_load(kept.read_text()))
    ours = without_asha_keys(full_space)
    differ = sorted(f"{part}.{k}" for part in ("params", "search", "resources", "retrain")
                    for k in set(theirs.get(part, {})) | set(ours.get(part, {}))
                    if theirs.get(part, {}).get(k) != ours.get(part, {}).get(k))
    kept_data = ExperimentFolder(source / "full").read_run()["data"]
    if Path(kept_data).resolve() != Path(data).resolve():
        differ.append(f"data ({kept_data})")
    if differ:
        sys.exit(f"--full-from {source}: its run differs from this design in {', '.join(differ)}")
    if source.resolve() != out.resolve():
        shutil.copytree(source / "full", out / "full", dirs_exist_ok=True)
        shutil.copy(kept, out / "full.yaml")


def report(out: Path, walls: dict) -> None:
    """Both runs' figures, the per-config table, the synchronous replay and the RESULT line."""
    design = yaml.safe_load((out / "asha.yaml").read_text())
    search, params = design["search"], design["params"]
    asha_design = asha_settings(search)
    objective = design.get("objectives", design.get("metric", "val_accuracy"))
    rung_metric = asha_design.get("rung_metric") or \
        (objective if isinstance(objective, str) else next(iter(objective)))
    (asha, asha_trials), (full, full_trials) = load(out, "asha"), load(out, "full")
    walls = {"asha": asha["wall_seconds"], "full": full["wall_seconds"], **walls}
    for name, s, wall in (("ASHA", asha, walls["asha"]), ("no early stopping", full, walls["full"])):
        print(f"{name:>18}: {s['total_epochs']} epochs, best PublicTest "
              f"{s['best_public_test_accuracy']:.4f}, {s['trials_stopped_early']} stopped early, "
              f"{wall:.0f} s")
    # The same config in both runs (the sampler's seeded proposals) lines up on its config columns.
    keys = [c for c in full_trials.columns if c.startswith("config/")]
    side = full_trials[keys + ["trial_id", "best_val_accuracy", "epochs"]].merge(
        asha_trials[keys + ["trial_id", "best_val_accuracy", "epochs"]], on=keys, how="left",
        suffixes=("_full", "_asha"))
    short = {c: c.removeprefix("config/") for c in keys}
    varying = [c for c in keys if side[c].nunique() > 1]
    print(side.rename(columns=short)[[short[c] for c in varying] + [
        "best_val_accuracy_full", "epochs_full", "best_val_accuracy_asha", "epochs_asha"]]
          .sort_values("best_val_accuracy_full", ascending=False).to_string(index=False))
    matched = int(side["epochs_asha"].notna().sum())  # all of them with --sampler random/qmc
    print(f"configs proposed by both runs: {matched} of {len(side)}")

    full_curves = curves(out / "full", full_trials["trial_id"])
    rungs = (int(params["epochs"]), int(asha_design["grace_period"]),
             int(asha_design["reduction_factor"]), rung_metric)
    sync_epochs, sync_best = replay_synchronous_halving(full_curves, *rungs)
    print(f"synchronous successive halving, same rungs, replayed over the full run's curves: "
          f"{sync_epochs} epochs, best PublicTest {sync_best:.4f}")
    order_replays = replay_orders(out, side, full_curves, rungs, int(search["max_concurrent"]),
                                  full["total_epochs"], full["best_public_test_accuracy"],
                                  every_config_matched=matched == len(side))

    ratio = asha["total_epochs"] / full["total_epochs"]
    gap = (full["best_public_test_accuracy"] - asha["best_public_test_accuracy"]) * 100
    print(f"RESULT sampler={search['sampler']} trials={search['num_samples']} "
          f"epochs={params['epochs']} batch={params['batch_size']} grace={asha_design['grace_period']} "
          f"rf={asha_design['reduction_factor']} rung_metric={rung_metric} "
          f"asha_epochs={asha['total_epochs']} full_epochs={full['total_epochs']} "
          f"epoch_ratio={ratio:.3f} matched={matched} "
          f"asha_best={asha['best_public_test_accuracy']:.4f} "
          f"full_best={full['best_public_test_accuracy']:.4f} gap_pt={gap:.2f} "
          f"sync_sh_epochs={sync_epochs} sync_sh_ratio={sync_epochs / full['total_epochs']:.3f} "
          f"sync_sh_gap_pt={(full['best_public_test_accuracy'] - sync_best) * 100:.2f} "
          f"{order_replays} "
          f"asha_wall_s={walls['asha']:.0f} full_wall_s={walls['full']:.0f}")


def replay_orders(out: Path, side: pd.DataFrame, full_curves: dict, rungs: tuple,
                  concurrent: int, full_epochs: int, full_best: float,
                  every_config_matched: bool, orders: int = 200) -> str:
    """Ray's ASHA rule replayed over the full run's curves: first in the real ASHA run's order
    (a check of the replay: it must spend what the run spent), then in ``orders`` random orders
    (how often the design meets the target, not just in the one order that was run). Prints
    both; returns the RESULT fields."""
    fields = []
    if every_config_matched:  # random/qmc: the ASHA run's trials are the full run's configs
        to_full = dict(zip(side["trial_id_asha"], side["trial_id_full"]))
        saved = read_rungs(ExperimentFolder(out / "asha").asha_rungs)
        first_rung = saved[0][-1][1]  # rungs are stored highest first; dicts keep arrival order
        real_epochs, real_best = replay_asha(full_curves, [to_full[t] for t in first_rung],
                                             *rungs, concurrent)
        print(f"ASHA's rule replayed in the real run's arrival order: {real_epochs} epochs, "
              f"best PublicTest {real_best:.4f}")
        fields.append(f"replay_real_order_epochs={real_epochs}")
    rng = np.random.default_rng(0)
    spent = np.array([replay_asha(full_curves, list(rng.permutation(list(full_curves))),
                                  *rungs, concurrent) for _ in range(orders)])
    ratios, gaps = spent[:, 0] / full_epochs, (full_best - spent[:, 1]) * 100
    meeting = int(((ratios <= TARGET_EPOCH_RATIO) & (gaps <= TARGET_GAP_PT)).sum())
    print(f"ASHA's rule replayed in {orders} random arrival orders: epoch ratio median "
          f"{np.median(ratios):.3f} (p10 {np.quantile(ratios, 0.1):.3f}, p90 "
          f"{np.quantile(ratios, 0.9):.3f}), gap median {np.median(gaps):.2f} pt, worst "
          f"{gaps.max():.2f} pt; within the target (<= {TARGET_EPOCH_RATIO:.0%} of the epochs, "
          f"<= {TARGET_GAP_PT} pt) in {meeting} of the {orders} orders")
    fields += [f"replay_orders={orders}", f"replay_ratio_median={np.median(ratios):.3f}",
               f"replay_ratio_p90={np.quantile(ratios, 0.9):.3f}",
               f"replay_gap_pt_median={np.median(gaps):.2f}", f"replay_meet={meeting / orders:.3f}"]
    return " ".join(fields)


if __name__ == "__main__":
    main()
