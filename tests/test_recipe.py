"""The training recipe's additions: random crop + matching ten-crop, timm Mixup/CutMix, timm
ModelEmaV3, SGD with Nesterov momentum; each does what it says and a seeded run repeats exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_models import FER2013, TrainConfig, evaluate, fit
from fer_models.augment import MEAN, STD, AugmentConfig, augment_batch, prepare_batch, to_float
from fer_models.checkpoint import load_state, save_state
from fer_models.evaluate import _ten_crop
from fer_models.train import build_model, build_optimizer, train_one_epoch
from tests.test_train import TIMING_KEYS, cfg_, metrics_only, states_equal, subset

pytestmark = pytest.mark.usefixtures("torch_threads")
NO_WARP = dict(hflip=0.0, translate=0.0, rotate=0.0, scale=0.0, erase_prob=0.0)
RECIPE = dict(crop=40, input_size=40, mixup_alpha=0.4, cutmix_alpha=1.0, ema_decay=0.99, dropout=0.2)


@pytest.fixture(scope="module")
def tiny(small_data) -> FER2013:
    return FER2013(subset(small_data.train, 256, 0), subset(small_data.public_test, 64, 1), None,
                   small_data.source)


def ramp(n: int = 4) -> torch.Tensor:
    """Faces whose pixel value is the column index (0..47): a crop's position is readable."""
    return torch.arange(48, dtype=torch.uint8).repeat(n, 48, 1)


# --- random crop / ten-crop --------------------------------------------------------------------

@pytest.mark.parametrize("crop", [32, 40, 44])
def test_random_crop_is_a_window_of_the_crop_side_anywhere_it_fits(crop):
    out = augment_batch(ramp(64), AugmentConfig(**NO_WARP, crop=crop), crop, torch.Generator().manual_seed(0))
    pixels = out[:, 0] * STD * 255 + MEAN * 255           # back to column indices
    steps = pixels[:, :, 1:] - pixels[:, :, :-1]
    torch.testing.assert_close(steps, torch.ones_like(steps), atol=2e-3, rtol=0)  # 1 px per pixel
    left = pixels[:, 0, 0]        # the first sample, half a pixel in: the crop's left edge
    assert left.min() >= -1e-3 and left.max() <= 48 - crop + 1e-3
    assert left.max() - left.min() > (48 - crop) / 2      # positions spread over the range


def test_crop_off_leaves_the_random_sequence_unchanged():
    cfg = AugmentConfig(hflip=0.5, translate=0.1, rotate=10, scale=0.1)
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    augment_batch(ramp(), cfg, 48, a)
    augment_batch(ramp(), AugmentConfig(**{**cfg.__dict__, "crop": 0}), 48, b)
    assert torch.equal(a.get_state(), b.get_state())


