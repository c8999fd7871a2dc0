"""fer_models: FER2013 data, timm models, a batch-on-device trainer and evaluation.

One trial of the search is ``fit(TrainConfig(...), load_fer2013(path))``; this package never
imports ``search``.

Example:
    >>> from fer_models import TrainConfig, fit, load_fer2013
    >>> data = load_fer2013("../shared/data/fer2013-small.csv.gz")  # doctest: +SKIP
    >>> result = fit(TrainConfig(backbone="resnet10t", epochs=1), data)  # doctest: +SKIP
"""
from .augment import AugmentConfig, augment_batch, prepare_batch
from .checkpoint import load_model, save_model
from .config import TrainConfig
from .data import EMOTIONS, FER2013, SPLITS, DataError, Split, load_fer2013
from .evaluate import evaluate, metrics_from_probs, predict_proba
from .models import ModelConfigError, check_backbone, create_model, min_input_size

# The training names resolve lazily: `python -m fer_models.train` must not find its own module
# imported already by this package (runpy warns on stderr before every message).
_TRAIN_EXPORTS = ("FitResult", "NonFiniteLossError", "fit", "train_one_epoch")

__all__ = [
    "AugmentConfig", "augment_batch", "prepare_batch", "load_model", "save_model", "TrainConfig",
    "EMOTIONS", "FER2013", "SPLITS", "DataError", "Split", "load_fer2013", "evaluate",
    "metrics_from_probs", "predict_proba", "ModelConfigError", "check_backbone", "create_model",
    "min_input_size", *_TRAIN_EXPORTS,
]


def __getattr__(name: str):
    if name in _TRAIN_EXPORTS:
        from . import train

        return getattr(train, name)
    raise AttributeError(f"module 'fer_models' has no attribute {name!r}")
