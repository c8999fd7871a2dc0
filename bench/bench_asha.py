"""Does ASHA earn its keep? The same space, the same sampler seed, with ASHA and without early
stopping, on the small real sample: total epochs consumed and the best PublicTest accuracy of each.

    python bench/bench_asha.py --trials 12 --epochs 6
"""
from __future__ import annotations

import argparse
import os
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FER_DATA_DIR") or REPO.parent / "shared" / "data") / "fer2013-small.csv.gz"


def run(space: dict, data: str, out: Path, name: str) -> dict:
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "search.run", str(path), "--data", data, "--output",
                    str(out), "--name", name, "--verbose", "0"], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    summary = json.loads((out / name / "summary.json").read_text())
    summary["bench_wall_s"] = time.perf_counter() - t0
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=str(DATA))
    args = p.parse_args()
    base = yaml.safe_load((REPO / "spaces" / "smoke.yaml").read_text())
    base["params"]["epochs"] = args.epochs
    base["retrain"] = {"epochs": 1, "seeds": [0], "tta": False}
    base["search"].update(num_samples=args.trials, seed=args.seed, grace_period=1,
                          reduction_factor=3)
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        asha = run({**base, "search": {**base["search"], "scheduler": "asha"}}, args.data, out, "asha")
        full = run({**base, "search": {**base["search"], "scheduler": "none"}}, args.data, out, "full")
    for name, s in (("ASHA", asha), ("no early stopping", full)):
        print(f"{name:>18}: {s['total_epochs']} epochs, best PublicTest "
              f"{s['best_public_test_accuracy']:.4f}, {s['trials_stopped_early']} stopped early, "
              f"{s['bench_wall_s']:.0f} s")
    ratio = asha["total_epochs"] / full["total_epochs"]
    gap = (full["best_public_test_accuracy"] - asha["best_public_test_accuracy"]) * 100
    print(f"RESULT trials={args.trials} epochs={args.epochs} asha_epochs={asha['total_epochs']} "
          f"full_epochs={full['total_epochs']} epoch_ratio={ratio:.3f} "
          f"asha_best={asha['best_public_test_accuracy']:.4f} "
          f"full_best={full['best_public_test_accuracy']:.4f} gap_pt={gap:.2f}")


if __name__ == "__main__":
    main()
