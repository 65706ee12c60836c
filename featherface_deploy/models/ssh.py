"""SSH context module built from modulated deformable convolutions."""

from __future__ import annotations

import torch
from torch import nn

from featherface_deploy.models.deform_conv import ModulatedDeformConv2d

LEAKY_SLOPE = 0.1


def _dcn_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(ModulatedDeformConv2d(in_channels, out_channels), nn.BatchNorm2d(out_channels))


class DeformableSSH(nn.Module):
    """SSH with a DCNv2 in place of every 3×3 convolution.

    Output = ReLU(concat[conv3X3(x), conv5X5_2(a), conv7x7_3(conv7X7_2(a))])
    with a = LeakyReLU(conv5X5_1(x)): C/2 + C/4 + C/4 channels.

    Args:
        channels: Input and output width C (a multiple of 4).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        half, quarter = channels // 2, channels // 4
        self.conv3X3 = _dcn_bn(channels, half)
        self.conv5X5_1 = _dcn_bn(channels, quarter)
        self.conv5X5_2 = _dcn_bn(quarter, quarter)
        self.conv7X7_2 = _dcn_bn(quarter, quarter)
        self.conv7x7_3 = _dcn_bn(quarter, quarter)
        self.leaky = nn.LeakyReLU(LEAKY_SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3 = self.conv3X3(x)
        a = self.leaky(self.conv5X5_1(x))
        branch5 = self.conv5X5_2(a)
        branch7 = self.conv7x7_3(self.leaky(self.conv7X7_2(a)))
        return torch.relu(torch.cat([branch3, branch5, branch7], dim=1))