@pytest.mark.parametrize("crop,size", [(44, 44), (40, 64)])
def test_evaluation_sees_the_central_crop_and_ten_crops_of_that_side(crop, size):
    faces = torch.randint(0, 256, (4, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    plain = prepare_batch(faces, size, 1, crop)
    o = (48 - crop) // 2
    expected = torch.nn.functional.interpolate(to_float(faces)[..., o:o + crop, o:o + crop],
                                               size=(size, size), mode="bilinear", align_corners=False)
    torch.testing.assert_close(plain, expected if size != crop else to_float(faces)[..., o:o + crop, o:o + crop])
    views = _ten_crop(faces, size, 1, crop)
    assert len(views) == 10 and all(v.shape == (4, 1, size, size) for v in views)
    torch.testing.assert_close(views[4], plain)                    # the centre view
    torch.testing.assert_close(views[0], prepare_batch(faces[..., :crop, :crop], size))  # a corner


# --- mixup / cutmix ----------------------------------------------------------------------------

def _model_inputs(cfg: TrainConfig, data: FER2013) -> list[torch.Tensor]:
    """The batches the model is fed in one epoch (a forward pre-hook records them)."""
    torch.manual_seed(0)
    model = build_model(cfg, torch.device("cpu"))
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    optimizer, _ = build_optimizer(cfg, model, 1)
    images, labels = torch.from_numpy(data.train.images), torch.from_numpy(data.train.labels)
    train_one_epoch(model, optimizer, images, labels, cfg, torch.Generator().manual_seed(0))
    return seen


def test_mixup_blends_each_batch_with_its_mirror(tiny):
    plain = _model_inputs(cfg_(channels_last=False), tiny)
    mixed = _model_inputs(cfg_(channels_last=False, mixup_alpha=0.4), tiny)
    assert len(plain) == len(mixed) == 4  # same batches: mixing leaves the batch order alone
    for x, m in zip(plain, mixed):
        # lam * x + (1 - lam) * flip(x): adding the mirror cancels lam
        torch.testing.assert_close(m + m.flip(0), x + x.flip(0), atol=1e-5, rtol=0)
        assert not torch.allclose(m, x)


def test_cutmix_pastes_one_box_from_the_mirror(tiny):
    plain = _model_inputs(cfg_(channels_last=False), tiny)
    cut = _model_inputs(cfg_(channels_last=False, cutmix_alpha=1.0), tiny)
    for x, c in zip(plain, cut):
        from_mirror = (c == x.flip(0)) & (c != x)
        pasted = from_mirror.any(0)[0]                  # where any image took its mirror's pixels
        rows, cols = pasted.any(1).nonzero(), pasted.any(0).nonzero()
        assert len(rows) and len(cols)
        box = torch.zeros_like(pasted)
        box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
        assert torch.equal(c[:, :, ~box], x[:, :, ~box])  # outside one rectangle nothing changed


def test_mixup_trains_on_soft_targets(tiny):
    cfg = cfg_(mixup_alpha=0.4, label_smoothing=0.1, epochs=1)
    hard = fit(cfg_(label_smoothing=0.1, epochs=1), tiny).history[0]["train_loss"]
    assert fit(cfg, tiny).history[0]["train_loss"] != hard


def test_odd_batch_size_still_mixes(tiny):
    result = fit(cfg_(batch_size=63, mixup_alpha=0.4, epochs=1), tiny)
    assert np.isfinite(result.history[0]["train_loss"])


# --- EMA -----------------------------------------------------------------------------------------

def test_ema_is_validated_and_the_better_model_is_returned(tiny):
    result = fit(cfg_(ema_decay=0.999, epochs=3), tiny)
    for h in result.history:
        assert h["val_accuracy"] == max(h["val_accuracy_raw"], h["val_accuracy_ema"])
        assert h["ema_selected"] == (h["val_accuracy_ema"] > h["val_accuracy_raw"])
    last = result.history[-1]
    got = evaluate(result.model, tiny.public_test.images, tiny.public_test.labels, 48)
    assert got["accuracy"] == pytest.approx(last["val_accuracy"])


def test_ema_follows_the_weights_it_averages(tiny):
    """Decay ~0: the average is the latest weights; a long memory (with warm-up) lags them."""
    def ema_params(decay):
        from fer_models.train import build_ema
        torch.manual_seed(0)
        model = build_model(cfg_(), torch.device("cpu"))
        ema = build_ema(cfg_(ema_decay=decay), model)
        optimizer, _ = build_optimizer(cfg_(), model, 1)
        train_one_epoch(model, optimizer, torch.from_numpy(tiny.train.images),
                        torch.from_numpy(tiny.train.labels), cfg_(), torch.Generator().manual_seed(0),
                        ema=ema)
        return model, ema.module

    model, follows = ema_params(1e-9)
    assert states_equal(model, follows)
    model, lags = ema_params(0.999)
    assert not states_equal(model, lags)


def test_train_on_public_returns_the_ema(tiny):
    result = fit(cfg_(ema_decay=0.999, epochs=1, train_on_public=True), tiny)
    assert "val_accuracy" not in result.history[0]
    assert not result.model.training  # ModelEmaV3 keeps its copy in eval mode


# --- SGD with Nesterov momentum ----------------------------------------------------------------

def test_sgd_is_nesterov_with_the_configured_momentum(tiny):
    cfg = cfg_(optimizer="sgd", lr=0.05, momentum=0.8, weight_decay=5e-4)
    optimizer, _ = build_optimizer(cfg, build_model(cfg, torch.device("cpu")), 4)
    assert isinstance(optimizer, torch.optim.SGD)
    assert all(g["nesterov"] and g["momentum"] == 0.8 for g in optimizer.param_groups)
    decays = sorted({g["weight_decay"] for g in optimizer.param_groups})
    assert decays == [0.0, 5e-4]  # timm's factory spares biases and norms
    assert np.isfinite(fit(cfg, tiny).history[-1]["train_loss"])


# --- the whole recipe, seeded ------------------------------------------------------------------

def test_the_full_recipe_repeats_exactly_and_resumes_exactly(tiny, tmp_path):
    cfg = cfg_(**RECIPE)

    def on_epoch(metrics, get_state):
        if metrics["epoch"] == 1:
            save_state(tmp_path, get_state())

    first = fit(cfg, tiny, on_epoch=on_epoch)
    second = fit(cfg, tiny)
    assert metrics_only(first.history) == metrics_only(second.history)
    assert states_equal(first.model, second.model)
    resumed = fit(cfg, tiny, resume_state=load_state(tmp_path))
    assert metrics_only(resumed.history) == metrics_only(first.history)
    assert states_equal(resumed.model, first.model)
    assert set(first.history[0]) - TIMING_KEYS >= {"val_accuracy_ema", "val_accuracy_raw"}


# --- a crop model outside the trainer: saved, loaded, exported ---------------------------------

def test_a_crop_model_predicts_and_exports_its_centre_crop(tmp_path):
    from fer_models import load_model, save_model
    from fer_models.evaluate import predict_proba
    from fer_models.export import export_onnx, onnx_probabilities
    from fer_models.models import create_model

    cfg = TrainConfig(backbone="test_resnet", crop=40, input_size=40, channels_last=False)
    torch.manual_seed(0)
    folder = save_model(tmp_path / "model", create_model(cfg.backbone, input_size=40), cfg)
    model, loaded = load_model(folder)
    assert loaded.crop == 40
    faces = torch.randint(0, 256, (6, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    # the border outside the central 40 px does not change a prediction
    framed = faces.clone()
    framed[:, :4], framed[:, -4:], framed[:, :, :4], framed[:, :, -4:] = 0, 255, 0, 255
    probs = predict_proba(model, faces, 40, crop=40)
    np.testing.assert_allclose(predict_proba(model, framed, 40, crop=40), probs, atol=1e-6)
    onnx = onnx_probabilities(export_onnx(folder), framed.numpy())
    np.testing.assert_allclose(onnx, probs, atol=1e-4)
