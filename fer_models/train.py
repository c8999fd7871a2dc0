"""Training: ``train_one_epoch`` and ``fit`` as plain functions, and a CLI for one configuration.

The whole split lives on the model's device as uint8; each step slices a batch by index and
augments it there (see ``augment.py``), so there is no DataLoader and no per-image Python work.
Mixup / CutMix (timm's ``Mixup`` and soft-target loss) mix the augmented batch; an EMA of the
weights (timm's ``ModelEmaV3``) is validated beside them and kept when it scores better.

Example (one epoch of a tiny model on the small sample; about a minute on 2 CPU cores):
    python -m fer_models.train --data ../shared/data/fer2013-small.csv.gz \\
        --backbone resnet10t --epochs 1
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .augment import augment_batch
from .config import TrainConfig
from .data import EMOTIONS, FER2013, Split
from .evaluate import evaluate
from .checkpoint import is_model_folder, start_from_model_folder
from .models import HiddenHead, ModelConfigError, create_model
from .small_map_conv import restore_convs, use_small_map_convs
from .weights import WeightsError
from .schedulers import create_lr_scheduler, schedule_info


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the trial is failed with this reason."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions (avx512_bf16 or AMX): without them torch emulates
    bf16 and autocast is slower than fp32."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def uses_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether training steps run under bf16 autocast: on CUDA unless ``precision`` is fp32, on a
    CPU when it is bf16 and the CPU has bf16 instructions (elsewhere fp32, so a space runs on
    every node of a cluster).
    Evaluation stays fp32 on the CPU: what a trial reports is what ``predict`` measures."""
    if device.type == "cuda":
        return cfg.precision != "fp32"
    return device.type == "cpu" and cfg.precision == "bf16" and cpu_has_bf16()


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (weight init, dropout) and return the batch/augmentation RNG."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def build_model(cfg: TrainConfig, device: torch.device) -> torch.nn.Module:
    """The model ``cfg`` starts from: random, ImageNet (``pretrained``), a weights file, or a
    finished model folder (``pretrained_file: results/<name>/model``, the head rebuilt if it
    no longer fits)."""
    start_folder = cfg.pretrained_file if is_model_folder(cfg.pretrained_file or "") else None
    model = create_model(cfg.backbone, **cfg.architecture(), pretrained=cfg.pretrained,
                         pretrained_file=None if start_folder else cfg.pretrained_file)
    if start_folder:
        try:
            start_from_model_folder(model, start_folder, cfg.backbone, cfg.in_chans)
        except WeightsError as e:
            raise ModelConfigError(str(e)) from None
    return place_model(model, cfg, device)


def place_model(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.nn.Module:
    """``model`` on ``device``, in the memory format ``cfg`` trains in."""
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module, steps_per_epoch: int):
    """timm's optimizer factory (weight decay skips biases and norms) and the lr schedule
    ``cfg.scheduler`` (:mod:`fer_models.schedulers`)."""
    from timm.optim import create_optimizer_v2

    params = layer_decay_groups(model, cfg) if cfg.layer_decay > 0 else model
    fused = {"fused": True} if cfg.fused_optimizer and has_fused_kernel(cfg.optimizer) else {}
    optimizer = create_optimizer_v2(params, opt=cfg.optimizer, lr=cfg.lr,
                                    weight_decay=cfg.weight_decay, momentum=cfg.momentum, **fused)
    scheduler = create_lr_scheduler(cfg, optimizer, steps_per_epoch)
    if scheduler is None:  # timm's schedulers apply lr_scale; a constant lr must do it here
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * group.get("lr_scale", 1.0)
    return optimizer, scheduler


def has_fused_kernel(name: str) -> bool:
    """Whether timm's optimizer ``name`` is a torch optimizer with a fused (one kernel for every
    parameter) step: AdamW, Adam, SGD. The loop it replaces cost ~11 ms of a 190-ms resnet10t step."""
    import inspect

    from timm.optim import get_optimizer_class

    try:
        cls = get_optimizer_class(name, bind_defaults=False)
        return "fused" in inspect.signature(cls).parameters
    except (ValueError, TypeError, ImportError, AssertionError):  # apex/bnb names, builtins
        return False


