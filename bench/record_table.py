"""Record a FER tabular benchmark: complete learning curves of many configurations of a space.

Like LCBench or YAHPO Gym's tables, recorded once with this project's own trainer: each
configuration of ``--space`` (proposed by Optuna's QMC sampler through the space's own
define-by-run function, the space's default configuration first) is trained for ``--epochs``
epochs at a fidelity this CPU can afford: a stratified subset of Training (``--train-size``) and a
fixed stratified half of PublicTest (``--public-size``) for validation after every epoch. Each
line of the output (JSON Lines, appended as configs finish, so a stopped recording keeps what it
has and ``--resume`` extends it) holds one config and its per-epoch PublicTest accuracy and loss,
training loss and seconds: metrics only, no pixels.

    .venv/bin/python bench/record_table.py --configs 64 --out bench/fer-table.jsonl
    .venv/bin/python bench/record_table.py --configs 96 --out bench/fer-table.jsonl --resume
    # the same configs on the full data, to check how the table's fidelity ranks them, then
    # their Spearman correlation (no training):
    .venv/bin/python bench/record_table.py --rerun-from bench/fer-table.jsonl --pick 6 \\
        --train-size 0 --public-size 0 --epochs 10 --out bench/fer-table-full.jsonl
    .venv/bin/python bench/record_table.py --compare bench/fer-table.jsonl bench/fer-table-full.jsonl
    # the table's best few on the full data too (--resume skips those already there):
    .venv/bin/python bench/record_table.py --rerun-from bench/fer-table.jsonl --top 7 --resume \\
        --backbones resnet10t resnet18 --train-size 0 --public-size 0 --epochs 10 \\
        --out bench/fer-table-full.jsonl
    # an ablation at both fidelities: config 0 with EMA, config 30 without, and both unchanged
    .venv/bin/python bench/record_table.py --rerun-from bench/fer-table.jsonl --rows 0 30 \\
        --set 0:ema_decay=0.999 30:ema_decay=0.0 --train-size 3000 --public-size 1500 \\
        --epochs 10 --out bench/fer-ablation-ema.jsonl

The schedule (cosine) spans ``--epochs``, so epoch e of a curve is not a run of e epochs: the
replay reads the curve as a trial that ASHA or Hyperband stopped at epoch e, which is what it is.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA_DIR = Path(os.environ.get("FER_DATA_DIR") or REPO.parent / "shared" / "data")
KEPT = ("epoch", "val_accuracy", "val_loss", "train_loss", "seconds", "images_per_s")


def propose(space_path: str, n: int, seed: int) -> list[dict]:
    """The space's default configuration, then ``n - 1`` QMC (Sobol) proposals of its sampler-free
    define-by-run: every searched value, as a search of this space would propose them."""
    import optuna

    from search.space import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(space_path)
    study = optuna.create_study(sampler=optuna.samplers.QMCSampler(
        seed=seed, scramble=True, warn_independent_sampling=False), direction="maximize")
    study.enqueue_trial(space.default_config())
    configs = []
    for _ in range(n):
        trial = study.ask()
        fixed = space.suggest(trial)
        configs.append({**fixed, **trial.params})
        study.tell(trial, 0.0)
    return configs


def compare(low_path: str, full_path: str) -> int:
    """Print each config's final PublicTest accuracy in both tables and their Spearman rho."""
    from scipy.stats import spearmanr

    def finals(path):
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        return {r["index"]: r["epochs"][-1]["val_accuracy"] for r in rows if r["epochs"]}

    low, full = finals(low_path), finals(full_path)
    both = sorted(set(low) & set(full), key=lambda i: low[i])
    print("| config | final accuracy, table fidelity | final accuracy, full data |")
    print("|---|---|---|")
    for i in both:
        print(f"| {i} | {low[i]:.4f} | {full[i]:.4f} |")
    rho = spearmanr([low[i] for i in both], [full[i] for i in both]).statistic
    print(f"Spearman rho over {len(both)} configs: {rho:.2f}")
    return 0


def stratified(labels, size: int, seed: int):
    """Indices of a class-stratified sample of ``size`` (all when size is 0 or too large)."""
    import numpy as np

    if not size or size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        take = max(1, round(size * len(idx) / len(labels)))
        picked.append(rng.choice(idx, size=min(take, len(idx)), replace=False))
    return np.sort(np.concatenate(picked))


def train_one(job: dict) -> dict:
    import torch

    from fer_models import FER2013, Split, TrainConfig, fit, load_fer2013

    torch.set_num_threads(1)
    data = load_fer2013(job["data"]).without_private_test()
    tr = stratified(data.train.labels, job["train_size"], seed=0)
    pu = stratified(data.public_test.labels, job["public_size"], seed=1)
    subset = FER2013(Split(data.train.images[tr], data.train.labels[tr]),
                     Split(data.public_test.images[pu], data.public_test.labels[pu]), None, data.source)
    cfg = TrainConfig.from_dict({**job["config"], "epochs": job["epochs"], "threads": 1,
                                 "device": "cpu", "seed": 0})
    t0 = time.time()
    try:
        history = fit(cfg, subset).history
        error = ""
    except Exception as e:  # a config that diverges is a row of the table too
        history, error = [], f"{type(e).__name__}: {e}"
    epochs = [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in m.items() if k in KEPT}
              for m in history]
    return {"index": job["index"], "config": job["config"], "overrides": job["overrides"],
            "epochs": epochs, "error": error,
            "fidelity": {"train_size": len(tr), "public_size": len(pu), "epochs": job["epochs"],
                         "data": Path(job["data"]).name},
            "seconds": round(time.time() - t0, 1)}


