"""Record real learning curves once, for bench/bench_scale.py's surrogate trials.

Trains a small grid of configs (lr x dropout x crop, resnet10t, the cpu.yaml recipe otherwise) on
the small FER2013 sample with ``fer_models.fit``, two at a time on one thread each, and writes
every epoch's metrics (the dict a real trial reports) to ``bench/curves.json``: a few KB, no
pixels. The surrogate replays them, so the scale benchmark's accuracies and ASHA decisions are
those of this project's real trials, while its trials only sleep.

    .venv/bin/python bench/record_curves.py --data ../shared/data/fer2013-small.csv.gz
"""
from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

GRID = {"lr": [3e-4, 1e-3, 3e-3, 1e-2], "dropout": [0.0, 0.3], "crop": [0, 40]}
BASE = dict(backbone="resnet10t", input_size=48, batch_size=128, optimizer="adamw",
            scheduler="cosine", warmup_epochs=0.5, weight_decay=0.05, ema_decay=0.999,
            hflip=0.5, translate=0.1, rotate=15.0, scale=0.15, erase_prob=0.25, seed=0)
# What a trial reports that the driver reads; wall-clock fields are left out (they are this
# machine's, not the replay's).
KEPT = ("epoch", "train_loss", "train_accuracy", "lr", "val_loss", "val_accuracy",
        "val_macro_f1", "val_accuracy_raw", "val_accuracy_ema", "ema_selected", "final_epoch")


def grid_configs(epochs: int) -> list[dict]:
    keys = list(GRID)
    return [{**BASE, "epochs": epochs, **dict(zip(keys, values))}
            for values in itertools.product(*GRID.values())]


def train_one(args: tuple[dict, str]) -> dict:
    config, data_path = args
    import torch

    from fer_models import TrainConfig, fit, load_fer2013

    torch.set_num_threads(1)
    data = load_fer2013(data_path).without_private_test()
    t0 = time.time()
    result = fit(TrainConfig.from_dict({**config, "threads": 1}), data)
    epochs = [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in m.items() if k in KEPT}
              for m in result.history]
    searched = {k: config[k] for k in GRID}
    print(f"{searched}: val_accuracy by epoch "
          f"{[e['val_accuracy'] for e in epochs]} ({time.time() - t0:.0f} s)", flush=True)
    return {"config": searched, "epochs": epochs}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(os.environ.get("FER_DATA_DIR")
                                                   or HERE.parents[1] / "shared" / "data")
                                                   / "fer2013-small.csv.gz"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "curves.json"))
    args = parser.parse_args(argv)
    from fer_models import load_fer2013

    load_fer2013(args.data)  # parse once and cache, before the workers read it
    configs = grid_configs(args.epochs)
    t0 = time.time()
    with mp.get_context("spawn").Pool(args.processes) as pool:
        curves = pool.map(train_one, [(c, args.data) for c in configs], chunksize=1)
    record = {
        "made_by": f"bench/record_curves.py --data {Path(args.data).name} --epochs {args.epochs}",
        "data": Path(args.data).name, "base": BASE, "grid": GRID, "curves": curves,
        "minutes": round((time.time() - t0) / 60, 1),
    }
    Path(args.out).write_text(json.dumps(record, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {args.out}: {len(curves)} curves x {args.epochs} epochs "
          f"in {record['minutes']} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
