"""fer_models.models: the timm model factory."""
from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from fer_models.models import (NUM_CLASSES, HiddenHead, ModelConfigError, check_backbone,
                               create_model, min_input_size)

pytestmark = pytest.mark.usefixtures("torch_threads")

TINY = [name for name in ("resnet10t", "test_resnet", "test_efficientnet", "mobilenetv3_small_050")
        if timm.is_model(name)]


def forward(model: nn.Module, in_chans: int, size: int, batch: int = 2) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(batch, in_chans, size, size))


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("backbone", TINY)
def test_tiny_models_give_seven_logits(backbone, in_chans):
    size = max(48, min_input_size(backbone))
    model = create_model(backbone, input_size=size, in_chans=in_chans)
    out = forward(model, in_chans, size)
    assert out.shape == (2, NUM_CLASSES) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == in_chans


def test_other_input_sizes_run():
    model = create_model("test_resnet", input_size=75)
    assert forward(model, 1, 75).shape == (2, 7)
    assert forward(model, 1, 64).shape == (2, 7)


def test_num_classes_argument():
    assert forward(create_model("test_resnet", num_classes=3), 1, 48).shape == (2, 3)


def test_inception_v3_min_size_and_refusal():
    assert min_input_size("inception_v3") == 75
    with pytest.raises(ModelConfigError, match=r"75") as info:
        create_model("inception_v3", input_size=74)
    assert "inception_v3" in str(info.value) and "74" in str(info.value)


def test_vit_min_size_is_its_native_size():
    assert min_input_size("vit_tiny_patch16_224") == 224
    with pytest.raises(ModelConfigError, match="224"):
        create_model("vit_tiny_patch16_224", input_size=48)


@pytest.mark.parametrize("backbone", ["resnet10t", "mobilenetv3_small_050", "vgg16"])
def test_min_input_size_is_small_for_cnns(backbone):
    size = min_input_size(backbone)
    assert 8 <= size <= 48  # the 48 px FER faces fit without upscaling


@pytest.mark.parametrize("in_chans", [1, 3])
def test_min_input_size_really_runs(in_chans):
    """The probed minimum is a size the real (not meta) model accepts."""
    size = min_input_size("test_convnext")
    model = create_model("test_convnext", input_size=size, in_chans=in_chans)
    assert forward(model, in_chans, size, batch=1).shape == (1, 7)


def test_fixed_size_model_at_other_size_is_refused_or_runs():
    try:
        model = create_model("vit_tiny_patch16_224", input_size=240)
    except ModelConfigError:
        return  # refusing it up front is fine
    assert forward(model, 1, 240, batch=1).shape == (1, 7)


@pytest.mark.parametrize("typo,expected", [("resnt18", "resnet18"), ("mobilenetv3_smal_050",
                                                                      "mobilenetv3_small_050"),
                                           ("efficientnet_b9", "efficientnet_b")])
def test_unknown_backbone_suggests_close_names(typo, expected):
    with pytest.raises(ModelConfigError, match="did you mean") as info:
        create_model(typo)
    assert repr(typo) in str(info.value) and expected in str(info.value)
    with pytest.raises(ModelConfigError):
        check_backbone(typo)


def test_unknown_backbone_without_close_names():
    with pytest.raises(ModelConfigError, match="list_models"):
        create_model("zzzqqqxxx")


def test_bad_in_chans():
    with pytest.raises(ModelConfigError, match="in_chans"):
        create_model("test_resnet", in_chans=2)


def test_head_hidden_builds_the_seed_head():
    model = create_model("resnet10t", head_hidden=1024, dropout=0.5)
    assert isinstance(model, HiddenHead)
    head = list(model.head)
    assert [type(m) for m in head] == [nn.Dropout, nn.Linear, nn.ReLU, nn.Linear]
    assert head[0].p == 0.5
    assert (head[1].in_features, head[1].out_features) == (model.backbone.num_features, 1024)
    assert (head[3].in_features, head[3].out_features) == (1024, 7)
    assert model.backbone.num_features == 512
    # The backbone returns pooled features (no classifier of its own, no second dropout).
    feats = forward(model.backbone, 1, 48)
    assert feats.shape == (2, 512)
    assert model.backbone.drop_rate == 0.0
    assert forward(model, 1, 48).shape == (2, 7)


