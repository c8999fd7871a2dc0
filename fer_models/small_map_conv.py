"""Convolutions over tiny feature maps as one matrix product, for bf16 training on the CPU.

At 48 px a ResNet's last stages see 3x3 and 2x2 maps. oneDNN's AMX convolution kernels
(``brg_conv_fwd`` / ``brgconv_bwd_w``) are built for large maps and reach 60-190 GFLOP/s there
against 300-400 for the same multiply-adds as a matrix product: the 512->512 3x3 conv on a 2x2
map, batch 128, took 116 ms forward + backward, 19 ms as a matmul (``bench/bench_speed.py
convs``, on a Xeon with AMX). Stage 4 alone was ~45% of a resnet10t training step.

:class:`SmallMapConv2d` gathers the kernel's shifted windows of the (padded, channels-last) input
into a (B*Ho*Wo, kh*kw*C) bf16 matrix and multiplies it by the weight once; autograd differentiates
the gather and the product, both of which run at matrix speed. It keeps ``nn.Conv2d``'s
parameters, so ``state_dict``, checkpoints and ONNX export are unchanged; outside bf16 autocast on
the CPU (evaluation, CUDA, fp32 training), or for a map larger than ``MAX_OUTPUT_PIXELS``, it *is*
``nn.Conv2d``.

Example:
    >>> import torch
    >>> from fer_models.small_map_conv import SmallMapConv2d, use_small_map_convs
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, padding=1))
    >>> use_small_map_convs(net)
    1
    >>> x = torch.randn(4, 8, 2, 2)
    >>> with torch.autocast("cpu", dtype=torch.bfloat16):
    ...     y = net(x)
    >>> y.shape, y.dtype
    (torch.Size([4, 16, 2, 2]), torch.bfloat16)
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

__all__ = ["MAX_OUTPUT_PIXELS", "MAX_OUTPUT_PIXELS_FP32", "SmallMapConv2d", "use_small_map_convs", "restore_convs"]

# Output maps up to 3x3 are faster as a matmul on this project's CPU (2x2: 4-5x, 3x3: 1.1-1.5x);
# at 6x6 oneDNN's kernel is 2x faster than the gather (bench/bench_speed.py convs).
MAX_OUTPUT_PIXELS = 9
# In fp32 (evaluation) the matmul wins only at 2x2 (1.7x; at 3x3 oneDNN is 2x faster).
MAX_OUTPUT_PIXELS_FP32 = 4


class SmallMapConv2d(torch.nn.Conv2d):
    """``nn.Conv2d`` that runs as gather + matmul for small output maps under CPU bf16 autocast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self._matmul_dtype(x)
        if dtype is None:
            return super().forward(x)
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph, pw = self.padding
        b, c, h, w = x.shape
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        nhwc = x.to(dtype).permute(0, 2, 3, 1)  # a view for channels_last input
        padded = F.pad(nhwc, (0, 0, pw, pw, ph, ph)) if ph or pw else nhwc
        # One index_select gathers every window: its backward is one index_add, where slicing
        # each shift would zero-fill and add a padded-size gradient kh*kw times.
        index = _window_index(h + 2 * ph, w + 2 * pw, ho, wo, self.kernel_size, self.stride)
        cols = padded.reshape(b, -1, c).index_select(1, index).reshape(b * ho * wo, kh * kw * c)
        weight = self.weight.to(dtype).permute(0, 2, 3, 1).reshape(self.out_channels, -1)
        out = cols @ weight.t()
        if self.bias is not None:
            out = out + self.bias.to(dtype)
        # (B, Ho, Wo, O) viewed as NCHW is channels_last, the layout the next layer expects.
        return out.view(b, ho, wo, self.out_channels).permute(0, 3, 1, 2)

    def _matmul_dtype(self, x: torch.Tensor) -> torch.dtype | None:
        """The dtype the matmul path runs in for ``x``, or None where ``nn.Conv2d`` is faster."""
        if x.device.type != "cpu" or self.groups != 1 or self.dilation != (1, 1):
            return None
        if self.padding_mode != "zeros" or isinstance(self.padding, str):  # 'same' / 'valid'
            return None
        if torch.is_autocast_enabled("cpu"):
            if torch.get_autocast_dtype("cpu") != torch.bfloat16:
                return None
            dtype, limit = torch.bfloat16, MAX_OUTPUT_PIXELS
        elif x.dtype == torch.float32:
            dtype, limit = torch.float32, MAX_OUTPUT_PIXELS_FP32
        else:
            return None
        h, w = x.shape[-2:]
        ho = (h + 2 * self.padding[0] - self.kernel_size[0]) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - self.kernel_size[1]) // self.stride[1] + 1
        return dtype if ho * wo <= limit else None


@functools.lru_cache(maxsize=64)
def _window_index(hp: int, wp: int, ho: int, wo: int, kernel: tuple, stride: tuple) -> torch.Tensor:
    """Flat positions in a (hp, wp) padded map of every output pixel's window, in (oy, ox, ky, kx)
    order: the rows of the gathered matrix and, within a row, the weight's (kh, kw) order."""
    oy = torch.arange(ho).view(ho, 1, 1, 1) * stride[0]
    ox = torch.arange(wo).view(1, wo, 1, 1) * stride[1]
    ky = torch.arange(kernel[0]).view(1, 1, kernel[0], 1)
    kx = torch.arange(kernel[1]).view(1, 1, 1, kernel[1])
    return ((oy + ky) * wp + (ox + kx)).reshape(-1)


def use_small_map_convs(model: torch.nn.Module) -> int:
    """Make every plain ``nn.Conv2d`` of ``model`` a :class:`SmallMapConv2d` in place (parameters,
    hooks and ``state_dict`` untouched); returns how many were switched."""
    switched = 0
    for module in model.modules():
        if type(module) is torch.nn.Conv2d:
            module.__class__ = SmallMapConv2d
            switched += 1
    return switched


def restore_convs(model: torch.nn.Module) -> None:
    """Undo :func:`use_small_map_convs`: the model a training hands back holds plain ``nn.Conv2d``."""
    for module in model.modules():
        if type(module) is SmallMapConv2d:
            module.__class__ = torch.nn.Conv2d
