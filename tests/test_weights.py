"""Transfer learning: ImageNet weights through timm's Hugging Face cache (built here from random
weights, laid out as the hub lays it out; nothing reaches a model hub), the fetch command's plan,
a results model folder as a starting point, layer-wise lr decay and the head-only warm-up."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import timm
import torch

from fer_models import FER2013, TrainConfig, fit
from fer_models.checkpoint import save_model
from fer_models.models import ModelConfigError, create_model
from fer_models.train import build_model, build_optimizer, current_lr, seed_everything
from fer_models.weights import (WeightsError, cached_weights_file, check_weights_file,
                                hub_weights)
from search import weights as fetch_cli
from search.space import load_space
from tests.bad_input import run_search
from tests.test_train import subset

REPO = Path(__file__).resolve().parents[1]
BACKBONE = "test_resnet"            # timm's tiny test model: hub weights timm/test_resnet.r160_in1k
FIRST_CONV, CLASSIFIER = "conv1.0.weight", ("fc.weight", "fc.bias")
pytestmark = pytest.mark.usefixtures("torch_threads")


def make_hub_cache(root: Path, backbone: str, state: dict | None = None,
                   filename: str = "model.safetensors") -> Path:
    """A Hugging Face hub cache holding ``backbone``'s weights file as the hub library writes it:
    models--ORG--NAME/{blobs/<hash>, refs/main, snapshots/<commit>/<file> -> blob}."""
    from safetensors.torch import save_file

    source = hub_weights(backbone)
    repo = root / f"models--{source.repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    blob = repo / "blobs" / f"blob-{backbone}"
    if state is not None:
        save_file(state, str(blob))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    link = snapshot / filename
    if not link.exists():
        link.symlink_to(os.path.relpath(blob, snapshot))
    return link


def imagenet_state(backbone: str = BACKBONE, seed: int = 1) -> dict:
    """An ImageNet-shaped (3-channel, 1000-class) state dict with known random weights."""
    torch.manual_seed(seed)
    model = timm.create_model(backbone, pretrained=False, in_chans=3, num_classes=1000)
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """(cache folder, saved state) with test_resnet's 'ImageNet' weights; offline, no fallback."""
    state = imagenet_state()
    cache = tmp_path / "hf-hub"
    make_hub_cache(cache, BACKBONE, state)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-hf-home"))
    return cache, state


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    cache = tmp_path / "empty-hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


# --- pretrained: true reads the cache ------------------------------------------------------------

def test_pretrained_loads_exactly_the_cached_weights_adapted_to_one_channel(hub_cache):
    _, saved = hub_cache
    state = create_model(BACKBONE, in_chans=1, pretrained=True).state_dict()
    # timm's adapt_input_conv: the RGB filters summed into one grey channel.
    torch.testing.assert_close(state[FIRST_CONV], saved[FIRST_CONV].sum(dim=1, keepdim=True))
    for key, value in saved.items():
        if key in (FIRST_CONV, *CLASSIFIER) or key.endswith("num_batches_tracked"):
            continue
        assert torch.equal(state[key], value), key
    assert state["fc.weight"].shape[0] == 7  # the 1000-class head replaced by a fresh 7-way one


def test_pretrained_three_channels_and_through_train_config(hub_cache):
    _, saved = hub_cache
    model = build_model(TrainConfig(backbone=BACKBONE, in_chans=3, pretrained=True),
                        torch.device("cpu"))
    assert torch.equal(model.state_dict()[FIRST_CONV], saved[FIRST_CONV])
    scratch = build_model(TrainConfig(backbone=BACKBONE, in_chans=3), torch.device("cpu"))
    assert not torch.equal(scratch.state_dict()[FIRST_CONV], saved[FIRST_CONV])


