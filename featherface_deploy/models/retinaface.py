"""RetinaFace-MobileNet0.25 (biubug6/Pytorch_Retinaface), the peer FeatherFace is measured against.

Same backbone and key layout as FeatherFace's ``body``, then a plain FPN (width
64, LeakyReLU(0.1)), plain-convolution SSH modules and the same 2-anchor heads.
Preprocessing (BGR − (104, 117, 123)), priors and decoding are FeatherFace's,
and ``conf`` is returned after the softmax, so one decode contract serves both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from featherface_deploy.models.backbone import LEAKY_SLOPE, MobileNetV1, conv_bn
from featherface_deploy.models.heads import Head


@dataclass(frozen=True)
class RetinaFaceConfig:
    """Hyper-parameters of a RetinaFace-MobileNet variant.

    Attributes:
        name: Registry name.
        base_width: Width of the backbone's first conv (8 = MobileNetV1 ×0.25).
        fpn_width: FPN, SSH and head width.
    """

    name: str = "retinaface-mnet025"
    base_width: int = 8
    fpn_width: int = 64


def conv_bn_no_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3×3 convolution (no bias) and BatchNorm."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(out_channels))


def conv_bn1x1(in_channels: int, out_channels: int) -> nn.Sequential:
    """1×1 convolution (no bias), BatchNorm, LeakyReLU(0.1)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(LEAKY_SLOPE),
    )


class FPN(nn.Module):
    """Top-down FPN over (C3, C4, C5) with nearest upsampling to the target size."""

    def __init__(self, in_channels: tuple[int, int, int], width: int) -> None:
        super().__init__()
        self.output1 = conv_bn1x1(in_channels[0], width)
        self.output2 = conv_bn1x1(in_channels[1], width)
        self.output3 = conv_bn1x1(in_channels[2], width)
        self.merge1 = conv_bn(width, width, 1)
        self.merge2 = conv_bn(width, width, 1)

    def forward(self, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor) -> list[torch.Tensor]:
        p3, p4, p5 = self.output1(c3), self.output2(c4), self.output3(c5)
        p4 = self.merge2(p4 + F.interpolate(p5, size=p4.shape[-2:], mode="nearest"))
        p3 = self.merge1(p3 + F.interpolate(p4, size=p3.shape[-2:], mode="nearest"))
        return [p3, p4, p5]


class SSH(nn.Module):
    """SSH context module with plain 3×3 convolutions: C/2 + C/4 + C/4 channels, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        half, quarter = out_channels // 2, out_channels // 4
        self.conv3X3 = conv_bn_no_relu(in_channels, half)
        self.conv5X5_1 = conv_bn(in_channels, quarter, 1)
        self.conv5X5_2 = conv_bn_no_relu(quarter, quarter)
        self.conv7X7_2 = conv_bn(quarter, quarter, 1)
        self.conv7x7_3 = conv_bn_no_relu(quarter, quarter)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv5X5_1(x)
        branches = [self.conv3X3(x), self.conv5X5_2(a), self.conv7x7_3(self.conv7X7_2(a))]
        return torch.relu(torch.cat(branches, dim=1))


class RetinaFace(nn.Module):
    """RetinaFace-MobileNet: ``(B, 3, H, W)`` BGR − mean → ``(loc, conf, landmarks)`` like FeatherFace.

    Args:
        config: The variant's hyper-parameters.
    """

    def __init__(self, config: RetinaFaceConfig = RetinaFaceConfig()) -> None:
        super().__init__()
        self.config = config
        width = config.fpn_width
        self.body = MobileNetV1(config.base_width)
        self.fpn = FPN(self.body.out_channels, width)
        self.ssh1 = SSH(width, width)
        self.ssh2 = SSH(width, width)
        self.ssh3 = SSH(width, width)
        self.ClassHead = nn.ModuleList(Head(width, 2) for _ in range(3))
        self.BboxHead = nn.ModuleList(Head(width, 4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(Head(width, 10) for _ in range(3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p3, p4, p5 = self.fpn(*self.body(x))
        levels = [self.ssh1(p3), self.ssh2(p4), self.ssh3(p5)]
        loc = torch.cat([head(f) for head, f in zip(self.BboxHead, levels)], dim=1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, levels)], dim=1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, levels)], dim=1)
        return loc, torch.softmax(logits, dim=-1), landmarks
