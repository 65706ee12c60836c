"""A small detector-shaped graph of every block V2-Optimized and V2-Ultra add to V1's, for fast export tests.

A full V2-Ultra has ~550 ONNX nodes and takes minutes to convert to TFLite on
the CI machine; its backbone and BiFPN are V1's and have their own export
tests. This probe keeps one instance of each *new* block, built from the real
model code: a strided stem makes three levels, then Smart Feature Reuse
(nearest up- and down-resizes), the CBAM_Plus stage with both managers'
gates, Attention Multiplication, Progressive Enhancement and Multi-Scale
Intelligence (bilinear rescales at non-integer ratios), Dynamic Weight
Sharing, SSH_Grouped, ChannelShuffle_Light and a SharedMultiHead. Full-model
parity at 640×640 on real photos is measured by
``benchmarks/bench_v2_light.py`` (``benchmarks/results/v2-light.json``).
"""

from __future__ import annotations

import torch
from torch import nn

from featherface_deploy.models.featherface_v2_light import BIFPN_LEVELS, FeatherFaceV2Ultra, V2UltraConfig
from featherface_deploy.models.ultra_ops import (
    attention_multiplication,
    nearest_resize,
    multiscale_intelligence,
    progressive_enhancement,
    smart_feature_reuse,
)


class V2LightProbe(nn.Module):
    """(B, 3, H, W) → (loc, conf, landmarks) of one stride-8 level, through every new block once."""

    def __init__(self) -> None:
        super().__init__()
        ultra = FeatherFaceV2Ultra(V2UltraConfig(fpn_cells=1))
        self.stem = nn.Conv2d(3, 64, 3, 8, 1)
        self.down1 = nn.Conv2d(64, 32, 3, 2, 1)
        self.down2 = nn.Conv2d(32, 32, 3, 2, 1)
        self.backbone_cbam_manager = ultra.backbone_cbam_manager
        self.bifpn_cbam_manager = ultra.bifpn_cbam_manager
        self.dynamic_weight_sharing = ultra.dynamic_weight_sharing
        self.ssh = ultra.ssh1
        self.shuffle = ultra.ssh1_cs
        self.head = ultra.shared_heads[0]
        self.project = nn.Conv2d(64, 32, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c3 = torch.relu(self.backbone_cbam_manager(torch.relu(self.stem(x)), "stage1"))
        p3 = self.project(c3)
        p4 = self.down1(c3)
        p5 = self.down2(p4)
        p3, p4, p5 = smart_feature_reuse([p3, p4, p5])
        level = p3 + nearest_resize(p5, p3)  # keeps the down-resized F3 → F5 path live
        level = torch.relu(self.bifpn_cbam_manager(level, BIFPN_LEVELS[0]) + level)
        level = attention_multiplication(level, self.bifpn_cbam_manager, BIFPN_LEVELS[0], repeats=1)
        level = multiscale_intelligence(progressive_enhancement(level))
        logits, loc, landmarks = self.head(self.shuffle(self.ssh(self.dynamic_weight_sharing(level))))
        return loc, torch.softmax(logits, dim=-1), landmarks
