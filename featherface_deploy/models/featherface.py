"""The FeatherFace detector: MobileNetV1 → BiFPN → deformable SSH (→ CA) → shuffle → heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from featherface_deploy.models.attention import CoordinateAttention
from featherface_deploy.models.backbone import MobileNetV1
from featherface_deploy.models.bifpn import BiFPNCell
from featherface_deploy.models.heads import Head, channel_shuffle
from featherface_deploy.models.ssh import DeformableSSH

@dataclass(frozen=True)
class FeatherFaceConfig:
    """Architecture hyper-parameters of one FeatherFace variant.

    Attributes:
        name: Registry name.
        base_width: Width of the backbone's first conv (8 = MobileNetV1 ×0.25).
        fpn_width: BiFPN, SSH and head width.
        fpn_cells: Number of BiFPN cells.
        coordinate_attention: Whether Coordinate Attention follows each SSH (V2).
    """

    name: str
    base_width: int = 8
    fpn_width: int = 56
    fpn_cells: int = 2
    coordinate_attention: bool = False


class FeatherFace(nn.Module):
    """FeatherFace face detector.

    The forward pass takes a BGR − mean image batch (B, 3, H, W), any H×W, and
    returns ``(loc, conf, landmarks)`` shaped (B, N, 4), (B, N, 2) and
    (B, N, 10) with N = 2 · Σ_levels ceil(H/s)·ceil(W/s). ``conf`` holds
    softmax probabilities (index 1 = face).

    Args:
        config: The variant's hyper-parameters.
    """

    def __init__(self, config: FeatherFaceConfig) -> None:
        super().__init__()
        self.config = config
        width = config.fpn_width
        self.body = MobileNetV1(config.base_width)
        self.bifpn = nn.ModuleList(
            BiFPNCell(width, self.body.out_channels if i == 0 else None) for i in range(config.fpn_cells)
        )
        self.ssh1 = DeformableSSH(width)
        self.ssh2 = DeformableSSH(width)
        self.ssh3 = DeformableSSH(width)
        if config.coordinate_attention:
            self.ca_p3 = CoordinateAttention(width)
            self.ca_p4 = CoordinateAttention(width)
            self.ca_p5 = CoordinateAttention(width)
        self.ClassHead = nn.ModuleList(Head(width, 2) for _ in range(3))
        self.BboxHead = nn.ModuleList(Head(width, 4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(Head(width, 10) for _ in range(3))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Returns the three head inputs (after SSH, attention and shuffle)."""
        p3, p4, p5 = self.body(x)
        for cell in self.bifpn:
            p3, p4, p5 = cell(p3, p4, p5)
        levels = [self.ssh1(p3), self.ssh2(p4), self.ssh3(p5)]
        if self.config.coordinate_attention:
            levels = [self.ca_p3(levels[0]), self.ca_p4(levels[1]), self.ca_p5(levels[2])]
        return [channel_shuffle(level) for level in levels]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        levels = self.features(x)
        loc = torch.cat([head(f) for head, f in zip(self.BboxHead, levels)], dim=1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, levels)], dim=1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, levels)], dim=1)
        return loc, torch.softmax(logits, dim=-1), landmarks
