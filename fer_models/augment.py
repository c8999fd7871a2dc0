"""Augmentation of whole uint8 batches on the device the model runs on.

One affine warp (``affine_grid`` + ``grid_sample``) does flip, rotation, scale, translation, the
random crop and the resize to the trial's input size at once; random erasing is a broadcast mask.
Random numbers come from a CPU ``torch.Generator``, so a seed gives the same augmentation on CPU
and GPU. Mixup and CutMix (timm's ``Mixup``) act on the augmented batch in ``train.py``.

Example:
    >>> import torch
    >>> from fer_models.augment import AugmentConfig, augment_batch
    >>> batch = torch.randint(0, 256, (8, 48, 48), dtype=torch.uint8)
    >>> out = augment_batch(batch, AugmentConfig(), input_size=64, generator=torch.Generator().manual_seed(0))
    >>> out.shape
    torch.Size([8, 1, 64, 64])
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# FER2013 Training pixel statistics (0..1 scale), measured on the full Training split.
MEAN = 0.5077
STD = 0.2550


@dataclass
class AugmentConfig:
    """Strengths of each augmentation; 0 switches one off."""

    hflip: float = 0.5        # probability of a horizontal flip
    translate: float = 0.1    # max shift, as a fraction of the image side
    rotate: float = 10.0      # max rotation, degrees
    scale: float = 0.1        # zoom in [1 - scale, 1 + scale]
    erase_prob: float = 0.0   # probability of one random-erasing rectangle per image
    erase_max_area: float = 0.25  # its largest area, as a fraction of the image
    crop: int = 0             # side of a random square crop of the 48 px face; 0: the whole face

    @property
    def warps(self) -> bool:
        return bool(self.hflip or self.translate or self.rotate or self.scale or self.crop)


def to_float(images: torch.Tensor, in_chans: int = 1) -> torch.Tensor:
    """uint8 (B, H, W) -> normalised float (B, C, H, W); C=3 replicates the grey channel."""
    x = images.unsqueeze(1).float().div_(255.0).sub_(MEAN).div_(STD)
    return x.expand(-1, in_chans, -1, -1) if in_chans != 1 else x


def resize(x: torch.Tensor, input_size: int) -> torch.Tensor:
    if x.shape[-1] == input_size and x.shape[-2] == input_size:
        return x
    return F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False)


def center_crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    """The central ``crop`` x ``crop`` square of (B, C, H, W); ``crop`` 0 or >= the side: all."""
    h, w = x.shape[-2:]
    if not crop or crop >= min(h, w):
        return x
    top, left = (h - crop) // 2, (w - crop) // 2
    return x[..., top:top + crop, left:left + crop]


def prepare_batch(images: torch.Tensor, input_size: int, in_chans: int = 1,
                  crop: int = 0) -> torch.Tensor:
    """The evaluation transform: normalise, centre-crop (a model trained on random ``crop``s sees
    the middle one), resize; nothing random."""
    x = resize(center_crop(to_float(images, 1), crop), input_size)
    return x.expand(-1, in_chans, -1, -1) if in_chans != 1 else x


def augment_batch(images: torch.Tensor, cfg: AugmentConfig, input_size: int,
                  generator: torch.Generator, in_chans: int = 1) -> torch.Tensor:
    """Random training transform of a uint8 batch (B, 48, 48), returned as (B, C, S, S) float."""
    x = to_float(images, 1)
    b, device = x.shape[0], x.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return (torch.rand(b, generator=generator) * (high - low) + low).to(device)

    if cfg.warps:
        angle = uniform(-cfg.rotate, cfg.rotate) * (math.pi / 180.0)
        zoom = uniform(1.0 - cfg.scale, 1.0 + cfg.scale)
        flip = torch.where(uniform(0.0, 1.0) < cfg.hflip, -1.0, 1.0)
        # Translation in affine_grid's [-1, 1] coordinates: 2 * fraction of the side.
        tx, ty = uniform(-2 * cfg.translate, 2 * cfg.translate), uniform(-2 * cfg.translate, 2 * cfg.translate)
        if cfg.crop:
            # A crop of side c samples c/48 of the face, its centre anywhere it fits: drawn only
            # when cropping, so a recipe without a crop keeps its random sequence.
            side = min(cfg.crop / images.shape[-1], 1.0)
            tx, ty = tx + uniform(side - 1, 1 - side), ty + uniform(side - 1, 1 - side)
            zoom = zoom / side
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1),
                             torch.stack([sin * flip, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, [b, 1, input_size, input_size], align_corners=False)
        # 'border' repeats edge pixels into the uncovered corners instead of inventing black.
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    else:
        x = resize(x, input_size)
    if cfg.erase_prob > 0:
        x = _random_erase(x, cfg, generator)
    return x.expand(-1, in_chans, -1, -1) if in_chans != 1 else x


def _random_erase(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    draw = lambda: torch.rand(b, generator=generator)  # noqa: E731
    area = (0.02 + draw() * max(cfg.erase_max_area - 0.02, 0.0)) * h * w
    aspect = torch.exp(math.log(0.3) + draw() * (math.log(3.3) - math.log(0.3)))
    eh = (area * aspect).sqrt().clamp(1, h).long()
    ew = (area / aspect).sqrt().clamp(1, w).long()
    top = (draw() * (h - eh + 1).float()).long()
    left = (draw() * (w - ew + 1).float()).long()
    apply = draw() < cfg.erase_prob
    to = lambda t: t.to(x.device).view(b, 1, 1)  # noqa: E731
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    mask = (ys >= to(top)) & (ys < to(top + eh)) & (xs >= to(left)) & (xs < to(left + ew)) & to(apply)
    return x.masked_fill(mask.unsqueeze(1), 0.0)  # 0 after normalisation = the mean grey
