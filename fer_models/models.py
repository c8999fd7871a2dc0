"""Model factory: any timm backbone, sized for 48x48 grayscale faces and 7 emotions.

Example:
    >>> from fer_models.models import create_model
    >>> model = create_model("resnet18", input_size=48, dropout=0.3)
    >>> model(torch.zeros(2, 1, 48, 48)).shape
    torch.Size([2, 7])
"""
from __future__ import annotations

import difflib
import functools
import os
from pathlib import Path

import torch
from torch import nn

from .weights import WeightsError, check_weights_file, check_weights_source, pretrained_weights_file

NUM_CLASSES = 7


class ModelConfigError(ValueError):
    """A backbone name, input size or weights file that cannot make a model."""


class HiddenHead(nn.Module):
    """The seed study's head: pooled features -> dropout -> Dense(hidden) ReLU -> Dense(classes)."""

    def __init__(self, backbone: nn.Module, hidden: int, dropout: float, num_classes: int):
        super().__init__()
        self.backbone = backbone  # built with num_classes=0, so it returns pooled features
        # head_hidden_size: the width after timm's pre-logits block (VGG: 4096), where it has one.
        features = getattr(backbone, "head_hidden_size", None) or backbone.num_features
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, hidden),
                                  nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def get_classifier(self) -> nn.Module:  # as timm models name their head
        return self.head


def check_backbone(name: str) -> None:
    """Raise ModelConfigError, with close matches, when timm has no model of this name."""
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise ModelConfigError(f"unknown timm backbone {name!r}{hint}")


@functools.lru_cache(maxsize=None)
def _meta_model(backbone: str) -> nn.Module | None:
    """The backbone built on the meta device (shapes, no storage), or None if it cannot be."""
    import timm

    with torch.device("meta"):
        try:
            return timm.create_model(backbone, pretrained=False, in_chans=1,
                                     num_classes=NUM_CLASSES).eval()
        except Exception:
            return None


def _runs_at(model: nn.Module, size: int) -> bool:
    try:
        with torch.no_grad(), torch.device("meta"):
            model(torch.empty(1, 1, size, size))
        return True
    except Exception:
        return False


@functools.lru_cache(maxsize=None)
def min_input_size(backbone: str) -> int:
    """Smallest square input (px) the backbone accepts.

    timm's pretrained config states it for some models (inception_v3: 75). Otherwise the model is
    run on the meta device at growing sizes: the first size whose forward pass succeeds is the
    minimum. Costs milliseconds, allocates nothing.
    """
    import timm

    check_backbone(backbone)
    cfg = timm.models.get_pretrained_cfg(backbone)
    stated = getattr(cfg, "min_input_size", None) if cfg is not None else None
    if stated:
        return int(stated[-1])
    model = _meta_model(backbone)
    if model is None:
        return 32  # cannot probe: a conservative floor that all CNNs in timm accept
    coarse = next((s for s in range(8, 257, 8) if _runs_at(model, s)), None)
    if coarse is None:
        return 32
    return max(8, next(s for s in range(max(coarse - 7, 1), coarse + 1) if _runs_at(model, s)))


@functools.lru_cache(maxsize=None)
def accepts_input_size(backbone: str, input_size: int) -> bool:
    """Whether a forward pass at this size works, tried on the meta device (no compute).
    Catches fixed-size models (ViT, MaxViT, ...) that only run at their native size."""
    model = _meta_model(backbone)
    return True if model is None else _runs_at(model, input_size)  # unknown: the build decides


@functools.lru_cache(maxsize=None)
def check_model_option(backbone: str, option: str, value) -> None:
    """Build ``backbone`` with one option that only some backbones take (``drop_path``,
    ``stem_pool``, a ``pretrained_file`` of weights, whose keys and shapes must fit) on the meta
    device (shapes only, no compute): ModelConfigError as a trial's build would raise it, before
    any trial runs. Another failure of the meta build is left to the real build."""
    size = max(48, min_input_size(backbone))
    try:
        check_input_size(backbone, size)
    except ModelConfigError:
        return  # a size matter, checked with the sizes themselves
    try:
        with torch.device("meta"):
            create_model(backbone, input_size=size, **{option: value})
    except ModelConfigError:
        raise
    except Exception:
        return


def check_input_size(backbone: str, input_size: int) -> None:
    smallest = min_input_size(backbone)
    if input_size < smallest:
        raise ModelConfigError(f"{backbone} needs input_size >= {smallest} px, got {input_size}")
    if not accepts_input_size(backbone, input_size):
        raise ModelConfigError(f"{backbone} does not run at input_size {input_size} px (a "
                               "fixed-size model? try its native size)")