def test_pretrained_with_the_seeds_hidden_head(hub_cache):
    _, saved = hub_cache
    state = create_model(BACKBONE, in_chans=3, head_hidden=32, pretrained=True).state_dict()
    assert torch.equal(state["backbone.layer1.0.conv1.weight"], saved["layer1.0.conv1.weight"])


def test_a_cache_miss_names_the_backbone_and_the_fetch_command(empty_cache):
    with pytest.raises(ModelConfigError) as info:
        create_model(BACKBONE, pretrained=True)
    message = str(info.value)
    assert BACKBONE in message and "python -m search.weights" in message
    assert str(empty_cache) in message


def test_a_corrupt_cached_file_is_an_error_not_a_traceback(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    link = make_hub_cache(cache, BACKBONE, imagenet_state())
    blob = link.resolve()
    blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])  # a download cut short
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    with pytest.raises(ModelConfigError, match="corrupt"):
        create_model(BACKBONE, pretrained=True)


@pytest.mark.parametrize("content", [b"", b"not a weights file at all", b"\x00" * 64])
def test_check_weights_file_refuses_what_is_not_a_state_dict(tmp_path, content):
    for name in ("w.safetensors", "w.pth"):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(WeightsError, match="corrupt"):
            check_weights_file(path)


def test_pretrained_and_pretrained_file_together_are_refused():
    with pytest.raises(ValueError, match="not both"):
        TrainConfig(backbone=BACKBONE, pretrained=True, pretrained_file="x.safetensors")


# --- the search: stops before Ray without weights, uses them when cached ------------------------

PRETRAINED_SPACE = """\
name: transfer-test
search: {sampler: random, seed: 3, num_samples: 4, max_concurrent: 1, asha: false,
         checkpoint: false}
resources: {cpus_per_trial: 1}
retrain: {epochs: 1, seeds: [0], tta: false, onnx: false}
params:
  backbone: test_resnet
  pretrained: {choice: [true, false]}
  in_chans: {choice: [1, 3]}
  layer_decay: {choice: [0.0, 0.7]}
  head_warmup_epochs: 1
  epochs: 2
  batch_size: 64
  lr: 1.0e-3
"""


def search_process(space: Path, data: Path, out: Path, env: dict,
                   *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "search.run", str(space), "--data", str(data),
         "--output", str(out), "--name", "t", *args],
        cwd=REPO, capture_output=True, text=True, timeout=900, env=env)


# In process (tests/test_space.py runs the real process): run_search also checks that Ray never
# started and nothing was written.
def test_a_search_without_the_weights_stops_before_ray(tmp_path, empty_cache, tiny_csv, capsys):
    code, err = run_search(PRETRAINED_SPACE, tmp_path, tiny_csv, capsys)
    assert code == 2, err
    assert err.count("\n") == 1, err
    assert BACKBONE in err and f"python -m search.weights {tmp_path / 'space.yaml'}" in err