def layer_decay_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """timm's layer-wise lr decay groups (``lr_scale`` = layer_decay ** depth from the top, which
    timm's schedulers apply). The seed's hidden head is not a timm model: its backbone gets
    timm's groups and the head the top layer's full lr."""
    from timm.optim import param_groups_layer_decay, param_groups_weight_decay

    if not isinstance(model, HiddenHead):
        return param_groups_layer_decay(model, weight_decay=cfg.weight_decay,
                                        layer_decay=cfg.layer_decay)
    return (param_groups_layer_decay(model.backbone, weight_decay=cfg.weight_decay,
                                     layer_decay=cfg.layer_decay)
            + param_groups_weight_decay(model.head, weight_decay=cfg.weight_decay))


def current_lr(optimizer) -> float:
    """The lr of the top layer (with layer decay, the groups below get a fraction of it)."""
    return max(float(g["lr"]) for g in optimizer.param_groups)


def freeze_body(model: torch.nn.Module, frozen: bool) -> None:
    """Head-only training (``head_warmup_epochs``): everything but the classifier stops learning,
    its BatchNorm statistics included (eval mode), so the pretrained body is unchanged until the
    warm-up ends. Call after ``model.train()``."""
    head = set(model.get_classifier().parameters())
    for p in model.parameters():
        if p not in head:
            p.requires_grad_(not frozen)
    if frozen:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def build_mixer(cfg: TrainConfig):
    """timm's ``Mixup`` for ``cfg`` (it also smooths the labels) or None when nothing is mixed."""
    if not cfg.mixes:
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=cfg.mixup_alpha, cutmix_alpha=cfg.cutmix_alpha, prob=cfg.mixup_prob,
                 label_smoothing=cfg.label_smoothing, num_classes=len(EMOTIONS))


def build_ema(cfg: TrainConfig, model: torch.nn.Module):
    """timm's ``ModelEmaV3`` of ``model`` or None. Its warm-up lets the average follow the early,
    fast-moving weights instead of the random init, which matters in runs of a few thousand steps."""
    if cfg.ema_decay <= 0:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=True, warmup_power=3 / 4)


def train_one_epoch(model, optimizer, images: torch.Tensor, labels: torch.Tensor,
                    cfg: TrainConfig, generator: torch.Generator, scheduler=None,
                    num_updates: int = 0, epoch: int = 0, ema=None) -> dict:
    """One pass over ``images`` (uint8, on the model's device) in shuffled batches.

    ``ema`` (a ``ModelEmaV3``) is updated after every step. Returns ``train_loss`` (mean),
    ``lr`` (at the end), ``images_per_s`` and ``num_updates``. Raises NonFiniteLossError when
    the loss is NaN/inf (checked once per epoch: no GPU sync per step).
    """
    from timm.loss import SoftTargetCrossEntropy

    model.train()
    if cfg.head_warmup_epochs:
        freeze_body(model, frozen=epoch <= cfg.head_warmup_epochs)
    device = images.device
    mixer = build_mixer(cfg)
    loss_fn = (SoftTargetCrossEntropy() if mixer
               else torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing))
    n = len(images)
    bs = min(cfg.batch_size, n)
    if mixer:
        bs -= bs % 2  # timm's Mixup pairs each image with its mirror in the batch
        # Mixup draws from numpy's global RNG: seeding it by (seed, epoch) makes a seeded rerun,
        # and a resume from a checkpoint, mix exactly alike, and leaves the batch order unchanged.
        np.random.seed([cfg.seed % 2**32, epoch])
    perm = torch.randperm(n, generator=generator).to(device)
    total = torch.zeros((), device=device)
    steps = 0
    use_amp = uses_bf16(cfg, device)
    start = time.perf_counter()
    for i in range(0, n - bs + 1, bs):  # drop the ragged last batch: BatchNorm dislikes tiny ones
        idx = perm[i:i + bs]
        x = augment_batch(images[idx], cfg.augment, cfg.input_size, generator, cfg.in_chans)
        y = labels[idx]
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if mixer:
            x, y = mixer(x.contiguous() if x.stride(1) == 0 else x, y)  # mixes in place: no views
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        num_updates += 1
        if ema is not None:
            ema.update(model, step=num_updates)
        steps += 1
        if scheduler is not None:
            scheduler.step_update(num_updates=num_updates)
        total += loss.detach().float()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    train_loss = float(total) / max(steps, 1)
    if not math.isfinite(train_loss):
        raise NonFiniteLossError(f"train loss became {train_loss} in epoch {epoch}")
    return {"train_loss": train_loss, "lr": current_lr(optimizer),
            "images_per_s": steps * bs / seconds if seconds > 0 else 0.0,
            "num_updates": num_updates}


