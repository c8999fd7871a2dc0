"""Ray Tune + Optuna + ASHA cost per trial, with no training in the trials.

Runs N trials of a trial function that only reports its epochs (same searcher, scheduler,
object-store dataset, checkpointing and imports as a real search) twice in one process: with
actor reuse (what the search does) and with a fresh process per trial; then the same trials in a
plain Python loop (Optuna ask/tell, the same reports). Prints the difference per trial.

    python bench/bench_scheduling.py --trials 20 --epochs 3

RESULT keys: overhead_s_per_trial (actor reuse, the search's setting; target <= 1 s),
overhead_s_per_trial_no_reuse, tune_s_per_trial, loop_s_per_trial, ray_init_s.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(os.environ.get("FER_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data") / "fer2013-small.csv.gz"


def noop_trial(config: dict, data, threads: int = 1, checkpoint: bool = True) -> None:
    """Reports like a real trial (with a small checkpoint each epoch), trains nothing."""
    import torch
    from ray import tune

    import fer_models.train  # noqa: F401  (what a real trial imports: torch, timm, the trainer)

    for epoch in range(1, int(config["epochs"]) + 1):
        metrics = {"epoch": epoch, "val_accuracy": float(config["lr"]) * epoch, "trial_finished":
                   epoch == int(config["epochs"]), "train_rows": len(data.train)}
        if checkpoint:
            with tempfile.TemporaryDirectory() as d:
                torch.save({"epoch": epoch}, Path(d) / "state.pt")
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report(metrics)


def plain_loop(space, trials: int) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from search.samplers import create_sampler

    start = time.perf_counter()
    study = optuna.create_study(direction="maximize", sampler=create_sampler("tpe", 0))
    for _ in range(trials):
        t = study.ask()
        config = {**space.suggest(t), **t.params}
        for epoch in range(1, int(config["epochs"]) + 1):
            t.report(float(config["lr"]) * epoch, epoch)
        study.tell(t, float(config["lr"]) * int(config["epochs"]))
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--data", default=str(DATA))
    args = p.parse_args()

    import ray

    from fer_models.data import load_fer2013
    from search.experiment import build_tuner
    from search.space import load_space

    space = load_space(Path(__file__).resolve().parents[1] / "spaces" / "smoke.yaml")
    space.search.num_samples = args.trials
    space.params["epochs"].value = args.epochs
    data = load_fer2013(args.data)

    t0 = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - t0
    tune_s = {}
    for reuse in (True, False):  # side by side in one Ray session
        with tempfile.TemporaryDirectory() as out:
            exp = Path(out) / "sched"
            exp.mkdir()
            tuner = build_tuner(space, data, exp, {"cpu": 1, "gpu": 0}, verbose=0,
                                trial_fn=noop_trial, reuse_actors=reuse)
            t0 = time.perf_counter()
            results = tuner.fit()
            tune_s[reuse] = time.perf_counter() - t0
            errors = [r.error for r in results if r.error]
            if errors:
                raise SystemExit(f"{len(errors)} trial(s) failed: {errors[0]}")
    ray.shutdown()
    loop_s = plain_loop(space, args.trials)
    n = args.trials
    overhead = {reuse: (t - loop_s) / n for reuse, t in tune_s.items()}
    print(f"ray.init: {init_s:.2f} s")
    for reuse, label in ((True, "actor reuse (the search's setting)"), (False, "a new process per trial")):
        print(f"{n} trials x {args.epochs} epochs through Ray Tune + Optuna + ASHA, {label}: "
              f"{tune_s[reuse]:.2f} s ({tune_s[reuse] / n:.3f} s/trial)")
    print(f"the same trials in a plain loop: {loop_s:.2f} s ({loop_s / n:.4f} s/trial)")
    print(f"RESULT trials={n} epochs={args.epochs} ray_init_s={init_s:.2f} "
          f"tune_s_per_trial={tune_s[True] / n:.3f} loop_s_per_trial={loop_s / n:.4f} "
          f"overhead_s_per_trial={overhead[True]:.3f} "
          f"overhead_s_per_trial_no_reuse={overhead[False]:.3f}")


if __name__ == "__main__":
    main()
