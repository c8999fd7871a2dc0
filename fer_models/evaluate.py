"""Evaluation: accuracy, per-class accuracy, macro-F1, confusion matrix; optional ten-crop TTA.

Example:
    >>> from fer_models.evaluate import metrics_from_probs
    >>> import numpy as np
    >>> m = metrics_from_probs(np.eye(7)[[0, 1, 2]], np.array([0, 1, 3]))
    >>> round(m["accuracy"], 3)
    0.667
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .augment import prepare_batch, resize, to_float
from .data import EMOTIONS

TTA_CROP = 44  # ten-crop side for a model trained on whole faces: a zoom of 1.09, inside the
               # training scale range; a model trained on random crops uses its own crop side


@torch.no_grad()
def predict_proba(model: torch.nn.Module, images: torch.Tensor | np.ndarray, input_size: int,
                  in_chans: int = 1, batch_size: int = 512, device: str | torch.device = "cpu",
                  tta: bool = False, channels_last: bool = False, crop: int = 0) -> np.ndarray:
    """Class probabilities (N, 7) for uint8 images (N, 48, 48); ``tta`` averages ten crops+flips.
    ``crop``: the side of the random crops the model was trained on (0: whole faces); plain
    evaluation then sees the central crop, TTA ten crops of that side."""
    model.eval()
    device = torch.device(device)
    # A copy: arrays from Ray's object store are read-only, which torch warns about.
    images = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device, non_blocking=True)
        views = (_ten_crop(batch, input_size, in_chans, crop) if tta
                 else [prepare_batch(batch, input_size, in_chans, crop)])
        probs = 0
        for x in views:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(x)
            probs = probs + F.softmax(logits.float(), dim=1)
        out.append((probs / len(views)).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, len(EMOTIONS)), np.float32)


def _ten_crop(batch: torch.Tensor, input_size: int, in_chans: int, crop: int = 0) -> list[torch.Tensor]:
    x = to_float(batch, 1)
    h, w = x.shape[-2:]
    c = min(crop or TTA_CROP, h, w)
    corners = [(0, 0), (0, w - c), (h - c, 0), (h - c, w - c), ((h - c) // 2, (w - c) // 2)]
    crops = [resize(x[..., t:t + c, l:l + c], input_size) for t, l in corners]
    views = crops + [v.flip(-1) for v in crops]
    return [v.expand(-1, in_chans, -1, -1) if in_chans != 1 else v for v in views]


def metrics_from_probs(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, per-class accuracy, macro-F1, confusion matrix (rows: true, cols: predicted), n."""
    labels = np.asarray(labels)
    k = len(EMOTIONS)
    pred = probs.argmax(1)
    cm = np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)
    support = cm.sum(1)
    predicted = cm.sum(0)
    tp = np.diag(cm)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / support, 0.0)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0
    eps = 1e-12
    nll = float(-np.log(probs[np.arange(len(labels)), labels] + eps).mean()) if len(labels) else 0.0
    return {
        "n": int(len(labels)),
        "accuracy": float((pred == labels).mean()) if len(labels) else 0.0,
        "loss": nll,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class_accuracy": {e: float(r) for e, r in zip(EMOTIONS, recall)},
        "confusion_matrix": cm.tolist(),
    }


def evaluate(model: torch.nn.Module, images, labels, input_size: int, in_chans: int = 1,
             batch_size: int = 512, device="cpu", tta: bool = False,
             channels_last: bool = False, crop: int = 0) -> dict:
    """Metrics of ``model`` on one split (see :func:`metrics_from_probs`); ``loss`` is the NLL."""
    probs = predict_proba(model, images, input_size, in_chans, batch_size, device, tta,
                          channels_last, crop)
    return metrics_from_probs(probs, np.asarray(labels))
