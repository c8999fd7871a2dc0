"""How fast one training runs on this CPU, where its time goes, and against which peak.

    .venv/bin/python bench/bench_speed.py peaks                 # the CPU's bf16/fp32 peaks, derived
    .venv/bin/python bench/bench_speed.py convs                 # every conv of the model, both ways
    .venv/bin/python bench/bench_speed.py step                  # the arms side by side, 1 thread
    .venv/bin/python bench/bench_speed.py profile               # one epoch's time by part
    .venv/bin/python bench/bench_speed.py curves --seeds 0 1    # accuracy per epoch, before vs after

Every subcommand trains the headline configuration (spaces/cpu.yaml's fixed values at lr 3e-3,
weight decay 0.05, dropout 0.1, no crop) unless ``--set key=value`` changes it. Arms are
TrainConfig overrides:

- ``before``: the trainer before this bench (``small_map_convs``, ``fused_optimizer`` off,
  ``eval_batch_size`` 512);
- ``small_map_convs``: + convolutions over <= 3x3 maps as one matmul;
- ``after``: + torch's fused AdamW, eval batches of 128 (today's defaults);
- ``compile``: ``after`` with the model under ``torch.compile`` (Inductor), not shipped;
- ``compile_graphs`` (CUDA): ``compile`` with ``mode="reduce-overhead"``: CUDA graphs replay
  each step's kernels, for small models whose launches outnumber their work.

``--device cuda`` runs ``step`` on the GPU (the trainer as it runs there: bf16, channels_last,
the faces resident on the device) and gives the share of the GPU's dense bf16 peak (from
NVIDIA's datasheets, by device name); bench/gpu.sh calls it for the gpu space's models.

``step`` builds every arm, warms it up, then runs them interleaved ``--repeats`` times on the
same uint8 batches and prints each arm's median training images/s, its model FLOP/s (3 x the
forward MACs x 2 per image: forward, input and weight gradients) and the share of the AMX peak.
``curves`` runs ``fit`` for each (arm, seed) on the full data, one process per seed side by side
(one core each, as a retrain's seeds run) and prints PublicTest accuracy per epoch.
"""
from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fer_models.config import TrainConfig  # noqa: E402
from fer_models.evaluate import evaluate  # noqa: E402
from fer_models.profile import count_macs  # noqa: E402
from fer_models.small_map_conv import SmallMapConv2d, use_small_map_convs  # noqa: E402
from fer_models.train import (build_ema, build_model, build_optimizer, seed_everything,  # noqa: E402
                              train_one_epoch)

DATA_DIR = Path(os.environ.get("FER_DATA_DIR") or REPO.parent / "shared" / "data")
HEADLINE = dict(backbone="resnet10t", input_size=48, batch_size=128, optimizer="adamw",
                scheduler="cosine", warmup_epochs=0.5, ema_decay=0.999, precision="bf16",
                lr=3e-3, weight_decay=0.05, dropout=0.1, label_smoothing=0.1, hflip=0.5,
                translate=0.1, rotate=15.0, scale=0.15, erase_prob=0.5, device="cpu", threads=1)
ARMS = {
    "before": dict(small_map_convs=False, fused_optimizer=False, eval_batch_size=512),
    "small_map_convs": dict(small_map_convs=True, fused_optimizer=False, eval_batch_size=512),
    "after": dict(small_map_convs=True, fused_optimizer=True, eval_batch_size=128),
    "compile": dict(small_map_convs=True, fused_optimizer=True, eval_batch_size=128),
    "compile_graphs": dict(small_map_convs=True, fused_optimizer=True, eval_batch_size=128),
}
COMPILE_MODES = {"compile": "default", "compile_graphs": "reduce-overhead"}
# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, from NVIDIA's datasheets; the first name
# found in torch.cuda.get_device_name() wins, so a longer name comes before its prefix.
GPU_BF16_DENSE_TFLOPS = (("H200", 989.4), ("H100 PCIe", 756.0), ("H100 NVL", 835.0),
                         ("H100", 989.4), ("A100", 312.0), ("L40S", 362.1), ("L4", 121.0),
                         ("A10", 125.0))


