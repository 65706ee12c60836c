"""CBAM_Plus and the SharedCBAMManager of FeatherFace V2-Optimized and V2-Ultra.

Readings of the design documents (``shared/seeds``), each the simplest one
consistent with the rest of its document:

- *CBAM_Plus* is CBAM (Woo et al., 2018, reference code) with a larger
  reduction ratio (``v2-optimized-architecture.md`` § (b): "32:1 au lieu de
  16:1"; ``v2-ultra-architecture.md`` § 2: r=128). Channel gate: a shared MLP
  of two 1×1 convolutions *with bias* (the reference uses ``nn.Linear``)
  applied to the spatial mean and the spatial max, summed, sigmoid. Spatial
  gate: [max over channels, mean over channels] → 7×7 conv (no bias) → BN →
  sigmoid. The hidden width is ``max(1, channels // reduction)``: r=128 on 64
  channels would otherwise be zero wide.
- "Spatial Attention Groupée: Grouped convolutions" (§ (b)) cannot apply: the
  spatial gate maps 2 channels to 1, and no group count > 1 divides both. It
  is a plain 7×7 convolution.
- *SharedCBAMManager* follows ``v2-optimized-modules.md`` § 3: "Single
  spatial gate shared by all CBAM instances" and "Channel gates shared by
  modules with same channel count". One manager over {64, 128, 256} therefore
  owns three channel gates and one spatial gate; one over {32, 32, 32} owns
  one channel gate, applied to all three levels, and one spatial gate.

Every pooling is an explicit ``mean``/``amax`` over named dimensions (ONNX
``ReduceMean``/``ReduceMax``, TFLite ``MEAN``/``REDUCE_MAX``), so no kernel
depends on the input size.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

SPATIAL_KERNEL = 7


class ChannelGate(nn.Module):
    """x · sigmoid(fc2(relu(fc1(mean_HW x))) + fc2(relu(fc1(max_HW x)))).

    Args:
        channels: Input width.
        reduction: Reduction ratio of the MLP (hidden width ``max(1, channels // reduction)``).
    """

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def _mlp(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(pooled)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        average = self._mlp(x.mean(dim=(2, 3), keepdim=True))
        maximum = self._mlp(x.amax(dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(average + maximum)


class SpatialGate(nn.Module):
    """x · sigmoid(bn(conv7×7([max_C x, mean_C x]))); width-independent, so one instance serves every level."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, SPATIAL_KERNEL, padding=SPATIAL_KERNEL // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


class SharedCBAMManager(nn.Module):
    """CBAM_Plus gates shared across named feature levels.

    ``manager(x, name)`` applies the channel gate of ``name``'s width, then the
    one shared spatial gate (CBAM's order).

    Args:
        channel_configs: Level name → channels (e.g. ``{"stage1": 64, "stage2": 128, "stage3": 256}``).
        reduction_ratio: The channel gates' reduction ratio.
    """

    def __init__(self, channel_configs: Mapping[str, int], reduction_ratio: int) -> None:
        super().__init__()
        self.level_channels = dict(channel_configs)
        widths = sorted(set(self.level_channels.values()))
        self.channel_gates = nn.ModuleDict({str(c): ChannelGate(c, reduction_ratio) for c in widths})
        self.spatial_gate = SpatialGate()

    def forward(self, x: torch.Tensor, gate_name: str) -> torch.Tensor:
        gate = self.channel_gates[str(self.level_channels[gate_name])]
        return self.spatial_gate(gate(x))