def test_a_search_with_a_corrupt_cached_file_stops_before_ray(tmp_path, tiny_csv, capsys,
                                                              monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)  # --weights-cache sets it: restored after
    # Deep folders make the message longer than one error line: the command must stay whole.
    cache = tmp_path.joinpath(*["a-deep-folder"] * 8, "hub")
    blob = make_hub_cache(cache, BACKBONE, imagenet_state()).resolve()
    blob.write_bytes(b"\x00" * 100)
    code, err = run_search(PRETRAINED_SPACE, tmp_path, tiny_csv, capsys,
                           args=("--weights-cache", str(cache)))
    space = tmp_path / "space.yaml"
    assert code == 2 and err.count("\n") == 1, err
    assert "corrupt" in err and BACKBONE in err and "--force" in err
    # The fetch command it names fills the cache the search reads, not the default one.
    assert f"python -m search.weights {space} --weights-cache {cache} --force" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_search_weighs_imagenet_weights_against_scratch(tmp_path, hub_cache, tiny_csv):
    """A real search (local Ray, Optuna, timm) whose trials read the cache offline; trials.csv
    and the report say which trials started from the 'ImageNet' weights."""
    cache, _ = hub_cache
    space = tmp_path / "transfer.yaml"
    space.write_text(PRETRAINED_SPACE)
    env = {**os.environ, "HF_HUB_CACHE": "", "HF_HUB_OFFLINE": ""}  # the flag alone carries it
    proc = search_process(space, tiny_csv, tmp_path / "results", env, "--weights-cache", str(cache))
    assert proc.returncode == 0, proc.stderr[-3000:]
    experiment = tmp_path / "results" / "t"
    table = pd.read_csv(experiment / "trials.csv", dtype={"trial_id": str})
    assert len(table) == 4 and (table["status"] == "completed").all(), table
    expected = table["config/pretrained"].map(
        {True: "ImageNet (timm/test_resnet.r160_in1k)", False: "from scratch"})
    assert (table["weights"] == expected).all(), table[["config/pretrained", "weights"]]
    assert table["config/pretrained"].nunique() == 2, "seed 3 samples both; pick another if not"
    report = (experiment / "report.md").read_text()
    assert "ImageNet (timm/test_resnet.r160_in1k)" in report and "from scratch" in report
    assert json.loads((experiment / "run.json").read_text())["weights_cache"] == str(cache)


# --- the fetch command's plan (offline) ----------------------------------------------------------

def test_the_fetch_plan_names_each_backbones_hub_files(tmp_path):
    space = tmp_path / "s.yaml"
    space.write_text("params:\n  backbone: {choice: [test_resnet, test_efficientnet, resnet18]}\n"
                     "  pretrained: {choice: [false, true]}\n")
    cache = tmp_path / "hub"
    make_hub_cache(cache, "test_efficientnet", imagenet_state("test_efficientnet"))
    entries = fetch_cli.plan(fetch_cli.pretrained_backbones(load_space(space)), cache)
    assert [(e.backbone, e.source.repo_id) for e in entries] == [
        ("test_resnet", "timm/test_resnet.r160_in1k"),
        ("test_efficientnet", "timm/test_efficientnet.r160_in1k"),
        ("resnet18", "timm/resnet18.a1_in1k")]
    assert all(e.source.filenames == ("model.safetensors", "pytorch_model.bin") for e in entries)
    assert [e.cached is not None for e in entries] == [False, True, False]
    assert entries[1].cached == cached_weights_file("test_efficientnet", cache)


