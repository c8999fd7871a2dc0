"""Reading an experiment's TensorBoard runs back with TensorBoard's own loader, for the tests."""
from __future__ import annotations

from pathlib import Path

__all__ = ["load_run", "scalars", "hparams_content", "session_start", "session_end"]

SIZE_ALL = {k: 0 for k in ("compressedHistograms", "images", "audio", "scalars", "histograms",
                           "tensors")}


def load_run(path: Path):
    """One run folder's events, every one kept (no reservoir sampling)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance=SIZE_ALL)
    acc.Reload()
    return acc


def scalars(path: Path, tag: str) -> dict[int, float]:
    """``{step: value}`` of one tag in a run folder; empty while the tag has no event yet."""
    acc = load_run(path)
    if tag not in acc.Tags()["scalars"]:
        return {}
    return {e.step: e.value for e in acc.Scalars(tag)}


def hparams_content(acc) -> dict:
    try:
        return acc.PluginTagToContent("hparams")
    except KeyError:
        return {}


def session_start(acc):
    from tensorboard.plugins.hparams import metadata

    content = hparams_content(acc).get(metadata.SESSION_START_INFO_TAG)
    return None if content is None else metadata.parse_session_start_info_plugin_data(content)


def session_end(acc):
    from tensorboard.plugins.hparams import metadata

    content = hparams_content(acc).get(metadata.SESSION_END_INFO_TAG)
    return None if content is None else metadata.parse_session_end_info_plugin_data(content)
