"""Coordinate Attention as trained in the FeatherFace V2 checkpoint.

Not the published variant (which concatenates both pooled maps before one
shared transform): here each direction is transformed separately by the same
``conv_transform`` and ``bn_transform``. Pooling is written as ``mean`` over an
explicit dim, so exported graphs stay correct at every input size.
"""

from __future__ import annotations

import torch
from torch import nn


class CoordinateAttention(nn.Module):
    """out = x · sigmoid(conv_h(t(mean_W x))) · sigmoid(conv_w(t(mean_H x))).

    ``t`` is conv_transform (1×1, no bias) → bn_transform → ReLU.

    Args:
        channels: Input and output width.
        reduction: The hidden width is ``max(8, channels // reduction)``.
    """

    def __init__(self, channels: int, reduction: int = 32) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.conv_transform = nn.Conv2d(channels, hidden, 1, bias=False)
        self.bn_transform = nn.BatchNorm2d(hidden)
        self.conv_h = nn.Conv2d(hidden, channels, 1, bias=False)
        self.conv_w = nn.Conv2d(hidden, channels, 1, bias=False)

    def _transform(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn_transform(self.conv_transform(pooled)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a_h = torch.sigmoid(self.conv_h(self._transform(x.mean(dim=3, keepdim=True))))
        a_w = torch.sigmoid(self.conv_w(self._transform(x.mean(dim=2, keepdim=True))))
        return x * a_h * a_w