# --- peaks -------------------------------------------------------------------------------------

@functools.cache
def _cpuinfo() -> dict[str, str]:
    """/proc/cpuinfo's fields, each as the first core gives it; read once."""
    fields = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_field(name: str) -> str:
    """The first core's ``name`` field of /proc/cpuinfo ("" where it has none)."""
    return _cpuinfo().get(name, "")


def cpu_flags() -> set[str]:
    return set(cpu_field("flags").split())


def cpu_ghz() -> float:
    """The nominal clock: the model name's '@ x.xGHz' where given, else the TSC (bogomips / 2),
    which a KVM guest like this one reports instead of a turbo clock."""
    model, bogomips = cpu_field("model name"), cpu_field("bogomips")
    if "GHz" in model:
        return float(model.rsplit("@", 1)[1].strip().removesuffix("GHz"))
    return float(bogomips) / 2000 if bogomips else float("nan")


def peaks() -> dict:
    """Per-core dense peaks in GFLOP/s (2 FLOP per multiply-add), from the ISA's width:
    - AMX (amx_bf16): TDPBF16PS multiplies a 16x32 by a 32x16 bf16 tile, 16*16*32 = 8,192 MACs,
      one issued per 16 cycles per core: 512 MACs = 1,024 FLOP per cycle;
    - AVX-512 BF16 (avx512_bf16): VDPBF16PS, 16 lanes x 2 products = 32 MACs, 2 FMA ports:
      64 MACs = 128 FLOP per cycle;
    - AVX-512 FP32 (avx512f): 16 lanes x 2 FMA ports = 32 MACs = 64 FLOP per cycle.
    AMD's Zen 4 (CPU family 25) runs a 512-bit instruction as two halves on 256-bit units, so
    half of each AVX-512 figure; Zen 5 (family 26) has full-width units, as Intel's cores do."""
    flags, ghz = cpu_flags(), cpu_ghz()
    per_cycle = {"amx_bf16": 1024, "avx512_bf16": 128, "avx512f": 64}
    if cpu_field("vendor_id") == "AuthenticAMD" and cpu_field("cpu family") == "25":
        per_cycle = {k: v // 2 for k, v in per_cycle.items()}
    return {"ghz": ghz, **{k: v * ghz for k, v in per_cycle.items() if k in flags}}


def top_bf16_peak() -> tuple[str, float]:
    """The fastest bf16 unit this CPU has and its per-core peak: AMX where present, else AVX-512
    BF16, else AVX-512 FP32."""
    found = peaks()
    name = next((k for k in ("amx_bf16", "avx512_bf16") if k in found), "avx512f")
    return name, found.get(name, float("nan"))


def gpu_peak() -> dict:
    """The GPU's name and dense bf16 peak in GFLOP/s (nan for a GPU not in the table)."""
    name = torch.cuda.get_device_name()
    tflops = next((v for key, v in GPU_BF16_DENSE_TFLOPS if key in name), float("nan"))
    return {"device": name, "bf16_dense": tflops * 1e3}


# --- shared helpers ----------------------------------------------------------------------------

def config(arm: str, overrides: dict) -> TrainConfig:
    return TrainConfig.from_dict({**HEADLINE, **ARMS[arm], **overrides})


def training_faces(n: int, seed: int = 0, data: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    from fer_models.data import load_fer2013

    path = Path(data) if data else DATA_DIR / "fer2013.csv.gz"
    train = load_fer2013(path if path.exists() else DATA_DIR / "fer2013-small.csv.gz").train
    idx = np.random.default_rng(seed).choice(len(train), size=n, replace=n > len(train))
    return (torch.from_numpy(np.ascontiguousarray(train.images[idx])),
            torch.from_numpy(train.labels[idx].astype(np.int64)))


def train_gflop_per_image(cfg: TrainConfig) -> float:
    """Forward MACs x 2 FLOP x 3 (forward, input gradient, weight gradient)."""
    model = build_model(TrainConfig.from_dict({**cfg.to_dict(), "device": "cpu"}), torch.device("cpu"))
    return count_macs(model, cfg.input_size, cfg.in_chans) * 1e6 * 2 * 3 / 1e9


class Arm:
    """One arm's model, optimizer, EMA and schedule, as ``fit`` builds them."""

    def __init__(self, name: str, cfg: TrainConfig, steps_per_epoch: int):
        self.name, self.cfg = name, cfg
        device = torch.device(cfg.device)
        self.model = build_model(cfg, device)
        if cfg.small_map_convs and device.type == "cpu":
            use_small_map_convs(self.model)
        self.optimizer, self.scheduler = build_optimizer(cfg, self.model, steps_per_epoch)
        self.ema = build_ema(cfg, self.model)
        if name in COMPILE_MODES:
            self.model = torch.compile(self.model, mode=COMPILE_MODES[name])
        self.generator = seed_everything(cfg.seed)

    def epoch(self, images, labels) -> float:
        stats = train_one_epoch(self.model, self.optimizer, images, labels, self.cfg,
                                self.generator, self.scheduler, 0, 1, self.ema)
        return stats["images_per_s"]


# --- step --------------------------------------------------------------------------------------

def run_step(args) -> None:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        peak = gpu_peak()
        shares = {"bf16_peak_share": "bf16_dense"}
    else:
        peak = peaks()
        shares = {"amx_peak_share": "amx_bf16", "avx512_bf16_peak_share": "avx512_bf16"}
    batch = int(args.set.get("batch_size", 128))
    images, labels = training_faces(args.steps * batch, data=args.data)
    images, labels = images.to(device), labels.to(device)
    rows = []
    arms = []
    for name in args.arms:
        cfg = config(name, {**args.set, "device": args.device})
        t0 = time.perf_counter()
        arm = Arm(name, cfg, args.steps)
        # warm-up: compiles, and lets CUDA graphs record (from the second call on)
        arm.epoch(images[:3 * cfg.batch_size], labels[:3 * cfg.batch_size])
        arms.append((arm, time.perf_counter() - t0))
    speeds = {arm.name: [] for arm, _ in arms}
    for _ in range(args.repeats):
        for arm, _ in arms:
            speeds[arm.name].append(arm.epoch(images, labels))
    base = statistics.median(speeds[args.arms[0]])
    for arm, warm_s in arms:
        img_s = statistics.median(speeds[arm.name])
        gflop_s = img_s * train_gflop_per_image(arm.cfg)
        rows.append(dict(arm=arm.name, img_s=round(img_s, 1), speedup=round(img_s / base, 3),
                         gflop_s=round(gflop_s, 1),
                         **{col: round(gflop_s / peak.get(key, float("nan")), 4)
                            for col, key in shares.items()},
                         warmup_s=round(warm_s, 1)))
    print(f"device={peak.get('device', 'cpu')} threads={args.threads} steps={args.steps} "
          f"batch={batch} repeats={args.repeats} (median img/s of {args.repeats} interleaved epochs)")
    print_table(rows)
    for r in rows:
        print("RESULT " + " ".join(f"{k}={v}" for k, v in r.items()))


# --- convs -------------------------------------------------------------------------------------

def run_convs(args) -> None:
    """Time every distinct conv of the model (input shape as training sees it) forward + backward
    under bf16 autocast, as nn.Conv2d and as SmallMapConv2d's matmul."""
    torch.set_num_threads(args.threads)
    cfg = config("after", args.set)
    model = build_model(cfg, torch.device("cpu"))
    shapes = []

    def hook(module, inputs, _output):
        key = (tuple(inputs[0].shape), module.in_channels, module.out_channels,
               module.kernel_size, module.stride, module.padding)
        if key not in [s[0] for s in shapes]:
            shapes.append((key, module))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(cfg.batch_size, cfg.in_chans, cfg.input_size, cfg.input_size))
    for h in handles:
        h.remove()
    peak_name, peak = top_bf16_peak()
    rows = []
    for (in_shape, cin, cout, k, s, p), module in shapes:
        x = torch.randn(in_shape).contiguous(memory_format=torch.channels_last).requires_grad_()
        plain = torch.nn.Conv2d(cin, cout, k, s, p, bias=module.bias is not None)
        fast = torch.nn.Conv2d(cin, cout, k, s, p, bias=module.bias is not None)
        fast.__class__ = SmallMapConv2d
        out = plain(x.detach())
        gflop = 3 * 2 * out.numel() * cin * k[0] * k[1] / 1e9
        times = {name: time_fwd_bwd(conv, x) for name, conv in (("conv", plain), ("matmul", fast))}
        with torch.autocast("cpu", dtype=torch.bfloat16):
            picked = "matmul" if fast._matmul_dtype(x) is not None else "conv"
        rows.append(dict(input="x".join(map(str, in_shape)), conv=f"{cin}->{cout} k{k[0]} s{s[0]}",
                         out_map=f"{out.shape[-2]}x{out.shape[-1]}",
                         conv_ms=round(times["conv"], 2), matmul_ms=round(times["matmul"], 2),
                         conv_gflop_s=round(gflop / times["conv"] * 1e3, 1),
                         matmul_gflop_s=round(gflop / times["matmul"] * 1e3, 1), shipped=picked,
                         shipped_peak_share=round(gflop / times[picked] * 1e3 / peak, 4)))
    print(f"{cfg.backbone} at {cfg.input_size} px, batch {cfg.batch_size}, bf16 autocast, "
          f"{args.threads} thread(s); forward + both gradients, median of 7; peak share "
          f"against {peak_name}'s {peak:.0f} GFLOP/s per core")
    print_table(rows)


def time_fwd_bwd(conv: torch.nn.Module, x: torch.Tensor, repeats: int = 7) -> float:
    def once():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x)
        y.float().sum().backward()

    once(), once()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        once()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


