"""Weighted BiFPN (EfficientDet style) over three levels, as in FeatherFace.

Two details decide whether the trained weights work and whether exports stay
correct at every input size:

- ``up`` is nearest interpolation *to the target's size* (PyTorch's floor
  semantics), not a fixed ×2, so odd feature sizes match the reference.
- ``pool`` is a TF-"same" 3×3/2 max-pool done as *zero* padding followed by an
  unpadded ``MaxPool2d``. Converters that fold the zero ``Pad`` into MaxPool's
  own padding (which pads with −inf) change the result, so the zeros are
  concatenated rather than padded (see ``_zero_pad``).

When height and width are multiples of 32, every upsampling is exactly ×2 and
every pooled map has an even size (pad 0 before, 1 after), so both can be
written without reading the input size: ``scale_factor=2`` and a constant
``F.pad``. :func:`set_bifpn_resampling` selects that form (``"stride2"``) for
converters that need shape-independent graphs (Core ML flexible shapes); the
default (``"exact"``) keeps the size-driven form that ONNX and TFLite export.
On multiples of 32 both compute the same function.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FUSION_EPS = 1e-4
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


class _Conv(nn.Module):
    """A Conv2d stored under ``.conv`` (the checkpoints' key layout)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, groups: int = 1, bias: bool = True):
        super().__init__()
        padding = kernel_size // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, 1, padding, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SeparableConvBlock(nn.Module):
    """Depthwise 3×3 (no bias), pointwise 1×1 (bias), BN; no activation."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise_conv = _Conv(channels, channels, 3, groups=channels, bias=False)
        self.pointwise_conv = _Conv(channels, channels, 1)
        self.bn = nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pointwise_conv(self.depthwise_conv(x)))


def _lateral(in_channels: int, out_channels: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(_Conv(in_channels, out_channels, 1, groups=groups),
                         nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM))


def swish(x: torch.Tensor) -> torch.Tensor:
    """x · sigmoid(x)."""
    return x * torch.sigmoid(x)


def upsample_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Nearest interpolation of ``x`` to the spatial size of ``like``."""
    return F.interpolate(x, size=like.shape[-2:], mode="nearest")


def upsample_x2(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Nearest ×2 upsampling: ``upsample_to`` when ``like`` is exactly twice the size (its size is not read)."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def even_same_maxpool(x: torch.Tensor) -> torch.Tensor:
    """``same_maxpool`` for even sizes: zero padding 0 before and 1 after, as a constant ``F.pad``."""
    return F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=0.0), 3, 2)




def set_bifpn_resampling(model: nn.Module, mode: str) -> None:
    """Chooses how every BiFPN cell of ``model`` upsamples and pools.

    Args:
        model: A model containing :class:`BiFPNCell` modules.
        mode: ``exact`` (size-driven, any input size) or ``stride2`` (fixed ×2 and constant pads,
            the same function for inputs whose height and width are multiples of 32).

    Raises:
        ValueError: Unknown mode.
    """
    if mode not in RESAMPLING:
        raise ValueError(f"unknown BiFPN resampling '{mode}'; choose one of {list(RESAMPLING)}")
    for module in model.modules():
        if isinstance(module, BiFPNCell):
            module.resampling = mode


