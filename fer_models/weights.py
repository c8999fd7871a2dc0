"""Pretrained weights on this machine: timm's ImageNet weights in the Hugging Face hub cache,
and the check that a weights file reads as one. (A finished model folder as a starting point:
``checkpoint.start_from_model_folder``.)

Nothing here downloads. ``pretrained: true`` reads the weights timm would fetch from the file
the Hugging Face hub cache already holds (``search.weights`` fills the cache, once, before a
search); a cache miss is an error naming the backbone, never a download from a worker.

Example (a cache laid out as the hub lays it out; the tests build one from random weights):
    >>> source = hub_weights("resnet18")
    >>> source.repo_id, source.filenames
    ('timm/resnet18.a1_in1k', ('model.safetensors', 'pytorch_model.bin'))
    >>> cached_weights_file("resnet18", cache_dir="/nonexistent") is None
    True
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

# What timm's load_state_dict_from_hf tries, in order, when a config names no file.
HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")
CACHE_ENV = "HF_HUB_CACHE"
FETCH_COMMAND = "python -m search.weights"


class WeightsError(ValueError):
    """Weights that are missing, unreadable or do not fit the model; one line, no traceback."""


@dataclass(frozen=True)
class HubWeights:
    """The pretrained weights timm loads for a backbone: a hub repo and the files it tries."""
    backbone: str
    repo_id: str          # e.g. timm/resnet18.a1_in1k (the default tag of 'resnet18')
    revision: str | None
    filenames: tuple[str, ...]


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, resolved now (not when huggingface_hub was imported), from
    ``HF_HUB_CACHE``, else ``HF_HOME``/hub, else ``XDG_CACHE_HOME``/huggingface/hub, else
    ~/.cache/huggingface/hub: the same order the hub library uses."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


def hub_weights(backbone: str) -> HubWeights:
    """The hub repo and files of ``backbone``'s default pretrained weights (timm's config)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(backbone)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        raise WeightsError(f"timm has no Hugging Face hub weights for {backbone}; give "
                           "pretrained_file (a local weights file) instead")
    repo_id, _, revision = hub_id.partition("@")
    filenames = (cfg.hf_hub_filename,) if getattr(cfg, "hf_hub_filename", None) else HUB_FILENAMES
    return HubWeights(backbone, repo_id, revision or None, filenames)


def cached_weights_file(backbone: str, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The cached file ``pretrained: true`` loads for ``backbone``, or None when not cached."""
    from huggingface_hub import try_to_load_from_cache

    source = hub_weights(backbone)
    cache = str(cache_dir) if cache_dir is not None else str(hub_cache_dir())
    for name in source.filenames:
        found = try_to_load_from_cache(source.repo_id, name, cache_dir=cache,
                                       revision=source.revision)
        if isinstance(found, str):
            return Path(found)
    return None


def check_weights_source(pretrained: bool, pretrained_file) -> None:
    """The one rule across two fields: a model starts from ImageNet weights or from a file, not
    both (checked by TrainConfig, create_model and a space that could propose both)."""
    if pretrained and pretrained_file is not None:
        raise WeightsError("pretrained_file: give pretrained (ImageNet weights) or "
                           "pretrained_file, not both")


def check_weights_file(path: str | os.PathLike) -> None:
    """Raise WeightsError unless ``path`` reads as a state dict (safetensors header and sizes, or
    a torch file loadable with ``weights_only``). Cheap: tensors are memory-mapped, not read."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                if not list(f.keys()):
                    raise ValueError("no tensors")
        else:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as e:  # mmap needs the zip format; an old-format file reads whole
                if "mmap" not in str(e):
                    raise
                state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise ValueError(f"holds a {type(state).__name__}, not a state dict")
    except WeightsError:
        raise
    except Exception as e:  # safetensors, pickle and zip errors share no base class
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"weights file {path} is corrupt or not a weights file: {reason}") from None


def pretrained_weights_file(backbone: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The checked cache file of ``backbone``; WeightsError naming the fetch command if absent."""
    found = cached_weights_file(backbone, cache_dir)
    if found is None:
        source = hub_weights(backbone)
        raise WeightsError(f"no ImageNet weights for {backbone} ({source.repo_id}) in the "
                           f"Hugging Face cache {cache_dir or hub_cache_dir()}; fetch them once "
                           f"with: {FETCH_COMMAND} SPACE.yaml (or set {CACHE_ENV})")
    check_weights_file(found)
    return found


def describe_weights(backbone: str, pretrained: bool = False,
                     pretrained_file: str | None = None) -> str:
    """What a run starts from, in words for tables: 'ImageNet (timm/...)', 'file NAME',
    'from scratch'."""
    if pretrained:
        try:
            return f"ImageNet ({hub_weights(backbone).repo_id})"
        except WeightsError:
            return "ImageNet"
    if pretrained_file:
        return f"file {pretrained_file}"
    return "from scratch"