# --- profile -----------------------------------------------------------------------------------

CATEGORIES = [  # (category, substrings of aten op names), first match wins
    ("conv (oneDNN)", ("convolution",)),
    ("conv as matmul", ("aten::mm", "index_select", "index_add", "constant_pad")),
    ("batchnorm", ("batch_norm",)),
    ("activation", ("clamp_min", "threshold", "relu")),
    ("pooling", ("pool",)),
    ("optimizer", ("adam", "addcdiv", "addcmul", "sqrt", "_foreach", "sgd")),
    ("EMA", ("lerp",)),
    ("augmentation", ("grid_sampler", "affine_grid", "bitwise_and", "masked_fill", "randperm")),
    ("loss, head", ("log_softmax", "nll_loss", "linear", "addmm", "aten::bmm")),
]


def run_profile(args) -> None:
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(args.threads)
    images, labels = training_faces(args.steps * 128)
    public, public_labels = training_faces(3589, seed=1)  # evaluation's cost, not its score
    for name in args.arms:
        cfg = config(name, args.set)
        arm = Arm(name, cfg, args.steps)
        arm.epoch(images[:256], labels[:256])
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t = time.perf_counter()
            arm.epoch(images, labels)
            train_s = time.perf_counter() - t
        shares: dict[str, float] = {}
        for event in prof.key_averages():
            if not event.key.startswith("aten::"):
                continue
            category = next((c for c, keys in CATEGORIES if any(k in event.key for k in keys)),
                            "other (copies, casts, fills)")
            shares[category] = shares.get(category, 0.0) + event.self_cpu_time_total / 1e6
        t = time.perf_counter()
        for module in ([arm.model, arm.ema.module] if arm.ema else [arm.model]):
            evaluate(module, public, public_labels.numpy(), cfg.input_size, cfg.in_chans,
                     cfg.eval_batch_size, "cpu", channels_last=cfg.channels_last)
        eval_s = time.perf_counter() - t
        total = sum(shares.values())
        per_epoch = 28709 / (len(images) / train_s)
        print(f"\n{name}: {len(images) / train_s:.0f} img/s under the profiler; an epoch of 28,709 "
              f"faces ~{per_epoch:.0f} s training + {eval_s:.1f} s PublicTest evaluation "
              f"(raw + EMA, {cfg.eval_batch_size} a batch)")
        rows = [dict(part=c, ms_per_step=round(s / args.steps * 1e3, 1),
                     share=f"{s / total:.1%}") for c, s in sorted(shares.items(), key=lambda kv: -kv[1])]
        print_table(rows)


