"""What a model costs to deploy: parameters, MACs at its input size, and batch-1 latency through
ONNX Runtime (the path ``predict`` and the export use), on this machine's CPU.

Latency is per face, batch 1, the median of many runs after a warm-up, measured on the exported
graph (uint8 face in, probabilities out: preprocessing and the resize to the input size
included). It depends on the architecture and input size, not on the weights' values.

Example:
    >>> from fer_models.models import create_model
    >>> p = profile_model(create_model("resnet10t"), TrainConfig(backbone="resnet10t"), runs=5)
    >>> round(p.params_m, 2), 10 < p.macs_m < 100, p.latency_ms > 0
    (4.93, True, True)
"""
from __future__ import annotations

import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig
from .constants import IMAGE_SIZE

# The measures a search can optimise or constrain (all: lower is better).
PROFILE_METRICS = {"params_m": "parameters, millions",
                   "macs_m": "multiply-accumulates per face, millions",
                   "latency_ms": "ms per face, batch 1, ONNX Runtime on the trial's node CPU"}


@dataclass
class ModelProfile:
    params_m: float
    macs_m: float
    latency_ms: float
    latency_threads: int
    machine: str          # where the latency was measured

    def to_dict(self) -> dict:
        return asdict(self)


def machine_name() -> str:
    """The CPU model and node name, for saying where a latency was measured."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} ({platform.node()})"


def count_params(model: torch.nn.Module) -> float:
    """Parameters of ``model``, in millions."""
    return sum(p.numel() for p in model.parameters()) / 1e6


def count_macs(model: torch.nn.Module, input_size: int, in_chans: int) -> float:
    """Multiply-accumulates of one forward pass at batch 1, in millions (torch's FLOP counter:
    2 FLOPs per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    x = torch.zeros(1, in_chans, input_size, input_size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 2 / 1e6


def measure_latency(onnx_file: str | Path, threads: int = 1, runs: int = 50,
                    warmup: int = 5) -> float:
    """Median ms per batch-1 call of an exported model on one random uint8 face."""
    from .export import INPUT_NAME, OUTPUT_NAME, onnx_session

    session = onnx_session(onnx_file, threads)
    face = np.random.default_rng(0).integers(0, 256, (1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    feed = {INPUT_NAME: face}
    for _ in range(warmup):
        session.run([OUTPUT_NAME], feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run([OUTPUT_NAME], feed)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def profile_model(model: torch.nn.Module, cfg: TrainConfig, threads: int = 1,
                  runs: int = 50) -> ModelProfile:
    """Parameters, MACs and ONNX Runtime latency of ``model`` (built from ``cfg``)."""
    from .ensemble import Predictor
    from .export import export_predictor

    model = model.to("cpu").to(memory_format=torch.contiguous_format).eval()
    params = count_params(model)
    macs = count_macs(model, cfg.input_size, cfg.in_chans)
    with tempfile.TemporaryDirectory() as d:
        onnx_file = export_predictor(Predictor([(model, cfg)]), Path(d) / "model.onnx")
        latency = measure_latency(onnx_file, threads, runs)
    return ModelProfile(round(params, 4), round(macs, 2), round(latency, 4), threads,
                        machine_name())


def profile_config(cfg: TrainConfig, threads: int = 1, runs: int = 50) -> ModelProfile:
    """Profile the architecture ``cfg`` describes (fresh weights: the costs do not depend on
    their values, so a trial is measured before it trains and ASHA-stopped trials have it too)."""
    from .models import create_model

    model = create_model(cfg.backbone, **cfg.architecture())
    return profile_model(model, cfg, threads, runs)
