"""CPU training-step speed of raw timm models in fp32, channels_last, bf16 autocast and both.

What decides a CPU-only search's throughput besides the model: whether oneDNN's NHWC kernels or
bf16 (fast only with AMX) help on this CPU. Random batches, AdamW, 2 threads by default.

    python bench/bench_cpu_modes.py
    python bench/bench_cpu_modes.py --models resnet10t:48:1 vgg16:48:3 --threads 2

RESULT keys: <model>_<mode>_img_s for mode in fp32, cl, bf16, cl_bf16.
"""
from __future__ import annotations

import argparse
import time

import timm
import torch

MODES = ("fp32", "cl", "bf16", "cl_bf16")


def images_per_s(name: str, size: int, chans: int, mode: str, steps: int, batch: int) -> float:
    model = timm.create_model(name, num_classes=7, in_chans=chans)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x, y = torch.randn(batch, chans, size, size), torch.randint(0, 7, (batch,))
    if mode.startswith("cl"):
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def step():
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode.endswith("bf16")):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet10t:48:1", "vgg16:48:3", "inception_v3:75:3"],
                   help="name:input_size:in_chans")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result = {}
    for spec in args.models:
        name, size, chans = spec.split(":")
        row = {m: images_per_s(name, int(size), int(chans), m, args.steps, args.batch_size) for m in MODES}
        print(f"{name} {size}px: " + "  ".join(f"{m} {v:.1f}" for m, v in row.items()) + " img/s", flush=True)
        result.update({f"{name}_{m}_img_s": v for m, v in row.items()})
    print("RESULT " + " ".join(f"{k}={v:.1f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
