"""Benchmark one training step three ways, for one model, in one process.

  (a) model alone: forward + backward + optimizer step on pre-made float batches already on the
      device (the ceiling: no data handling at all);
  (b) this project's step: ``fer_models.train.train_one_epoch`` over ``steps * batch`` uint8
      images held on the device (index batching + ``augment_batch`` on the device + the model);
  (c) a conventional pipeline: a torch ``DataLoader`` over a ``Dataset`` that builds a PIL image per
      sample and applies torchvision transforms (RandomAffine, RandomHorizontalFlip, Resize,
      ToTensor, Normalize), then the same model / batch / optimizer / autocast.

All three share the model, optimizer (timm AdamW, as ``fit``), batch size, input size, channels and
layout (channels_last, as ``fit``, unless --no-channels-last) and precision (bf16 autocast on
CUDA, as ``fit``; fp32 on CPU). After a warm-up the
three are run interleaved ``--repeats`` times (default 3); the median images/s of each is reported.

    .venv/bin/python bench/bench_trainer.py --backbone resnet18 --steps 20
    .venv/bin/python bench/bench_trainer.py --backbone resnet10t --steps 3 --batch-size 64
    .venv/bin/python bench/bench_trainer.py --seed-configs --steps 10    # vs the seed's Keras runs

Last line (machine-readable):

    RESULT model=<backbone> a_img_s=<(a)> b_img_s=<(b)> c_img_s=<(c)> b_over_a=<b/a> b_over_c=<b/c>

With --seed-configs it instead times (b) for the seed study's two Keras configurations
(inception_v3 at 75 px, 3 channels, head 1024 + dropout 0.5; vgg16 at 48 px, 3 channels, without
timm's 4096-wide fc6/fc7 since Keras' VGG16 at 48 px is include_top=False; batch 128 unless
--batch-size says otherwise) and ends with

    RESULT seed_configs inception_v3_img_s=<(b)> vgg16_img_s=<(b)> inception_v3_vs_keras=<x> vgg16_vs_keras=<x>

where ``*_vs_keras`` divides by the seed's measured 36.6 (inception_v3) and 17.5 (vgg16) img/s.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fer_models.augment import MEAN, STD  # noqa: E402
from fer_models.cli import EXIT_BAD_INPUT  # noqa: E402
from fer_models.config import TrainConfig  # noqa: E402
from fer_models.data import load_fer2013  # noqa: E402
from fer_models.train import build_model, build_optimizer, resolve_device, train_one_epoch  # noqa: E402

DATA_DIR = Path(os.environ.get("FER_DATA_DIR") or REPO.parent / "shared" / "data")
# The seed study's Keras throughput (training images/s, batch 128) for its two configurations.
SEED_CONFIGS = {
    "inception_v3": (dict(backbone="inception_v3", input_size=75, in_chans=3, head_hidden=1024,
                          dropout=0.5), 36.6),
    # Keras builds VGG16 at 48 px only with include_top=False: no fc1/fc2, hence pre_logits=False.
    "vgg16": (dict(backbone="vgg16", input_size=48, in_chans=3, pre_logits=False), 17.5),
}


def default_data() -> Path:
    full = DATA_DIR / "fer2013.csv.gz"
    return full if full.exists() else DATA_DIR / "fer2013-small.csv.gz"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_images(data_path: Path, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n Training images (uint8 N x 48 x 48) and labels; drawn with replacement if the split is smaller."""
    train = load_fer2013(data_path).train
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(train), size=n, replace=n > len(train))
    return np.ascontiguousarray(train.images[idx]), train.labels[idx].astype(np.int64)


