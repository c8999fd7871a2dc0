"""Several trials packed on one device: aggregate training img/s with 1, 2, 4 ... trainings at once.

Each training is a Ray task asking for 1/k of a GPU (``num_gpus=1/k``, what ``resources:
trials_per_gpu: k`` gives a search) or, on a CPU-only machine, 1/k of the CPUs with that many torch
threads. Every task runs ``fer_models.train.train_one_epoch`` (the search's own step: batching,
on-device augmentation, the model) over Training images held on the device for ``--seconds``
after a warm-up; the aggregate is the sum of the tasks' img/s, measured over the same wall window.

    python bench/bench_packing.py --backbone resnet18 --packs 1 2 4          # a GPU machine
    python bench/bench_packing.py --backbone resnet10t --packs 1 2 --seconds 20  # this 2-core CPU

RESULT keys: model, device, img_s_k<k> (aggregate img/s with k packed), gain_k<k> (vs k=1).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(os.environ.get("FER_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")


def train_for(config: dict, images, labels, seconds: float, threads: int, start_at: float) -> dict:
    """Train from ``start_at`` (a shared wall-clock time, after everyone's warm-up) for ``seconds``."""
    import torch

    from fer_models.config import TrainConfig
    from fer_models.train import build_model, build_optimizer, resolve_device, train_one_epoch

    torch.set_num_threads(threads)
    cfg = TrainConfig.from_dict({**config, "scheduler": "none"})
    device = resolve_device(cfg.device)
    model = build_model(cfg, device)  # as fit builds it (channels_last on CUDA)
    optimizer, _ = build_optimizer(cfg, model, steps_per_epoch=1)
    x = torch.from_numpy(images).to(device)
    y = torch.from_numpy(labels).to(device)
    g = torch.Generator().manual_seed(cfg.seed)
    train_one_epoch(model, optimizer, x[: cfg.batch_size * 3], y[: cfg.batch_size * 3], cfg, g)  # warm-up
    while time.time() < start_at:
        time.sleep(0.01)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        train_one_epoch(model, optimizer, x, y, cfg, g)  # ends with a device sync (loss.item)
        done += len(x) // cfg.batch_size * cfg.batch_size
    return {"img_s": done / (time.perf_counter() - t0)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--input-size", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--packs", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--seconds", type=float, default=20.0, help="timed window per pack size")
    p.add_argument("--images", type=int, default=4096, help="Training images per task (on device)")
    p.add_argument("--data", default=str(DATA / "fer2013-small.csv.gz"))
    args = p.parse_args()

    import ray
    import torch

    from fer_models.data import load_fer2013

    data = load_fer2013(args.data).train
    n = min(args.images, len(data))
    images, labels = data.images[:n], data.labels[:n]
    gpu = torch.cuda.is_available()
    ray.init(include_dashboard=False, log_to_driver=False)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    config = {"backbone": args.backbone, "input_size": args.input_size, "batch_size": args.batch_size,
              "device": "cuda" if gpu else "cpu"}
    device = torch.cuda.get_device_name(0) if gpu else f"cpu x{cpus}"
    agg = {}
    for k in args.packs:
        threads = max(1, cpus // k) if not gpu else max(1, min(4, cpus // k))
        opts = {"num_gpus": 1 / k, "num_cpus": threads} if gpu else {"num_cpus": threads}
        task = ray.remote(max_retries=0)(train_for).options(**opts)
        warmup_s = 25 if gpu else 15  # process start + imports + model build, before the window
        start_at = time.time() + warmup_s
        outs = ray.get([task.remote({**config, "seed": i}, images, labels, args.seconds, threads, start_at)
                        for i in range(k)])
        agg[k] = sum(o["img_s"] for o in outs)
        print(f"{k} packed ({opts}): " + ", ".join(f"{o['img_s']:.0f}" for o in outs)
              + f" img/s each, {agg[k]:.0f} img/s together", flush=True)
    ray.shutdown()
    base = agg[args.packs[0]]
    print(f"RESULT model={args.backbone} input={args.input_size} device={device.replace(' ', '_')} "
          + " ".join(f"img_s_k{k}={v:.0f}" for k, v in agg.items()) + " "
          + " ".join(f"gain_k{k}={v / base:.2f}" for k, v in agg.items()))


if __name__ == "__main__":
    main()