def same_maxpool(x: torch.Tensor) -> torch.Tensor:
    """TF-"same" 3×3 stride-2 max-pool with zero padding (0/1 for even sizes, 1/1 for odd)."""
    height, width = x.shape[-2:]
    pad_h = max((-(-height // 2) - 1) * 2 + 3 - height, 0)
    pad_w = max((-(-width // 2) - 1) * 2 + 3 - width, 0)
    x = _zero_pad(x, -1, pad_w // 2, pad_w - pad_w // 2)
    x = _zero_pad(x, -2, pad_h // 2, pad_h - pad_h // 2)
    return F.max_pool2d(x, 3, 2)


def _zero_pad(x: torch.Tensor, dim: int, before: int, after: int) -> torch.Tensor:
    """Zero-pads one spatial dimension by concatenating zeros.

    Not ``F.pad``: ONNX optimisers (ONNX Runtime's ``Pad_Fusion``, onnxsim) fold a
    constant zero ``Pad`` into the following MaxPool's own padding, which pads
    with −inf and silently changes the result. A ``Concat`` cannot be folded so.
    """
    if not (before or after):
        return x
    parts = []
    if before:
        parts.append(torch.zeros_like(x.narrow(dim, 0, 1)).expand(*x.shape[:dim % 4], before, *x.shape[dim % 4 + 1:]))
    parts.append(x)
    if after:
        parts.append(torch.zeros_like(x.narrow(dim, 0, 1)).expand(*x.shape[:dim % 4], after, *x.shape[dim % 4 + 1:]))
    return torch.cat(parts, dim=dim)


_RESAMPLERS = {"exact": (upsample_to, same_maxpool), "stride2": (upsample_x2, even_same_maxpool)}
RESAMPLING = tuple(_RESAMPLERS)


def fusion_weights(raw: torch.Tensor) -> torch.Tensor:
    """Fast normalised fusion: relu(w) / (sum over all of relu(w) + 1e-4)."""
    w = torch.relu(raw)
    return w / (w.sum() + FUSION_EPS)


class BiFPNCell(nn.Module):
    """One BiFPN cell over (P3, P4, P5).

    Args:
        channels: Width of the pyramid.
        in_channels: Backbone channels (C3, C4, C5) for the first cell, which
            owns the lateral projections; ``None`` for later cells.
        lateral_groups: Groups of the lateral 1×1 projections (1 in V1/V2-CA; the
            V2-Optimized/Ultra reading of ``reduction_factor=4``, see ``featherface_v2_light``).
    """

    def __init__(self, channels: int, in_channels: tuple[int, int, int] | None = None,
                 lateral_groups: int = 1) -> None:
        super().__init__()
        self.first = in_channels is not None
        self.resampling = "exact"
        self.p4_w1 = nn.Parameter(torch.ones(2))
        self.p3_w1 = nn.Parameter(torch.ones(2))
        self.p4_w2 = nn.Parameter(torch.ones(3))
        self.p5_w2 = nn.Parameter(torch.ones(3))
        self.conv4_up = SeparableConvBlock(channels)
        self.conv3_up = SeparableConvBlock(channels)
        self.conv4_down = SeparableConvBlock(channels)
        self.conv5_down = SeparableConvBlock(channels)
        if in_channels is not None:
            c3, c4, c5 = in_channels
            self.p5_down_channel = _lateral(c5, channels, lateral_groups)
            self.p4_down_channel = _lateral(c4, channels, lateral_groups)
            self.p3_down_channel = _lateral(c3, channels, lateral_groups)
            self.p4_down_channel_2 = _lateral(c4, channels, lateral_groups)
            self.p5_down_channel_2 = _lateral(c5, channels, lateral_groups)

    def forward(self, p3: torch.Tensor, p4: torch.Tensor, p5: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.first:
            c3, c4, c5 = p3, p4, p5
            p3, p4, p5 = self.p3_down_channel(c3), self.p4_down_channel(c4), self.p5_down_channel(c5)
        up, pool = _RESAMPLERS[self.resampling]
        w = fusion_weights(self.p4_w1)
        p4_up = self.conv4_up(swish(w[0] * p4 + w[1] * up(p5, p4)))
        w = fusion_weights(self.p3_w1)
        p3_out = self.conv3_up(swish(w[0] * p3 + w[1] * up(p4_up, p3)))
        if self.first:
            p4, p5 = self.p4_down_channel_2(c4), self.p5_down_channel_2(c5)
        w = fusion_weights(self.p4_w2)
        p4_out = self.conv4_down(swish(w[0] * p4 + w[1] * p4_up + w[2] * pool(p3_out)))
        # p5_w2 has three entries; only two are used, but all three normalise.
        w = fusion_weights(self.p5_w2)
        p5_out = self.conv5_down(swish(w[0] * p5 + w[1] * pool(p4_out)))
        return p3_out, p4_out, p5_out