def test_the_fetch_command_dry_run_prints_the_plan(tmp_path, capsys):
    space = tmp_path / "s.yaml"
    space.write_text("params:\n  backbone: {choice: [test_resnet, resnet18]}\n  pretrained: true\n")
    cache = tmp_path / "hub"
    make_hub_cache(cache, BACKBONE, imagenet_state())
    assert fetch_cli.main([str(space), "--weights-cache", str(cache), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "timm/test_resnet.r160_in1k" in out and "cached" in out and "MiB" in out
    assert "timm/resnet18.a1_in1k" in out and "missing" in out
    assert "1 to fetch (dry run: nothing fetched)" in out


def test_the_fetch_command_on_a_space_without_pretrained_fetches_nothing(tmp_path, capsys):
    space = tmp_path / "s.yaml"
    space.write_text("params:\n  backbone: resnet18\n")
    assert fetch_cli.main([str(space), "--dry-run"]) == 0
    assert "nothing to fetch" in capsys.readouterr().out


def test_the_fetch_command_reads_the_seed_file():
    assert fetch_cli.seed_file_backbones(REPO / "spaces" / "seed.yaml") == [
        "vgg16", "inception_v3", "resnet50"]


def test_the_fetch_command_refuses_a_bad_space_in_one_line(tmp_path, capsys):
    space = tmp_path / "s.yaml"
    space.write_text("params:\n  backbone: resnet18\n  pretrained: maybe\n")
    assert fetch_cli.main([str(space), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "params.pretrained" in err


# --- a results model folder as a starting point -------------------------------------------------

def test_a_model_folder_starts_a_new_run_with_its_head_rebuilt_when_needed(tmp_path):
    from timm.models import adapt_input_conv

    torch.manual_seed(5)
    trained = create_model(BACKBONE, in_chans=1)
    folder = save_model(tmp_path / "model", trained, TrainConfig(backbone=BACKBONE, in_chans=1))
    saved = trained.state_dict()

    same = build_model(TrainConfig(backbone=BACKBONE, pretrained_file=str(folder)), torch.device("cpu"))
    for key, value in saved.items():  # same architecture: everything, the head too
        assert torch.equal(same.state_dict()[key], value), key

    other = build_model(TrainConfig(backbone=BACKBONE, in_chans=3, head_hidden=16,
                                    pretrained_file=str(folder)), torch.device("cpu"))
    state = other.state_dict()
    # grey replicated to 3 channels: the filter spread over them, so a face gives the same response
    torch.testing.assert_close(state["backbone." + FIRST_CONV], saved[FIRST_CONV].repeat(1, 3, 1, 1) / 3)
    back = build_model(TrainConfig(backbone=BACKBONE, in_chans=1, pretrained_file=str(
        save_model(tmp_path / "rgb", other, TrainConfig(backbone=BACKBONE, in_chans=3,
                                                        head_hidden=16)))), torch.device("cpu"))
    torch.testing.assert_close(back.state_dict()[FIRST_CONV],
                               adapt_input_conv(1, state["backbone." + FIRST_CONV]))
    assert torch.equal(state["backbone.layer2.0.conv1.weight"], saved["layer2.0.conv1.weight"])
    assert state["head.1.weight"].shape == (16, saved["fc.weight"].shape[1])  # a new head


def test_a_model_folder_of_another_backbone_is_refused(tmp_path):
    folder = save_model(tmp_path / "model", create_model("test_efficientnet"),
                        TrainConfig(backbone="test_efficientnet"))
    with pytest.raises(ModelConfigError, match="holds a test_efficientnet, not a test_resnet"):
        build_model(TrainConfig(backbone=BACKBONE, pretrained_file=str(folder)), torch.device("cpu"))


def test_a_space_accepts_a_model_folder_and_refuses_a_plain_folder(tmp_path):
    folder = save_model(tmp_path / "model", create_model(BACKBONE), TrainConfig(backbone=BACKBONE))
    ok = tmp_path / "ok.yaml"
    ok.write_text(f"params:\n  backbone: {BACKBONE}\n  pretrained_file: {folder}\n")
    load_space(ok)
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"params:\n  backbone: {BACKBONE}\n  pretrained_file: {tmp_path}\n")
    with pytest.raises(ValueError, match="not a finished model folder"):
        load_space(bad)


# --- fine-tuning knobs: layer decay, head warm-up ------------------------------------------------

@pytest.mark.parametrize("head_hidden,scheduler", [(0, "none"), (16, "none"), (0, "plateau"),
                                                   (16, "cosine")])
def test_layer_decay_scales_each_groups_lr_by_depth(head_hidden, scheduler):
    cfg = TrainConfig(backbone=BACKBONE, layer_decay=0.5, lr=1e-2, scheduler=scheduler,
                      head_hidden=head_hidden, warmup_epochs=0.0)
    model = build_model(cfg, torch.device("cpu"))
    optimizer, _ = build_optimizer(cfg, model, steps_per_epoch=10)
    scale_of = {id(p): g.get("lr_scale", 1.0) for g in optimizer.param_groups for p in g["params"]}
    head = model.get_classifier()
    stem = (model.backbone if head_hidden else model).conv1[0].weight
    assert all(scale_of[id(p)] == 1.0 for p in head.parameters())      # the new head: full lr
    scales = sorted({round(s, 6) for s in scale_of.values()})
    assert len(scales) >= 3 and scales[-1] == 1.0
    assert all(b / a == pytest.approx(2.0) for a, b in zip(scales, scales[1:]))  # x0.5 per layer
    assert scale_of[id(stem)] == scales[0] < 1.0                            # the stem: least
    assert current_lr(optimizer) == pytest.approx(1e-2)                     # the top layer's lr
    for g in optimizer.param_groups:  # from the first step, whatever the schedule
        assert g["lr"] == pytest.approx(1e-2 * g.get("lr_scale", 1.0))


def test_layer_decay_reaches_the_lrs_through_the_schedule(small_data):
    data = FER2013(subset(small_data.train, 128, 0), subset(small_data.public_test, 32, 1), None,
                   small_data.source)
    cfg = TrainConfig(backbone=BACKBONE, epochs=1, batch_size=64, layer_decay=0.5, lr=1e-2,
                      scheduler="cosine", warmup_epochs=0.0, hflip=0.0, translate=0.0,
                      rotate=0.0, scale=0.0)
    captured = {}
    fit(cfg, data, on_epoch=lambda m, get_state: captured.update(
        groups=[(g.get("lr_scale", 1.0), g["lr"]) for g in get_state()["optimizer"]["param_groups"]]))
    ratios = {round(lr / scale, 12) for scale, lr in captured["groups"]}
    assert len(ratios) == 1  # every group at the same point of the schedule, times its scale


def test_head_warmup_trains_only_the_head_then_everything(small_data):
    data = FER2013(subset(small_data.train, 128, 0), subset(small_data.public_test, 32, 1), None,
                   small_data.source)
    cfg = TrainConfig(backbone=BACKBONE, epochs=2, batch_size=64, head_warmup_epochs=1,
                      weight_decay=0.05, ema_decay=0.0)
    seed_everything(cfg.seed)  # as fit does before it builds the model: the same initial weights
    initial = build_model(cfg, torch.device("cpu")).state_dict()
    snapshots = []
    fit(cfg, data, on_epoch=lambda m, get_state: snapshots.append(
        {k: v.clone() for k, v in get_state()["model"].items()}))
    after_warmup, after_all = snapshots
    head = {"fc.weight", "fc.bias"}
    for key, value in initial.items():
        if key in head:
            assert not torch.equal(after_warmup[key], value), f"{key} did not train in the warm-up"
        elif not key.endswith("num_batches_tracked"):
            # weights, and BatchNorm statistics: the body is frozen in eval mode
            assert torch.equal(after_warmup[key], value), f"{key} changed during the warm-up"
    assert not torch.equal(after_all["layer1.0.conv1.weight"], initial["layer1.0.conv1.weight"])
    assert not torch.equal(after_all["bn1.running_mean"], initial["bn1.running_mean"])


def test_a_space_refuses_weights_of_another_architecture_before_any_trial(tmp_path):
    """A weights file whose keys or shapes do not fit the backbone: found by building the model
    on the meta device when the space loads, not by a trial at run time; a fitting file passes."""
    from safetensors.torch import save_file

    from search.space import SpaceError

    other, own = tmp_path / "other.safetensors", tmp_path / "own.safetensors"
    save_file(timm.create_model("test_efficientnet", num_classes=7).state_dict(), str(other))
    save_file(timm.create_model(BACKBONE, num_classes=7).state_dict(), str(own))
    for weights, fits in ((own, True), (other, False)):
        space = tmp_path / f"{weights.stem}.yaml"
        space.write_text(f"params: {{backbone: {BACKBONE}, in_chans: 3, epochs: 1, "
                         f"pretrained_file: {weights}}}\n")
        if fits:
            load_space(space)
        else:
            with pytest.raises(SpaceError, match=rf"params\.pretrained_file: {BACKBONE}: "
                                                 "cannot load pretrained weights"):
                load_space(space)