@dataclass
class FitResult:
    model: torch.nn.Module
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    weights_epoch: int = 0          # the epoch whose weights ``model`` holds (best or last)


def training_split(cfg: TrainConfig, data: FER2013) -> Split:
    if not cfg.train_on_public:
        return data.train
    return Split(np.concatenate([data.train.images, data.public_test.images]),
                 np.concatenate([data.train.labels, data.public_test.labels]))


@dataclass
class BestSoFar:
    """What :func:`fit` remembers across epochs: the best PublicTest accuracy (and its epoch and,
    when the run hands them back, its weights) and the best loss with the epochs since it fell
    (early stopping watches the loss, Keras-style; the kept weights follow accuracy)."""
    val_accuracy: float = -1.0
    val_loss: float = math.inf
    epoch: int = 0
    stale: int = 0
    weights: dict | None = None

    def update(self, val: dict, epoch: int, module, keep_weights: bool) -> None:
        if val["accuracy"] > self.val_accuracy:
            self.val_accuracy, self.epoch = val["accuracy"], epoch
            self.weights = copy.deepcopy(module.state_dict()) if keep_weights else None
        if val["loss"] < self.val_loss - 1e-4:
            self.val_loss, self.stale = val["loss"], 0
        else:
            self.stale += 1

    def state(self) -> dict:
        state = {"val_accuracy": self.val_accuracy, "val_loss": self.val_loss,
                 "epoch": self.epoch, "stale": self.stale}
        if self.weights is not None:  # only kept to restore at the end (early stopping, keep_best)
            state["weights"] = self.weights
        return state

    @classmethod
    def from_state(cls, state: dict) -> "BestSoFar":
        return cls(**{k: state[k] for k in ("val_accuracy", "val_loss", "epoch", "stale")},
                   weights=state.get("weights"))