def parse_overrides(items: list[str]) -> dict[int, dict]:
    """``["0:ema_decay=0.999", ...]`` -> ``{0: {"ema_decay": 0.999}}`` (values read as YAML)."""
    import yaml

    out: dict[int, dict] = {}
    for item in items:
        index, sep, assignment = item.partition(":")
        key, eq, value = assignment.partition("=")
        if not (sep and eq and index.strip().isdigit() and key.strip()):
            raise ValueError(f"{item!r} is not I:KEY=VALUE")
        out.setdefault(int(index), {})[key.strip()] = yaml.safe_load(value)
    return out


def run_key(index: int, overrides: dict | None) -> tuple[int, str]:
    """What --resume counts as done: a config with the same overrides (an ablation of config I
    is not config I)."""
    return index, json.dumps(overrides or {}, sort_keys=True)


def main(argv=None) -> int:
    from fer_models.cli import positive_int

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default=str(REPO / "spaces" / "wide.yaml"))
    parser.add_argument("--data", default=str(DATA_DIR / "fer2013.csv.gz"))
    parser.add_argument("--configs", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--train-size", type=int, default=6000, help="0: all of Training")
    parser.add_argument("--public-size", type=int, default=1800, help="0: all of PublicTest")
    parser.add_argument("--seed", type=int, default=0, help="the QMC sampler's seed")
    parser.add_argument("--processes", type=int, default=2, help="1-thread trainings at once")
    parser.add_argument("--out", default=str(REPO / "bench" / "fer-table.jsonl"))
    parser.add_argument("--resume", action="store_true", help="skip configs already in --out")
    parser.add_argument("--rerun-from", help="train configs of this table instead of proposing")
    parser.add_argument("--pick", type=positive_int, default=None,
                        help="--rerun-from: this many configs spread over its final accuracies "
                             "(default 6)")
    parser.add_argument("--top", type=positive_int, default=None,
                        help="--rerun-from: its this many best configs by final accuracy, not "
                             "--pick spread ones (does the fidelity order the top few?)")
    parser.add_argument("--compare", nargs=2, metavar=("LOW", "FULL"),
                        help="no training: Spearman correlation of the configs both tables hold, "
                             "final PublicTest accuracy at LOW's fidelity against FULL's")
    parser.add_argument("--rows", type=int, nargs="+",
                        help="--rerun-from: these configs (their index in the table)")
    parser.add_argument("--set", nargs="+", default=[], metavar="I:KEY=VALUE",
                        help="--rerun-from: change one value of config I before training it (an "
                             "ablation: e.g. 0:ema_decay=0.999); the row records it as overrides")
    parser.add_argument("--backbones", nargs="+",
                        help="--rerun-from: pick among configs of these backbones only (the "
                             "full data makes a slow backbone's 10 epochs take half an hour)")
    args = parser.parse_args(argv)
    if sum(bool(x) for x in (args.top, args.pick, args.rows)) > 1:
        parser.error("--top, --pick and --rows choose the configs to rerun three ways: give one")
    try:
        overrides = parse_overrides(args.set)
    except ValueError as e:
        parser.error(f"--set: {e}")
    if args.compare:
        return compare(*args.compare)
    if args.rerun_from:
        rows = [json.loads(line) for line in Path(args.rerun_from).read_text().splitlines() if line]
        rows = sorted((r for r in rows if r["epochs"] and (not args.backbones or
                                                          r["config"]["backbone"] in args.backbones)),
                      key=lambda r: r["epochs"][-1]["val_accuracy"])
        if args.rows:
            by_index = {r["index"]: r for r in rows}
            missing = [i for i in args.rows if i not in by_index]
            if missing:
                parser.error(f"--rows: {missing} not among {args.rerun_from}'s trained configs")
            chosen = [by_index[i] for i in args.rows]
        elif args.top:
            chosen = rows[-args.top:]
        else:
            pick = args.pick or 6
            step = max(1, (len(rows) - 1) / max(pick - 1, 1))
            chosen = [rows[min(round(i * step), len(rows) - 1)] for i in range(pick)]
        configs = {r["index"]: {**r["config"], **overrides.get(r["index"], {})} for r in chosen}
    else:
        configs = dict(enumerate(propose(args.space, args.configs, args.seed)))
    out = Path(args.out)
    done = set()
    if args.resume and out.exists():
        done = {run_key(row["index"], row.get("overrides"))
                for row in map(json.loads, filter(None, out.read_text().splitlines()))}
    elif out.exists():
        sys.exit(f"error: {out} exists; --resume extends it, or give another --out")
    jobs = [{"index": i, "config": c, "data": args.data, "epochs": args.epochs,
             "train_size": args.train_size, "public_size": args.public_size,
             "overrides": overrides.get(i, {})}
            for i, c in configs.items() if run_key(i, overrides.get(i)) not in done]
    print(f"{len(jobs)} configs to train ({len(done)} already in {out}), {args.epochs} epochs, "
          f"train {args.train_size or 'all'}, PublicTest {args.public_size or 'all'}, "
          f"{args.processes} at a time", flush=True)
    from fer_models import load_fer2013

    load_fer2013(args.data)  # parse once and cache before the workers read it
    t0 = time.time()
    with mp.get_context("spawn").Pool(args.processes) as pool, out.open("a") as f:
        for n, row in enumerate(pool.imap_unordered(train_one, jobs), 1):
            f.write(json.dumps(row, separators=(",", ":")) + "\n")
            f.flush()
            last = row["epochs"][-1]["val_accuracy"] if row["epochs"] else float("nan")
            best = max((e["val_accuracy"] for e in row["epochs"]), default=float("nan"))
            print(f"[{n}/{len(jobs)} {(time.time() - t0) / 60:.1f} min] config {row['index']}: "
                  f"last {last:.4f} best {best:.4f} in {row['seconds']:.0f} s "
                  f"{row['error'] or ''}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
