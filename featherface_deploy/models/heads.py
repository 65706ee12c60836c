"""Per-level 1×1 prediction heads and the parameter-free channel shuffle."""

from __future__ import annotations

import torch
from torch import nn

ANCHORS_PER_LOCATION = 2


class Head(nn.Module):
    """1×1 conv predicting ``values`` numbers per anchor, flattened to (B, H·W·anchors, values).

    Args:
        channels: Input width.
        values: Numbers per anchor (2 scores, 4 box deltas or 10 landmark deltas).
    """

    def __init__(self, channels: int, values: int) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(channels, ANCHORS_PER_LOCATION * values, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return flatten_anchors(self.conv1x1(x), self.values)


def flatten_anchors(x: torch.Tensor, values: int) -> torch.Tensor:
    """(B, anchors·values, H, W) → (B, H·W·anchors, values): NHWC order, as the priors are generated."""
    out = x.permute(0, 2, 3, 1)
    return out.reshape(out.shape[0], -1, values)


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """Interleaves channel groups: with 2 groups, output = channels [0, 2, 4, …] then [1, 3, …]."""
    batch, channels, height, width = x.shape
    x = x.reshape(batch, channels // groups, groups, height, width).transpose(1, 2)
    return x.reshape(batch, channels, height, width)
