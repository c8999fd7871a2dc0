"""fer_models: FER2013 data, timm models, a batch-on-device trainer and evaluation.

One trial of the search is ``fit(TrainConfig(...), load_fer2013(path))``; this package never
imports ``search``.

Example (64 random faces, one epoch of a tiny model, a few seconds on a CPU; with real data:
``data = load_fer2013("data/fer2013.csv")``):
    >>> import numpy as np
    >>> from fer_models import FER2013, Split, TrainConfig, fit
    >>> rng = np.random.default_rng(0)
    >>> faces = Split(rng.integers(0, 256, (64, 48, 48), dtype=np.uint8), np.arange(64) % 7)
    >>> cfg = TrainConfig(backbone="resnet10t", epochs=1, batch_size=32, threads=1)
    >>> result = fit(cfg, FER2013(train=faces, public_test=faces, private_test=None))
    >>> [sorted(m) for m in result.history][0][:4]
    ['epoch', 'final_epoch', 'images_per_s', 'lr']
"""
from .augment import AugmentConfig, augment_batch, prepare_batch
from .checkpoint import load_model, save_model
from .config import TrainConfig
from .data import EMOTIONS, FER2013, SPLITS, DataError, Split, load_fer2013
from .evaluate import evaluate, metrics_from_probs, predict_proba
from .models import ModelConfigError, check_backbone, create_model, min_input_size
from .textfiles import InputFileError
from .validation import ConfigError, check_field

# The training names resolve lazily: `python -m fer_models.train` must not find its own module
# imported already by this package (runpy warns on stderr before every message).
_TRAIN_EXPORTS = ("FitResult", "NonFiniteLossError", "fit", "train_one_epoch")

__all__ = [
    "AugmentConfig", "augment_batch", "prepare_batch", "load_model", "save_model", "TrainConfig",
    "EMOTIONS", "FER2013", "SPLITS", "DataError", "Split", "load_fer2013", "evaluate",
    "metrics_from_probs", "predict_proba", "ModelConfigError", "check_backbone", "create_model",
    "min_input_size", "ConfigError", "check_field", "InputFileError", *_TRAIN_EXPORTS,
]


def __getattr__(name: str):
    if name in _TRAIN_EXPORTS:
        from . import train

        return getattr(train, name)
    raise AttributeError(f"module 'fer_models' has no attribute {name!r}")