def test_head_hidden_three_channels_inception_size():
    model = create_model("test_efficientnet", head_hidden=32, in_chans=3, input_size=75)
    assert forward(model, 3, 75).shape == (2, 7)


@pytest.mark.parametrize("backbone", ["resnet10t", "mobilenetv3_small_050"])
def test_dropout_reaches_timm_drop_rate(backbone):
    assert create_model(backbone, dropout=0.3).drop_rate == 0.3
    assert create_model(backbone).drop_rate == 0.0


def test_dropout_is_active_in_train_mode_only():
    torch.manual_seed(0)
    model = create_model("test_resnet", dropout=0.5)
    x = torch.randn(4, 1, 48, 48)
    model.train()
    with torch.no_grad():
        a, b = model(x), model(x)
    assert not torch.allclose(a, b)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_drop_path_reaches_the_blocks():
    model = create_model("test_resnet", drop_path=0.2)
    rates = [m.drop_prob for m in model.modules() if type(m).__name__ == "DropPath"]
    assert rates and max(rates) > 0


# --- local pretrained weights ------------------------------------------------------------------

@pytest.fixture(scope="module")
def imagenet_like_weights(tmp_path_factory):
    """A 3-channel, 1000-class state dict of a tiny timm model, saved as .safetensors."""
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = timm.create_model("test_resnet", pretrained=False, in_chans=3, num_classes=1000)
    state = {k: v.detach().contiguous().clone() for k, v in source.state_dict().items()}
    path = tmp_path_factory.mktemp("weights") / "test_resnet_imagenet.safetensors"
    save_file(state, str(path))
    return path, state


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")  # no cache to fall back on either


def test_pretrained_file_grayscale(imagenet_like_weights, offline):
    path, saved = imagenet_like_weights
    model = create_model("test_resnet", in_chans=1, pretrained_file=path)
    state = model.state_dict()
    first = "conv1.0.weight"
    assert saved[first].shape[1] == 3 and state[first].shape[1] == 1
    torch.testing.assert_close(state[first], saved[first].sum(dim=1, keepdim=True))  # adapt_input_conv
    # Everything but the first conv and the 1000-class classifier is loaded unchanged.
    for key, value in saved.items():
        if key in (first, "fc.weight", "fc.bias") or key.endswith("num_batches_tracked"):
            continue
        assert torch.equal(state[key], value), key
    assert state["fc.weight"].shape == (7, saved["fc.weight"].shape[1])
    assert forward(model, 1, 48).shape == (2, 7)


def test_pretrained_file_rgb_and_hidden_head(imagenet_like_weights, offline):
    path, saved = imagenet_like_weights
    model = create_model("test_resnet", in_chans=3, head_hidden=64, pretrained_file=path)
    state = model.state_dict()
    assert torch.equal(state["backbone.conv1.0.weight"], saved["conv1.0.weight"])
    assert torch.equal(state["backbone.layer1.0.conv1.weight"], saved["layer1.0.conv1.weight"])
    assert forward(model, 3, 48).shape == (2, 7)


def test_pretrained_file_missing(tmp_path, offline):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(ModelConfigError, match="does not exist") as info:
        create_model("test_resnet", pretrained_file=missing)
    assert str(missing) in str(info.value)


def test_pretrained_file_of_another_model_is_a_config_error(tmp_path, offline):
    from safetensors.torch import save_file

    other = timm.create_model("test_efficientnet", pretrained=False)
    path = tmp_path / "effnet.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    with pytest.raises(ModelConfigError, match="test_resnet"):
        create_model("test_resnet", pretrained_file=path)