def fit(cfg: TrainConfig, data: FER2013,
        on_epoch: Callable[[dict, Callable[[], dict]], None] | None = None,
        resume_state: dict | None = None, log: Callable[[str], None] | None = None,
        model: torch.nn.Module | None = None) -> FitResult:
    """Train ``cfg`` on ``data.train``, validating on PublicTest after every epoch.

    PrivateTest is never read here. With ``cfg.ema_decay`` the EMA weights are validated too and
    the better of the two by PublicTest accuracy is what the epoch reports (``val_*``, with
    ``val_accuracy_raw`` / ``val_accuracy_ema`` and ``ema_selected`` beside) and what is returned;
    without a validation split (``train_on_public``) the EMA is returned.
    ``on_epoch(metrics, get_state)`` is called after each epoch;
    ``get_state()`` returns everything :func:`fit` needs to continue (pass it back as
    ``resume_state``), built only when asked so a caller that does not checkpoint pays nothing.
    ``model``: train this module instead of ``build_model(cfg)`` (it is moved to the device).
    """
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    generator = seed_everything(cfg.seed)
    model = build_model(cfg, device) if model is None else place_model(model, cfg, device)
    if cfg.small_map_convs and device.type == "cpu":
        use_small_map_convs(model)  # before the EMA copies it: both train and validate faster
    train = training_split(cfg, data)
    validate = not cfg.train_on_public
    if schedule_info(cfg.scheduler).needs_validation and not validate:
        raise ValueError(f"scheduler {cfg.scheduler!r} needs a validation split; "
                         "train_on_public leaves none")
    # np.array copies: arrays from Ray's object store are read-only, which torch warns about.
    images = torch.from_numpy(np.array(train.images)).to(device)
    labels = torch.from_numpy(np.array(train.labels)).to(device)
    steps_per_epoch = max(len(images) // min(cfg.batch_size, len(images)), 1)
    optimizer, scheduler = build_optimizer(cfg, model, steps_per_epoch)
    ema = build_ema(cfg, model)

    start_epoch, num_updates, history, best = 1, 0, [], BestSoFar()
    if resume_state is not None:
        start_epoch, num_updates, history, best = _resume(resume_state, model, optimizer,
                                                          scheduler, generator, ema)

    def validate_on_public(module) -> dict:
        return evaluate(module, data.public_test.images, data.public_test.labels, cfg.input_size,
                        cfg.in_chans, cfg.eval_batch_size, device,
                        channels_last=cfg.channels_last, crop=cfg.crop)

    # Early stopping and keep_best hand back the best PublicTest epoch's weights (raw or EMA).
    restore_best = validate and (cfg.keep_best or cfg.early_stop_patience > 0)
    stopped_early = False
    selected = ema.module if ema is not None else model  # what the last epoch would deliver
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        stats = train_one_epoch(model, optimizer, images, labels, cfg, generator, scheduler,
                                num_updates, epoch, ema)
        num_updates = stats.pop("num_updates")
        metrics = {"epoch": epoch, **stats}
        if validate:
            val, selected = _validate_raw_and_ema(validate_on_public, model, ema, metrics)
            best.update(val, epoch, selected, keep_weights=restore_best)
        if scheduler is not None:
            scheduler.step(epoch, metrics.get("val_loss"))
        metrics["seconds"] = time.perf_counter() - t0
        stopped_early = bool(cfg.early_stop_patience) and best.stale >= cfg.early_stop_patience
        metrics["final_epoch"] = stopped_early or epoch == cfg.epochs  # lets callers mark the end
        history.append(metrics)
        if log:
            log(_format_epoch(metrics, cfg.epochs))
        if on_epoch is not None:
            on_epoch(metrics, lambda: _state(model, optimizer, scheduler, generator, epoch,
                                             num_updates, history, best, ema))
        if stopped_early:
            break
    restored = restore_best and best.weights is not None
    if restored:
        # restore the best-accuracy weights, as the seed did (the EMA's, when they were better);
        # raw and EMA modules share their keys, so either takes them
        selected.load_state_dict(best.weights)
    restore_convs(model)  # what fit hands back exports and pickles as plain timm modules
    if ema is not None:
        restore_convs(ema.module)
    return FitResult(selected, history, best_epoch=best.epoch, stopped_early=stopped_early,
                     weights_epoch=best.epoch if restored else len(history))


def _validate_raw_and_ema(validate_on_public, model, ema, metrics: dict):
    """PublicTest metrics of the raw weights and, with an EMA, of the EMA's: the better by
    accuracy is the epoch's (written into ``metrics``); returns it and its module."""
    val, selected = validate_on_public(model), model
    if ema is not None:
        val_ema = validate_on_public(ema.module)
        metrics.update(val_accuracy_raw=val["accuracy"], val_accuracy_ema=val_ema["accuracy"],
                       ema_selected=val_ema["accuracy"] > val["accuracy"])
        if metrics["ema_selected"]:
            val, selected = val_ema, ema.module
    metrics.update(val_loss=val["loss"], val_accuracy=val["accuracy"],
                   val_macro_f1=val["macro_f1"])
    return val, selected


def _resume(state: dict, model, optimizer, scheduler, generator, ema):
    """Load what :func:`_state` saved; returns (start epoch, updates, history, best so far)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if ema is not None:
        ema.module.load_state_dict(state["ema"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])  # dropout / drop_path draw from it
    if "plateau" in state and scheduler is not None:
        # timm's plateau wrapper saves only 'best': the patience count lives in torch's.
        scheduler.lr_scheduler.load_state_dict(state["plateau"])
    return (int(state["epoch"]) + 1, int(state["num_updates"]), list(state.get("history", [])),
            BestSoFar.from_state(state["best"]))


def _state(model, optimizer, scheduler, generator, epoch, num_updates, history, best,
           ema=None) -> dict:
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict() if scheduler is not None else None,
             "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
             "epoch": epoch, "num_updates": num_updates, "history": history,
             "best": best.state()}
    if ema is not None:
        state["ema"] = ema.module.state_dict()
    if scheduler is not None and hasattr(scheduler, "lr_scheduler"):
        state["plateau"] = scheduler.lr_scheduler.state_dict()
    return state


def _format_epoch(m: dict, epochs: int) -> str:
    text = f"epoch {m['epoch']:>3}/{epochs}  train_loss {m['train_loss']:.4f}"
    if "val_accuracy" in m:
        text += f"  val_loss {m['val_loss']:.4f}  val_acc {m['val_accuracy']:.4f}"
    if "val_accuracy_ema" in m:
        text += (f" ({'EMA' if m['ema_selected'] else 'raw'}; raw {m['val_accuracy_raw']:.4f},"
                 f" EMA {m['val_accuracy_ema']:.4f})")
    return text + f"  lr {m['lr']:.2e}  {m['images_per_s']:.0f} img/s  {m['seconds']:.1f}s"


# --- CLI ---------------------------------------------------------------------------------------

def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name == "extra":
            continue
        default = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            kind = {"int": int, "float": float}.get(f.type, str)
            parser.add_argument(flag, type=kind, default=default,
                                metavar=f.name.upper(), help=f"default: {default}")


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import save_model
    from .cli import EXIT_BAD_INPUT, add_data_argument, error_line, prog, resolve_data_path
    from .data import DataError, load_fer2013

    parser = argparse.ArgumentParser(
        prog=prog("fer_models.train"),
        description="Train and evaluate one FER2013 configuration (no Ray). Prints per-epoch "
                    "train loss and PublicTest accuracy; --test also scores PrivateTest once.")
    add_data_argument(parser)
    parser.add_argument("--output", help="folder for model.safetensors, config.json, metrics.json")
    parser.add_argument("--test", action="store_true", help="evaluate PrivateTest after training")
    parser.add_argument("--tta", action="store_true", help="also report ten-crop+flip TTA accuracy")
    _add_config_arguments(parser)
    args = parser.parse_args(argv)
    values = {k: v for k, v in vars(args).items() if k in TrainConfig.field_names()}
    try:
        cfg = TrainConfig.from_dict(values)
        build_model(cfg, torch.device("cpu"))  # fail fast on a bad model config or weights
        data = load_fer2013(resolve_data_path(args.data))
        needs = {"Training": "training"}
        if not cfg.train_on_public:
            needs["PublicTest"] = "validation after every epoch"
        if args.test:
            needs["PrivateTest"] = "--test"
        data.require(needs)
    except (DataError, ModelConfigError, ValueError) as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"data: {data.source}  train {len(data.train)}  public {len(data.public_test)}  "
          f"private {len(data.private_test)}", flush=True)
    result = fit(cfg, data, log=lambda s: print(s, flush=True))
    device = resolve_device(cfg.device)
    report: dict = {"config": cfg.to_dict(), "history": result.history}
    if args.test:
        for tta in ([False, True] if args.tta else [False]):
            m = evaluate(result.model, data.private_test.images, data.private_test.labels,
                         cfg.input_size, cfg.in_chans, cfg.eval_batch_size, device, tta=tta,
                         crop=cfg.crop)
            report["private_test_tta" if tta else "private_test"] = m
            print(f"PrivateTest accuracy{' (TTA)' if tta else ''}: {m['accuracy']:.4f} (n={m['n']})")
    if args.output:
        save_model(args.output, result.model, cfg)
        with open(f"{args.output}/metrics.json", "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