def create_model(backbone: str, *, input_size: int = 48, num_classes: int = NUM_CLASSES,
                 in_chans: int = 1, dropout: float = 0.0, drop_path: float = 0.0,
                 head_hidden: int = 0, pre_logits: bool = True, stem_pool: bool = True,
                 pretrained: bool = False,
                 pretrained_file: str | os.PathLike | None = None) -> nn.Module:
    """Build a timm model for FER.

    Args:
        backbone: any ``timm`` model name.
        input_size: the side of the square input; refused when below the backbone's minimum.
        in_chans: 1 (grayscale, timm sums the first conv's pretrained weights over RGB) or 3
            (grayscale replicated, as the seed study did).
        dropout: dropout before the classifier (timm's ``drop_rate``).
        drop_path: stochastic depth rate, for backbones that have it.
        head_hidden: 0 keeps timm's head; >0 uses the seed's pool -> dropout -> Dense(hidden)
            ReLU -> Dense(7) head.
        pre_logits: False drops timm's pre-logits MLP where the backbone has one: VGG's fc6/fc7,
            4096-wide convolutions (a 7x7 one over the 1x1 map of a 48 px face, pooled up to
            7x7), 119M of vgg16's 134M parameters. What is left is Keras' ``include_top=False``
            VGG: pooled conv features -> (dropout) -> classifier. No-op for other backbones.
        stem_pool: False drops the max-pool after a ResNet's stem (timm's ResNet family): its
            stride-4 stem leaves a 12 px map of a 48 px face for the first stage and 2x2 at the
            end; without the pool each stage sees twice the side, for ~3x the compute.
            A ModelConfigError for backbones without one.
        pretrained: timm's ImageNet weights for ``backbone``, read from the Hugging Face hub
            cache (:mod:`fer_models.weights`); never downloaded here, a cache miss is an error.
        pretrained_file: ImageNet (or other) weights from a local ``.safetensors``/``.pth`` file.
            Either way timm adapts the input conv to ``in_chans`` and drops the 1000-class
            classifier.
    """
    import timm

    check_backbone(backbone)
    check_input_size(backbone, input_size)
    if in_chans not in (1, 3):
        raise ModelConfigError(f"in_chans must be 1 or 3, got {in_chans}")
    kwargs: dict = dict(in_chans=in_chans, num_classes=0 if head_hidden else num_classes,
                        drop_rate=0.0 if head_hidden else dropout)
    if drop_path:
        kwargs["drop_path_rate"] = drop_path
    try:
        check_weights_source(pretrained, pretrained_file)
    except WeightsError as e:
        raise ModelConfigError(str(e)) from None
    if pretrained or pretrained_file is not None:
        try:  # both check the file: a corrupt one is a one-line error, not timm's traceback
            path = pretrained_weights_file(backbone) if pretrained else Path(pretrained_file)
            if not pretrained:
                check_weights_file(path)
        except WeightsError as e:
            raise ModelConfigError(str(e)) from None
        # timm loads a 'file' before any hub source: the cached file, so nothing is downloaded.
        kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    try:
        model = timm.create_model(backbone, **kwargs)
    except TypeError as e:
        if "drop_path_rate" in str(e):
            raise ModelConfigError(f"{backbone} has no stochastic depth; set drop_path: 0") from None
        raise
    except (OSError, RuntimeError) as e:
        if kwargs.get("pretrained"):
            raise ModelConfigError(f"cannot load pretrained weights for {backbone}: {e}") from None
        raise
    if not pre_logits:
        _drop_pre_logits(model, kwargs["num_classes"], kwargs["drop_rate"])
    if not stem_pool:
        _drop_stem_pool(model, backbone)
    if head_hidden:
        model = HiddenHead(model, head_hidden, dropout, num_classes)
    return model


def _drop_stem_pool(model: nn.Module, backbone: str) -> None:
    pool = getattr(model, "maxpool", None)
    if not isinstance(pool, nn.Module) or isinstance(pool, nn.Identity):
        raise ModelConfigError(f"stem_pool: false: {backbone} has no pool after its stem to drop "
                               "(timm's ResNet family has one)")
    model.maxpool = nn.Identity()


def _drop_pre_logits(model: nn.Module, num_classes: int, drop_rate: float) -> None:
    from timm.layers import ClassifierHead
    from timm.models.vgg import VGG

    if not isinstance(model, VGG):
        return
    # As timm's own VGG does for features_only: the MLP becomes an identity, the head reads the
    # pooled conv features.
    model.pre_logits = nn.Identity()
    model.head = ClassifierHead(model.num_features, num_classes, pool_type="avg", drop_rate=drop_rate)
    model.head_hidden_size = model.num_features
