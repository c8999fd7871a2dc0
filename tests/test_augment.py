"""fer_models.augment: batch augmentation and the evaluation transform."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from fer_models.augment import MEAN, STD, AugmentConfig, augment_batch, prepare_batch, to_float

pytestmark = pytest.mark.usefixtures("torch_threads")

LOW, HIGH = (0.0 - MEAN) / STD, (1.0 - MEAN) / STD  # the normalised range of 0..255
EPS = 1e-4
OFF = dict(hflip=0.0, translate=0.0, rotate=0.0, scale=0.0, erase_prob=0.0)
SIZES = [48, 64, 75]


def batch(n: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 48, 48), dtype=torch.uint8, generator=g)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def heavy() -> AugmentConfig:
    return AugmentConfig(hflip=0.5, translate=0.2, rotate=30, scale=0.3, erase_prob=0.5)


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("size", SIZES)
def test_prepare_batch_shape_dtype_range(size, in_chans):
    x = prepare_batch(batch(), size, in_chans)
    assert x.shape == (8, in_chans, size, size) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert x.min() >= LOW - EPS and x.max() <= HIGH + EPS
    if in_chans == 3:  # grey replicated
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])


def test_prepare_batch_normalises_exactly_at_48():
    imgs = batch()
    x = prepare_batch(imgs, 48)
    expected = (imgs.float() / 255.0 - MEAN) / STD
    torch.testing.assert_close(x[:, 0], expected)
    extremes = prepare_batch(torch.tensor([[[0] * 48] * 48, [[255] * 48] * 48], dtype=torch.uint8), 48)
    torch.testing.assert_close(extremes[:, 0, 0, 0], torch.tensor([LOW, HIGH]))


def test_prepare_batch_does_not_modify_input():
    imgs = batch()
    copy = imgs.clone()
    prepare_batch(imgs, 64, 3)
    augment_batch(imgs, heavy(), 64, gen(), 3)
    assert torch.equal(imgs, copy)


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("size", SIZES)
def test_augment_batch_shape_dtype_range(size, in_chans):
    x = augment_batch(batch(16), heavy(), size, gen(), in_chans)
    assert x.shape == (16, in_chans, size, size) and x.dtype == torch.float32
    assert not torch.isnan(x).any() and torch.isfinite(x).all()
    # Bilinear sampling with border padding never leaves the input's range; erasing writes 0.
    assert x.min() >= LOW - EPS and x.max() <= HIGH + EPS
    if in_chans == 3:
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])


@pytest.mark.parametrize("size", SIZES)
def test_same_seed_same_output_different_seed_different(size):
    imgs = batch(16)
    a = augment_batch(imgs, heavy(), size, gen(7))
    b = augment_batch(imgs, heavy(), size, gen(7))
    c = augment_batch(imgs, heavy(), size, gen(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_generator_advances_between_batches():
    imgs = batch(16)
    g = gen(3)
    first = augment_batch(imgs, heavy(), 48, g)
    second = augment_batch(imgs, heavy(), 48, g)
    assert not torch.allclose(first, second)


def test_global_rng_not_used():
    """Augmentation draws only from the generator passed in (reproducible inside any program)."""
    imgs = batch()
    torch.manual_seed(0)
    a = augment_batch(imgs, heavy(), 48, gen(1))
    torch.manual_seed(12345)
    torch.rand(100)
    b = augment_batch(imgs, heavy(), 48, gen(1))
    assert torch.equal(a, b)


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("size", SIZES)
def test_all_strengths_zero_equals_prepare_batch(size, in_chans):
    imgs = batch()
    cfg = AugmentConfig(**OFF)
    assert not cfg.warps
    torch.testing.assert_close(augment_batch(imgs, cfg, size, gen(), in_chans),
                               prepare_batch(imgs, size, in_chans))


@pytest.mark.parametrize("size", SIZES)
def test_identity_warp_matches_resize(size):
    """The affine path with a (numerically) identity warp samples like the plain resize."""
    imgs = batch()
    cfg = AugmentConfig(**{**OFF, "rotate": 1e-9})
    assert cfg.warps
    torch.testing.assert_close(augment_batch(imgs, cfg, size, gen()), prepare_batch(imgs, size),
                               atol=1e-4, rtol=0)


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("size", SIZES)
def test_hflip_only_is_a_mirror(size, in_chans):
    imgs = batch()
    cfg = AugmentConfig(**{**OFF, "hflip": 1.0})
    out = augment_batch(imgs, cfg, size, gen(), in_chans)
    torch.testing.assert_close(out, prepare_batch(imgs, size, in_chans).flip(-1), atol=1e-4, rtol=0)


def test_hflip_probability_half_flips_some():
    imgs = batch(64)
    out = augment_batch(imgs, AugmentConfig(**{**OFF, "hflip": 0.5}), 48, gen())
    plain = prepare_batch(imgs, 48)
    flipped = [(o - p.flip(-1)).abs().max() < 1e-4 for o, p in zip(out, plain)]
    same = [(o - p).abs().max() < 1e-4 for o, p in zip(out, plain)]
    assert all(f or s for f, s in zip(flipped, same))
    assert 10 < sum(flipped) < 54


@pytest.mark.parametrize("size", SIZES)
def test_constant_image_stays_constant_under_warps(size):
    """Border padding: rotations/shifts/zooms never invent black corners."""
    imgs = torch.full((8, 48, 48), 200, dtype=torch.uint8)
    cfg = AugmentConfig(hflip=0.5, translate=0.3, rotate=45, scale=0.4)
    out = augment_batch(imgs, cfg, size, gen())
    torch.testing.assert_close(out, torch.full_like(out, (200 / 255 - MEAN) / STD), atol=1e-5, rtol=0)


def test_translation_moves_content_by_at_most_the_fraction():
    """A single bright column shifted with translate=t stays within t*side pixels of its place."""
    imgs = torch.zeros((32, 48, 48), dtype=torch.uint8)
    imgs[:, :, 24] = 255
    out = augment_batch(imgs, AugmentConfig(**{**OFF, "translate": 0.1}), 48, gen())
    cols = out[:, 0].mean(1).argmax(1).float()  # brightest column of each image
    assert ((cols - 24).abs() <= 0.1 * 48 + 1).all()
    assert (cols != 24).any()  # and it does move


def _zero_boxes(x: torch.Tensor):
    for img in x[:, 0]:
        zeros = img == 0
        ys, xs = torch.nonzero(zeros, as_tuple=True)
        yield zeros, ys, xs


@pytest.mark.parametrize("size", SIZES)
def test_erase_prob_one_gives_a_rectangle_of_zeros(size):
    imgs = batch(16)
    cfg = AugmentConfig(**{**OFF, "erase_prob": 1.0, "erase_max_area": 0.25})
    out = augment_batch(imgs, cfg, size, gen(5))
    for zeros, ys, xs in _zero_boxes(out):
        assert len(ys) > 0, "every image gets a rectangle at erase_prob=1"
        top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
        box = zeros[top:bottom + 1, left:right + 1]
        assert box.all(), "the zeros form one filled rectangle"
        assert int(zeros.sum()) == box.numel()
        assert box.numel() <= 0.25 * size * size + 2 * size  # at most erase_max_area (+ rounding)
    # Outside the rectangle nothing changed.
    plain = prepare_batch(imgs, size)
    keep = out != 0
    assert torch.equal(out[keep], plain[keep])


def test_erase_with_warps_still_rectangle():
    out = augment_batch(batch(16), AugmentConfig(erase_prob=1.0), 64, gen(2))
    for zeros, ys, xs in _zero_boxes(out):
        assert len(ys) > 0
        assert zeros[ys.min():ys.max() + 1, xs.min():xs.max() + 1].all()


def test_erase_prob_zero_erases_nothing_and_half_erases_some():
    imgs = batch(64)
    none = augment_batch(imgs, AugmentConfig(**OFF), 48, gen())
    assert not (none == 0).any()
    half = augment_batch(imgs, AugmentConfig(**{**OFF, "erase_prob": 0.5}), 48, gen())
    erased = sum(bool((img == 0).any()) for img in half)
    assert 10 < erased < 54


def test_to_float_three_channels():
    x = to_float(batch(2), 3)
    assert x.shape == (2, 3, 48, 48)
    assert torch.equal(x[:, 0], x[:, 2])


def test_augment_config_fields_match_train_config():
    from fer_models.config import TrainConfig

    aug_fields = {f.name for f in dataclasses.fields(AugmentConfig)}
    assert aug_fields <= set(TrainConfig.field_names())
    cfg = TrainConfig(hflip=0.25, translate=0.05, rotate=3, scale=0.2, erase_prob=0.4, erase_max_area=0.1)
    assert dataclasses.asdict(cfg.augment) == {k: getattr(cfg, k) for k in aug_fields}
