"""One loader for a saved model folder: a single model or an ensemble of them.

A single model is ``model.safetensors`` + ``config.json`` (see :mod:`fer_models.checkpoint`).
An ensemble is a folder with ``ensemble.json`` and one single-model folder per member; its
prediction is the mean of the members' class probabilities. Members may differ in backbone,
input size and channels: each one prepares the 48x48 faces its own way.

Example (``results/<name>/model`` or ``results/<name>/ensemble`` load the same way):
    >>> import tempfile
    >>> from fer_models.checkpoint import save_model
    >>> from fer_models.models import create_model
    >>> folder = Path(tempfile.mkdtemp()) / "model"
    >>> _ = save_model(folder, create_model("resnet10t"), TrainConfig(backbone="resnet10t"))
    >>> faces = np.zeros((2, 48, 48), dtype=np.uint8)
    >>> probs = load_predictor(folder).predict_proba(faces, tta=True)
    >>> probs.shape, bool(np.allclose(probs.sum(axis=1), 1.0, atol=1e-5))
    ((2, 7), True)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CONFIG_FILE, MODEL_FILE, is_model_folder, load_model
from .config import TrainConfig
from .textfiles import InputFileError, load_json_object

ENSEMBLE_FILE = "ensemble.json"


@dataclass
class Predictor:
    """Mean class probabilities of one or more trained models."""

    members: list[tuple[torch.nn.Module, TrainConfig]]

    @property
    def is_ensemble(self) -> bool:
        return len(self.members) > 1

    def predict_proba(self, images, tta: bool = False, device: str | torch.device = "cpu",
                      batch_size: int = 512) -> np.ndarray:
        """(N, 7) probabilities for uint8 faces (N, 48, 48); ``tta``: ten crops + flips each."""
        from .evaluate import predict_proba

        probs = [predict_proba(model.to(device), images, cfg.input_size, cfg.in_chans,
                               batch_size, device, tta, crop=cfg.crop) for model, cfg in self.members]
        return np.mean(probs, axis=0)


def save_ensemble(directory: str | os.PathLike, member_dirs: list[str | os.PathLike],
                  info: dict | None = None) -> Path:
    """Write ``ensemble.json`` naming member folders (paths relative to ``directory``)."""
    directory = Path(directory)
    names = [os.path.relpath(Path(m), directory) for m in member_dirs]
    for name in names:
        if name.startswith(".."):  # keep the folder self-contained so it can be copied alone
            raise ValueError(f"ensemble member {name} lies outside {directory}")
    record = {"combine": "mean_probability", "members": names, **(info or {})}
    (directory / ENSEMBLE_FILE).write_text(json.dumps(record, indent=2))
    return directory


def is_predictor_folder(directory: str | os.PathLike) -> bool:
    """What :func:`load_predictor` reads: an ensemble folder, or a single model folder
    (:func:`fer_models.checkpoint.is_model_folder`)."""
    return (Path(directory) / ENSEMBLE_FILE).is_file() or is_model_folder(directory)


def load_predictor(directory: str | os.PathLike, device: str | torch.device = "cpu") -> Predictor:
    """Load a single-model folder or an ensemble folder; FileNotFoundError names what is missing."""
    directory = Path(directory)
    if (directory / ENSEMBLE_FILE).is_file():
        record = load_json_object(directory / ENSEMBLE_FILE)
        members = []
        if not isinstance(record.get("members"), list) or \
                not all(isinstance(m, str) and m for m in record["members"]):
            raise InputFileError(f"{directory / ENSEMBLE_FILE}: needs a 'members' list of folders")
        for name in record["members"]:
            member = directory / name
            if not is_model_folder(member):
                raise FileNotFoundError(f"{member}: ensemble member missing {MODEL_FILE} or {CONFIG_FILE}")
            members.append(load_model(member, device))
        if not members:
            raise FileNotFoundError(f"{directory / ENSEMBLE_FILE}: lists no members")
        return Predictor(members)
    if is_model_folder(directory):
        return Predictor([load_model(directory, device)])
    raise FileNotFoundError(f"{directory}: not a model folder (needs {MODEL_FILE} and {CONFIG_FILE},"
                            f" or {ENSEMBLE_FILE})")