# --- curves ------------------------------------------------------------------------------------

def _curve_worker(job: tuple) -> dict:
    arm, seed, overrides, epochs = job
    from fer_models.data import load_fer2013
    from fer_models.train import fit

    data = load_fer2013(DATA_DIR / "fer2013.csv.gz").without_private_test()
    cfg = config(arm, {**overrides, "seed": seed, "epochs": epochs})
    t = time.perf_counter()
    result = fit(cfg, data)
    return dict(arm=arm, seed=seed, wall_s=time.perf_counter() - t,
                history=[{k: h[k] for k in ("epoch", "val_accuracy", "val_loss", "train_loss",
                                            "images_per_s", "seconds")} for h in result.history])


def run_curves(args) -> None:
    jobs = [(arm, seed, args.set, args.epochs) for seed in args.seeds for arm in args.arms]
    # One process per core, each a 1-thread training, every arm of one seed in the same process
    # order so the arms see the same contention.
    with mp.get_context("spawn").Pool(len(args.seeds)) as pool:
        results = pool.map(_curve_worker, jobs, chunksize=len(args.arms))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    rows = []
    for epoch in range(args.epochs):
        row = {"epoch": epoch + 1}
        for r in results:
            row[f"{r['arm']} s{r['seed']}"] = round(r["history"][epoch]["val_accuracy"], 4)
        rows.append(row)
    print_table(rows)
    summary = []
    for arm in args.arms:
        mine = [r for r in results if r["arm"] == arm]
        finals = [r["history"][-1]["val_accuracy"] for r in mine]
        summary.append(dict(arm=arm, final_mean=round(statistics.mean(finals), 4),
                            final_sd=round(statistics.stdev(finals), 4) if len(finals) > 1 else 0,
                            train_img_s=round(statistics.median(
                                h["images_per_s"] for r in mine for h in r["history"]), 1),
                            epoch_s=round(statistics.median(
                                h["seconds"] for r in mine for h in r["history"]), 1),
                            wall_min=round(max(r["wall_s"] for r in mine) / 60, 1)))
    print_table(summary)


