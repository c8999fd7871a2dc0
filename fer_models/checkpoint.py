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
from .weights import WeightsError, check_weights_file

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
    cfg = _read_config(directory / CONFIG_FILE)
    model = create_model(cfg.backbone, **cfg.architecture())
    weights = directory / MODEL_FILE
    try:
        state = load_file(str(weights), device=str(device))
    except FileNotFoundError:
        raise
    except Exception as e:  # safetensors' own error type is no ValueError: name the file instead
        raise InputFileError(f"{weights}: not a readable safetensors file ({e})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # torch lists every key and shape: one line says what is wrong
        detail = " ".join(str(e).split())
        raise InputFileError(f"{weights}: its tensors do not fit {cfg.backbone} as {CONFIG_FILE} "
                             f"describes it ({detail[:300]})") from None
    if cfg.channels_last:  # the layout it was trained and scored in: the numbers the search reported
        model.to(memory_format=torch.channels_last)
    return model.to(device).eval(), cfg


def _read_config(config_file: Path) -> TrainConfig:
    try:
        return TrainConfig.from_dict(load_json_object(config_file))
    except (ValueError, TypeError, OverflowError) as e:  # a value no TrainConfig accepts
        raise e if isinstance(e, InputFileError) else InputFileError(f"{config_file}: {e}") from None


def save_state(directory: str | os.PathLike, state: dict) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state, directory / STATE_FILE)


def load_state(directory: str | os.PathLike) -> dict:
    # weights_only: a results folder may come from elsewhere; never run its pickled code.
    return torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=True)


def is_model_folder(path: str | os.PathLike) -> bool:
    """A finished model folder, as :func:`save_model` writes it (e.g. ``results/<name>/model``)."""
    path = Path(path)
    return path.is_dir() and (path / MODEL_FILE).is_file() and (path / CONFIG_FILE).is_file()


def start_from_model_folder(model: torch.nn.Module, folder: str | os.PathLike,
                            backbone: str, in_chans: int) -> list[str]:
    """Start ``model`` from a finished model of the same backbone (``pretrained_file: FOLDER``),
    e.g. to fine-tune a search's winner on more data.

    The body (everything but the classifier) must fit: the same tensors, with or without the
    seed's hidden head around it; a first conv saved for other input channels is adapted as timm
    adapts ImageNet weights (``adapt_input_conv``). The classifier is copied when it fits and is
    otherwise left freshly initialised (rebuilt). Returns the names of the tensors left fresh.
    """
    from safetensors.torch import load_file
    from timm.models import adapt_input_conv

    folder = Path(folder)
    saved_cfg = _read_config(folder / CONFIG_FILE)
    if saved_cfg.backbone != backbone:
        raise WeightsError(f"pretrained_file {folder} holds a {saved_cfg.backbone}, "
                           f"not a {backbone}")
    check_weights_file(folder / MODEL_FILE)
    saved_body, saved_head = _body_and_head(load_file(str(folder / MODEL_FILE)),
                                            bool(saved_cfg.head_hidden), backbone)
    from .models import HiddenHead

    hidden = isinstance(model, HiddenHead)  # the seed's head wraps the timm model
    own_body, own_head = _body_and_head(model.state_dict(), hidden, backbone)
    first = f"{_timm_cfg(backbone).get('first_conv')}.weight"
    if first in saved_body and saved_cfg.in_chans != in_chans:
        w = saved_body[first]
        # grey -> grey replicated: each filter spread over the 3 copies (the same response);
        # 3 -> 1: timm's adapt_input_conv sums the RGB filters.
        saved_body[first] = (w.repeat(1, 3, 1, 1) / 3 if w.shape[1] == 1 and in_chans == 3
                             else adapt_input_conv(in_chans, w))
    bad = sorted(set(own_body) ^ set(saved_body))
    bad += [k for k in own_body if k in saved_body and own_body[k].shape != saved_body[k].shape]
    if bad:
        raise WeightsError(f"pretrained_file {folder}: its weights do not fit this {backbone} "
                           f"({len(bad)} tensors differ, e.g. {', '.join(bad[:3])})")
    head_fits = (set(own_head) == set(saved_head)
                 and all(own_head[k].shape == saved_head[k].shape for k in own_head))
    prefix = "backbone." if hidden else ""
    state = {prefix + k: v for k, v in saved_body.items()}
    if head_fits:
        state.update(saved_head)
    model.load_state_dict(state, strict=False)
    return [] if head_fits else sorted(own_head)


def _timm_cfg(backbone: str) -> dict:
    import timm

    cfg = timm.models.get_pretrained_cfg(backbone)
    return cfg.to_dict() if cfg is not None else {}


def _body_and_head(state: dict, hidden: bool, backbone: str) -> tuple[dict, dict]:
    """Split a state dict into the body (keys as in the bare timm model) and the classifier."""
    prefix = "head." if hidden else f"{_timm_cfg(backbone).get('classifier') or 'head'}."
    head = {k: v for k, v in state.items() if k.startswith(prefix)}
    body = {k.removeprefix("backbone.") if hidden else k: v for k, v in state.items()
            if k not in head}
    return body, head
