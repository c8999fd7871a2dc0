"""Saving and loading models and training state without unpickling arbitrary objects.

A finished model is ``model.safetensors`` plus ``config.json`` (the resolved TrainConfig, enough
to rebuild it). Resumable training state is a ``torch.save`` file read back with
``weights_only=True``: tensors, numbers, strings, lists and dicts only.

Example (a search's ``results/<name>/model`` loads the same way):
    >>> import tempfile
    >>> from fer_models.models import create_model
    >>> folder = Path(tempfile.mkdtemp()) / "model"
    >>> _ = save_model(folder, create_model("resnet10t"), TrainConfig(backbone="resnet10t"))
    >>> model, cfg = load_model(folder)
    >>> cfg.backbone, model.training
    ('resnet10t', False)
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .config import TrainConfig
from .textfiles import InputFileError, load_json_object

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "state.pt"


def save_model(directory: str | os.PathLike, model: torch.nn.Module, cfg: TrainConfig) -> Path:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared storage; contiguous clones make any timm model serialisable.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(directory / MODEL_FILE))
    (directory / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2))
    return directory


def save_model_bytes(directory: str | os.PathLike, weights: bytes, cfg: TrainConfig) -> Path:
    """Like :func:`save_model` for weights already serialised with ``safetensors.torch.save``
    (a Ray task returns bytes, not a module)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_FILE).write_bytes(weights)
    (directory / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2))
    return directory


def load_model(directory: str | os.PathLike, device: str | torch.device = "cpu"):
    """Rebuild the model saved by :func:`save_model`; returns ``(model, TrainConfig)``."""
    from safetensors.torch import load_file

    from .models import create_model

    directory = Path(directory)
    config_file = directory / CONFIG_FILE
    try:
        cfg = TrainConfig.from_dict(load_json_object(config_file))
    except (ValueError, TypeError) as e:  # a value no TrainConfig accepts: name the file
        raise e if isinstance(e, InputFileError) else InputFileError(f"{config_file}: {e}") from None
    model = create_model(cfg.backbone, input_size=cfg.input_size, in_chans=cfg.in_chans,
                         dropout=cfg.dropout, drop_path=cfg.drop_path, head_hidden=cfg.head_hidden,
                         pre_logits=cfg.pre_logits)
    model.load_state_dict(load_file(str(directory / MODEL_FILE), device=str(device)))
    if cfg.channels_last:  # the layout it was trained and scored in: the numbers the search reported
        model.to(memory_format=torch.channels_last)
    return model.to(device).eval(), cfg


def save_state(directory: str | os.PathLike, state: dict) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state, directory / STATE_FILE)


def load_state(directory: str | os.PathLike) -> dict:
    # weights_only: a results folder may come from elsewhere; never run its pickled code.
    return torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=True)