class Runner:
    """One model + optimizer, and the three ways of feeding it."""

    def __init__(self, cfg: TrainConfig, images: np.ndarray, labels: np.ndarray, steps: int,
                 num_workers: int):
        self.cfg, self.steps = cfg, steps
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg, self.device)
        self.optimizer, _ = build_optimizer(cfg, self.model, steps_per_epoch=steps)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.use_amp = cfg.precision != "fp32" and self.device.type == "cuda"
        self.channels_last = cfg.channels_last  # as build_model / train_one_epoch
        self.generator = torch.Generator().manual_seed(cfg.seed)
        # (a) a few distinct pre-made float batches, already on the device
        g = torch.Generator().manual_seed(1)
        bs, s, c = cfg.batch_size, cfg.input_size, cfg.in_chans
        self.float_batches = [
            (torch.randn(bs, c, s, s, generator=g).to(self.device),
             torch.randint(0, 7, (bs,), generator=g).to(self.device)) for _ in range(min(steps, 4))]
        # (b) the uint8 split on the device
        self.images_dev = torch.from_numpy(images).to(self.device)
        self.labels_dev = torch.from_numpy(labels).to(self.device)
        # (c) a conventional DataLoader
        self.loader = make_loader(images, labels, cfg, num_workers, pin=self.device.type == "cuda")

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
            loss = self.loss_fn(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def run_a(self, steps: int) -> float:
        self.model.train()
        sync(self.device)
        start = time.perf_counter()
        for i in range(steps):
            x, y = self.float_batches[i % len(self.float_batches)]
            self.step(x, y)
        sync(self.device)
        return steps * self.cfg.batch_size / (time.perf_counter() - start)

    def run_b(self, steps: int) -> float:
        n = steps * self.cfg.batch_size
        sync(self.device)
        start = time.perf_counter()
        train_one_epoch(self.model, self.optimizer, self.images_dev[:n], self.labels_dev[:n],
                        self.cfg, self.generator)  # synchronises CUDA itself before returning
        sync(self.device)
        return n / (time.perf_counter() - start)

    def run_c(self, steps: int) -> float:
        self.model.train()
        sync(self.device)
        start = time.perf_counter()
        done = 0
        for x, y in self.loader:
            self.step(x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True))
            done += 1
            if done == steps:
                break
        sync(self.device)
        return done * self.cfg.batch_size / (time.perf_counter() - start)


