"""fer_models.small_map_conv: the matmul path equals nn.Conv2d, runs only where it is faster, and
leaves a trained model as plain timm modules."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fer_models import FER2013, Split, TrainConfig, fit
from fer_models.small_map_conv import (MAX_OUTPUT_PIXELS, MAX_OUTPUT_PIXELS_FP32, SmallMapConv2d,
                                       restore_convs, use_small_map_convs)

CASES = [  # (in side, kernel, stride, padding, bias): the shapes of a ResNet's last stages and more
    (2, 3, 1, 1, False), (3, 3, 2, 1, False), (3, 1, 1, 0, False), (5, 3, 2, 1, True),
    (3, 3, 1, 0, True), (4, (3, 1), (2, 1), (1, 0), False), (2, 1, 1, 0, True)]


def conv_pair(k, s, p, bias, cin=8, cout=6):
    torch.manual_seed(0)
    plain = torch.nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=bias)
    fast = torch.nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=bias)
    fast.load_state_dict(plain.state_dict())
    fast.__class__ = SmallMapConv2d
    return plain, fast


@pytest.mark.parametrize("side,k,s,p,bias", CASES)
@pytest.mark.parametrize("channels_last", [True, False])
def test_matmul_path_equals_conv_in_bf16_forward_and_backward(side, k, s, p, bias, channels_last):
    plain, fast = conv_pair(k, s, p, bias)
    x = torch.randn(4, 8, side, side)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    outs, grads = [], []
    for conv in (plain, fast):
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(xi)
        (y.float() * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs.append(y.float())
        grads.append((xi.grad, conv.weight.grad, None if conv.bias is None else conv.bias.grad))
    assert outs[0].shape == outs[1].shape
    assert torch.allclose(outs[0], outs[1], atol=0.05, rtol=0.02)  # bf16 rounding, not a bug
    for a, b in zip(grads[0], grads[1]):
        if a is not None:
            assert torch.allclose(a, b, atol=0.05 * a.abs().max().item() + 1e-3)


@pytest.mark.parametrize("side,k,s,p,bias", CASES)
def test_fp32_path_equals_conv_to_float_rounding(side, k, s, p, bias):
    plain, fast = conv_pair(k, s, p, bias)
    x = torch.randn(4, 8, side, side)
    with torch.no_grad():
        assert torch.allclose(plain(x), fast(x), atol=1e-5)


def test_matmul_runs_only_on_small_maps_and_cpu_bf16_or_fp32():
    _, fast = conv_pair(3, 1, 1, False)
    small, large = torch.randn(2, 8, 3, 3), torch.randn(2, 8, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fast._matmul_dtype(small) == torch.bfloat16   # 3x3 = 9 px <= MAX_OUTPUT_PIXELS
        assert fast._matmul_dtype(large) is None             # 36 px: oneDNN is faster there
    assert MAX_OUTPUT_PIXELS_FP32 < 9 <= MAX_OUTPUT_PIXELS
    assert fast._matmul_dtype(small) is None                 # fp32 only up to 2x2
    assert fast._matmul_dtype(torch.randn(2, 8, 2, 2)) == torch.float32
    assert fast._matmul_dtype(torch.randn(2, 8, 2, 2, dtype=torch.float64)) is None
    grouped = torch.nn.Conv2d(8, 8, 3, padding=1, groups=2)
    grouped.__class__ = SmallMapConv2d
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert grouped._matmul_dtype(small) is None          # depthwise/grouped: nn.Conv2d


def test_switch_keeps_state_dict_and_restore_gives_plain_modules():
    from fer_models.models import create_model

    model = create_model("resnet10t", input_size=48)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n = use_small_map_convs(model)
    assert n == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) > 0
    assert model.state_dict().keys() == before.keys()
    restore_convs(model)
    assert not any(type(m) is SmallMapConv2d for m in model.modules())


def test_fit_uses_the_switch_and_hands_back_plain_convs(small_data):
    from fer_models.models import create_model

    data = FER2013(Split(small_data.train.images[:128], small_data.train.labels[:128]),
                   Split(small_data.public_test.images[:64], small_data.public_test.labels[:64]),
                   None, "x")
    cfg = TrainConfig(backbone="resnet10t", epochs=1, batch_size=64, threads=1, device="cpu",
                      precision="bf16")
    for switch in (True, False):
        model = create_model("resnet10t", input_size=48)
        seen = []
        result = fit(TrainConfig.from_dict({**cfg.to_dict(), "small_map_convs": switch}), data,
                     model=model, on_epoch=lambda m, s: seen.append(
                         sum(type(c) is SmallMapConv2d for c in model.modules())))
        assert (seen[0] > 0) == switch  # while training: switched exactly when asked
        assert not any(type(c) is SmallMapConv2d for c in result.model.modules())
