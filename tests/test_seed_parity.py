"""The seed study's configurations build with the seed's head and input shape."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from fer_models.models import HiddenHead, create_model
from search.seed_parity import load_runs, subsample

SEED = Path(__file__).resolve().parents[1] / "spaces" / "seed.yaml"


def build(cfg):
    with torch.device("meta"):  # shapes only: vgg16 alone is 130M parameters
        return create_model(cfg.backbone, input_size=cfg.input_size, in_chans=cfg.in_chans,
                            dropout=cfg.dropout, head_hidden=cfg.head_hidden)


def test_four_runs_with_the_study_recipe():
    runs = load_runs(SEED)
    assert [(r.config.backbone, r.config.input_size) for r in runs] == [
        ("vgg16", 48), ("inception_v3", 75), ("resnet50", 48), ("inception_v3", 75)]
    for r in runs:
        c = r.config
        assert (c.optimizer, c.lr, c.scheduler, c.plateau_factor, c.plateau_patience,
                c.early_stop_patience, c.in_chans) == ("adam", 1e-3, "plateau", 0.1, 3, 5, 3)
        assert r.study  # the published number travels with the run
    assert runs[0].config.epochs == 3


@pytest.mark.parametrize("index,hidden,dropout", [(1, 1024, 0.0), (2, 1024, 0.0), (3, 1024, 0.5)])
def test_seed_head_layout(index, hidden, dropout):
    cfg = load_runs(SEED)[index].config
    model = build(cfg)
    assert isinstance(model, HiddenHead)
    drop, dense, relu, out = model.head
    assert isinstance(drop, nn.Dropout) and drop.p == dropout
    assert (dense.in_features, dense.out_features) == (model.backbone.num_features, hidden)
    assert isinstance(relu, nn.ReLU) and (out.in_features, out.out_features) == (hidden, 7)


@pytest.mark.parametrize("index", range(4))
def test_seed_input_shape(index):
    cfg = load_runs(SEED)[index].config
    model = build(cfg)
    with torch.device("meta"), torch.no_grad():
        assert model(torch.empty(2, 3, cfg.input_size, cfg.input_size)).shape == (2, 7)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 3  # grey replicated to 3 channels, as the study did


def test_vgg_run_keeps_timm_head():
    cfg = load_runs(SEED)[0].config
    assert cfg.head_hidden == 0 and not isinstance(build(cfg), HiddenHead)


def test_subsample_is_stratified(small_data):
    sub = subsample(small_data, 700)
    assert 690 <= len(sub.train) <= 710
    full = torch.bincount(torch.from_numpy(small_data.train.labels), minlength=7).float()
    part = torch.bincount(torch.from_numpy(sub.train.labels), minlength=7).float()
    assert torch.allclose(part / part.sum(), full / full.sum(), atol=0.01)
    assert sub.private_test is small_data.private_test