def test_pretrained_cache_miss_never_downloads(tmp_path, monkeypatch):
    # A cache without the weights: an error naming the fetch command, never a download (the
    # cached file is resolved locally and handed to timm as a file; tests/test_weights.py).
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_hub"))
    with pytest.raises(ModelConfigError, match="python -m search.weights"):
        create_model("test_resnet", pretrained=True)


# --- pre_logits: VGG without fc6/fc7 (Keras' include_top=False) -------------------------------

def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_vgg_without_pre_logits_is_the_keras_base_plus_classifier():
    with torch.device("meta"):  # shapes only: the full vgg16 is 134M parameters
        full = create_model("vgg16", in_chans=3)
        base = create_model("vgg16", in_chans=3, pre_logits=False, dropout=0.3)
        hidden = create_model("vgg16", in_chans=3, pre_logits=False, head_hidden=64)
        hidden_full = create_model("vgg16", in_chans=3, head_hidden=64)
        x = torch.empty(2, 3, 48, 48)
        assert full(x).shape == base(x).shape == hidden(x).shape == hidden_full(x).shape == (2, 7)
    assert _params(full) > 130e6
    assert 14.5e6 < _params(base) < 15e6  # 13 convs (14.71M) + Linear(512, 7)
    assert isinstance(base.pre_logits, nn.Identity)
    assert (base.head.fc.in_features, base.head.fc.out_features) == (512, 7)
    assert base.head.drop.p == 0.3
    # The seed head reads the width the backbone really returns: 512 without, 4096 with fc6/fc7.
    assert hidden.head[1].in_features == 512 and hidden_full.head[1].in_features == 4096


def test_pre_logits_false_changes_nothing_elsewhere():
    torch.manual_seed(0)
    a = create_model("resnet10t")
    torch.manual_seed(0)
    b = create_model("resnet10t", pre_logits=False)
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
    x = torch.randn(2, 1, 48, 48)
    torch.testing.assert_close(forward(a, 1, 48, 2) * 0, forward(b, 1, 48, 2) * 0)
    a.eval(), b.eval()
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


def test_stem_pool_false_doubles_the_feature_map_of_a_resnet():
    x = torch.zeros(2, 1, 48, 48)
    pooled, unpooled = create_model("resnet10t"), create_model("resnet10t", stem_pool=False)
    assert pooled.forward_features(x).shape[-1] == 2  # 48 px / 32
    assert unpooled.forward_features(x).shape[-1] == 3  # 48 px / 16
    assert unpooled(x).shape == (2, 7)
    # same parameters: the pool has none, so a saved model of either kind loads into its own
    assert pooled.state_dict().keys() == unpooled.state_dict().keys()
    hidden = create_model("resnet10t", stem_pool=False, head_hidden=16)
    assert hidden(x).shape == (2, 7) and isinstance(hidden.backbone.maxpool, torch.nn.Identity)


def test_stem_pool_false_without_a_stem_pool_is_a_config_error():
    with pytest.raises(ModelConfigError, match="stem_pool: false: mobilenetv3_small_050 has no pool"):
        create_model("mobilenetv3_small_050", stem_pool=False)


def test_a_model_without_stem_pool_loads_back_as_it_was_saved(tmp_path):
    from fer_models.checkpoint import load_model, save_model
    from fer_models.config import TrainConfig

    cfg = TrainConfig(backbone="resnet10t", stem_pool=False, channels_last=False)
    model = create_model("resnet10t", **cfg.architecture()).eval()
    save_model(tmp_path, model, cfg)
    loaded, loaded_cfg = load_model(tmp_path)
    x = torch.rand(2, 1, 48, 48)
    assert loaded_cfg.stem_pool is False
    assert isinstance(loaded.maxpool, nn.Identity)
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(x), model(x))
