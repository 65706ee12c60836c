"""MobileNetV1 ×0.25 backbone returning the stride 8, 16 and 32 feature maps."""

from __future__ import annotations

import torch
from torch import nn

LEAKY_SLOPE = 0.1


def conv_bn(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """3×3 convolution (no bias), BatchNorm, LeakyReLU(0.1)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(LEAKY_SLOPE),
    )


def conv_dw(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Depthwise 3×3 + BN + LeakyReLU, then pointwise 1×1 + BN + LeakyReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(LEAKY_SLOPE),
    )


class MobileNetV1(nn.Module):
    """MobileNetV1 feature extractor (the ImageNet classifier is not part of the detector).

    Args:
        base_width: Channels of the first convolution (8 for the ×0.25 model).
            The three outputs have 8×, 16× and 32× this many channels.
    """

    def __init__(self, base_width: int = 8) -> None:
        super().__init__()
        w = base_width
        self.stage1 = nn.Sequential(
            conv_bn(3, w, 2),
            conv_dw(w, 2 * w, 1),
            conv_dw(2 * w, 4 * w, 2),
            conv_dw(4 * w, 4 * w, 1),
            conv_dw(4 * w, 8 * w, 2),
            conv_dw(8 * w, 8 * w, 1),
        )
        self.stage2 = nn.Sequential(conv_dw(8 * w, 16 * w, 2), *[conv_dw(16 * w, 16 * w, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(conv_dw(16 * w, 32 * w, 2), conv_dw(32 * w, 32 * w, 1))
        self.out_channels = (8 * w, 16 * w, 32 * w)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c3 = self.stage1(x)
        c4 = self.stage2(c3)
        c5 = self.stage3(c4)
        return c3, c4, c5