# --- output ------------------------------------------------------------------------------------

def print_table(rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "")) for k in keys) + " |")


def parse_set(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["peaks", "convs", "step", "profile", "curves"])
    parser.add_argument("--arms", nargs="+", default=None, choices=list(ARMS))
    parser.add_argument("--steps", type=int, default=20, help="batches per timed epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", help="step: FER2013 CSV to draw the faces from (default: "
                        "../shared/data/fer2013.csv.gz, else the small sample)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="step: where the arms train (cuda: the share of the GPU's bf16 peak)")
    parser.add_argument("--epochs", type=int, default=10, help="curves: epochs per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="curves: one core each")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="TrainConfig overrides for every arm, e.g. backbone=resnet18")
    parser.add_argument("--out", help="curves: write the per-epoch histories here (JSON)")
    args = parser.parse_args(argv)
    args.set = parse_set(args.set)
    if args.what == "peaks":
        print(json.dumps(peaks()))
        return 0
    if args.what == "step" and args.device == "cuda" and not args.arms:
        args.arms = ["after", "compile", "compile_graphs"]
    args.arms = args.arms or {"step": ["before", "small_map_convs", "after", "compile"],
                              "curves": ["before", "after"]}.get(args.what, ["before", "after"])
    {"convs": run_convs, "step": run_step, "profile": run_profile, "curves": run_curves}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