class PILDataset(torch.utils.data.Dataset):
    """The usual recipe: one PIL image per sample, torchvision transforms, a float tensor out."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def make_loader(images, labels, cfg: TrainConfig, num_workers: int, pin: bool):
    from torchvision import transforms as T

    aug = cfg.augment  # the same strengths as augment_batch uses in (b)
    steps = [T.RandomAffine(degrees=aug.rotate, translate=(aug.translate, aug.translate),
                            scale=(1 - aug.scale, 1 + aug.scale)),
             T.RandomHorizontalFlip(aug.hflip),
             T.Resize(cfg.input_size)]
    if cfg.in_chans == 3:
        steps.append(T.Grayscale(num_output_channels=3))
    steps += [T.ToTensor(), T.Normalize([MEAN] * cfg.in_chans, [STD] * cfg.in_chans)]
    return torch.utils.data.DataLoader(
        PILDataset(images, labels, T.Compose(steps)), batch_size=cfg.batch_size, shuffle=True,
        drop_last=True, num_workers=num_workers, pin_memory=pin,
        persistent_workers=num_workers > 0)


def make_cfg(args, **overrides) -> TrainConfig:
    values = dict(backbone=args.backbone, input_size=args.input_size, in_chans=args.in_chans,
                  head_hidden=args.head_hidden, dropout=args.dropout, batch_size=args.batch_size,
                  threads=args.threads, device=args.device, precision="auto" if args.amp else "fp32",
                  channels_last=args.channels_last, seed=0)
    values.update(overrides)
    return TrainConfig(**values)


def bench_three_ways(args) -> int:
    cfg = make_cfg(args)
    n = args.steps * cfg.batch_size
    images, labels = training_images(Path(args.data), n)
    runner = Runner(cfg, images, labels, args.steps, args.num_workers)
    print(f"model {cfg.backbone}  input {cfg.input_size}px x{cfg.in_chans}  batch {cfg.batch_size}  "
          f"steps {args.steps}  repeats {args.repeats}  DataLoader workers {args.num_workers}")
    runs = {"a": runner.run_a, "b": runner.run_b, "c": runner.run_c}
    warm = max(1, min(args.warmup, args.steps))
    for fn in runs.values():  # warm-up: allocator, cuDNN autotuning, DataLoader workers
        fn(warm)
    results: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(args.repeats):
        line = []
        for key, fn in runs.items():  # interleaved, so drift hits all three alike
            results[key].append(fn(args.steps))
            line.append(f"{key} {results[key][-1]:8.1f}")
        print(f"  repeat {r + 1}: " + "  ".join(line) + "  img/s")
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"median img/s: (a) model alone {med['a']:.1f}   (b) fer_models step {med['b']:.1f}   "
          f"(c) DataLoader+PIL+torchvision {med['c']:.1f}")
    print(f"(b)/(a) = {med['b'] / med['a']:.3f} of the model-only ceiling;  "
          f"(b)/(c) = {med['b'] / med['c']:.2f}x the conventional pipeline")
    print(f"RESULT model={cfg.backbone} a_img_s={med['a']:.2f} b_img_s={med['b']:.2f} "
          f"c_img_s={med['c']:.2f} b_over_a={med['b'] / med['a']:.4f} b_over_c={med['b'] / med['c']:.4f}")
    return 0


def bench_seed_configs(args) -> int:
    out = {}
    for name, (overrides, keras) in SEED_CONFIGS.items():
        cfg = make_cfg(args, **overrides)
        images, labels = training_images(Path(args.data), args.steps * cfg.batch_size)
        runner = Runner(cfg, images, labels, args.steps, num_workers=0)
        runner.run_b(max(1, min(args.warmup, args.steps)))
        speeds = []
        for _ in range(args.repeats):
            speeds.append(runner.run_b(args.steps))
        out[name] = statistics.median(speeds)
        print(f"{name:>12} {cfg.input_size}px x{cfg.in_chans} head_hidden={cfg.head_hidden} "
              f"pre_logits={cfg.pre_logits} "
              f"dropout={cfg.dropout} batch {cfg.batch_size}: (b) {out[name]:.1f} img/s "
              f"(repeats {', '.join(f'{s:.1f}' for s in speeds)}); seed Keras {keras} img/s "
              f"-> {out[name] / keras:.2f}x")
        del runner
        if resolve_device(cfg.device).type == "cuda":
            torch.cuda.empty_cache()
    print("RESULT seed_configs " + " ".join(f"{k}_img_s={v:.2f}" for k, v in out.items()) + " " +
          " ".join(f"{k}_vs_keras={v / SEED_CONFIGS[k][1]:.3f}" for k, v in out.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Training-step throughput: model alone vs fer_models vs "
                                            "a DataLoader pipeline (see the module docstring).")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--input-size", type=int, default=48)
    p.add_argument("--in-chans", type=int, default=1, choices=(1, 3))
    p.add_argument("--head-hidden", type=int, default=0)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="training steps per timed run")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per pipeline first")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (0 = default)")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers for (c)")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast on CUDA (as fit)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="channels_last layout (as fit)")
    p.add_argument("--data", default=str(default_data()),
                   help="FER2013 CSV; its Training images feed (b) and (c) (default: the full "
                        "../shared/data/fer2013.csv.gz, else the small sample)")
    p.add_argument("--seed-configs", action="store_true",
                   help="time (b) for the seed's inception_v3 / vgg16 Keras configurations instead")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if not Path(args.data).exists():
        print(f"error: {args.data} does not exist (pass --data)", file=sys.stderr)
        return EXIT_BAD_INPUT
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"device {device} ({name})  torch {torch.__version__}  data {args.data}")
    return bench_seed_configs(args) if args.seed_configs else bench_three_ways(args)


if __name__ == "__main__":
    sys.exit(main())
