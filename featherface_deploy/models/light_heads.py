"""SSH_Grouped, ChannelShuffle_Light and SharedMultiHead of FeatherFace V2-Optimized and V2-Ultra.

Readings of ``shared/seeds/v2-optimized-architecture.md`` § "SSH_Grouped
Context Enhancement", "Lightweight Channel Shuffling" and "SharedMultiHead
Detection" (the code blocks there are taken as the specification):

- ``grouped_conv_bn`` / ``grouped_conv_bn_no_relu`` are undefined helpers;
  read as V1's ``conv_bn`` / ``conv_bn_no_relu`` (3×3, stride 1, pad 1, no
  bias, BN, LeakyReLU(0.1) for the former) with ``groups``. The SSH forward
  is V1's: ReLU(concat[conv3X3(x), conv5X5_2(a), conv7x7_3(conv7X7_2(a))]),
  a = conv5X5_1(x). The constructor's ``reduction=2`` is never used by the
  pseudo-code; the branch widths C/2, C/4, C/4 are its only reduction.
- ChannelShuffle_Light is the code as written: view (B, groups, C/groups),
  transpose, flatten. It has no parameters or buffers (no checkpoint keys).
- SharedMultiHead is the architecture document's code (a shared 3×3 conv
  C → C/2 + BN + ReLU, then 1×1 class/box/landmark convs with bias), not
  ``v2-optimized-modules.md`` § 2, which says the opposite ("no shared trunk").
  Its three outputs are flattened like V1's heads, (B, H·W·anchors, k),
  because the forward pass concatenates levels on dim 1 "same format as V1".
"""

from __future__ import annotations

import torch
from torch import nn

from featherface_deploy.models.backbone import LEAKY_SLOPE
from featherface_deploy.models.heads import channel_shuffle, flatten_anchors


def grouped_conv_bn(in_channels: int, out_channels: int, groups: int, leaky: bool) -> nn.Sequential:
    """3×3 grouped convolution (no bias) and BatchNorm, then LeakyReLU(0.1) when ``leaky``."""
    layers = [nn.Conv2d(in_channels, out_channels, 3, 1, 1, groups=groups, bias=False), nn.BatchNorm2d(out_channels)]
    if leaky:
        layers.append(nn.LeakyReLU(LEAKY_SLOPE))
    return nn.Sequential(*layers)


class SSHGrouped(nn.Module):
    """SSH context module of grouped 3×3 convolutions: C/2 + C/4 + C/4 output channels.

    Args:
        in_channels: Input width.
        out_channels: Output width (a multiple of 4 · groups).
        groups: Groups of every convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        half, quarter = out_channels // 2, out_channels // 4
        self.conv3X3 = grouped_conv_bn(in_channels, half, groups, leaky=False)
        self.conv5X5_1 = grouped_conv_bn(in_channels, quarter, groups, leaky=True)
        self.conv5X5_2 = grouped_conv_bn(quarter, quarter, groups, leaky=False)
        self.conv7X7_2 = grouped_conv_bn(quarter, quarter, groups, leaky=True)
        self.conv7x7_3 = grouped_conv_bn(quarter, quarter, groups, leaky=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv5X5_1(x)
        branches = [self.conv3X3(x), self.conv5X5_2(a), self.conv7x7_3(self.conv7X7_2(a))]
        return torch.relu(torch.cat(branches, dim=1))


class ChannelShuffleLight(nn.Module):
    """Parameter-free shuffle: view (B, groups, C/groups, H, W), swap the two channel axes, flatten.

    Args:
        groups: Number of channel groups.
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channel_shuffle views (B, C/g', g'): with g' = C/groups that is this document's (B, groups, C/groups).
        return channel_shuffle(x, x.shape[1] // self.groups)


class SharedMultiHead(nn.Module):
    """Shared 3×3 conv trunk, then class (2), box (4) and landmark (10) 1×1 predictions per anchor.

    Args:
        in_channels: Input width (the trunk halves it).
        num_anchors: Anchors per location.
    """

    def __init__(self, in_channels: int, num_anchors: int) -> None:
        super().__init__()
        hidden = in_channels // 2
        self.shared_conv = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, 1, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU())
        self.cls_head = nn.Conv2d(hidden, num_anchors * 2, 1)
        self.bbox_head = nn.Conv2d(hidden, num_anchors * 4, 1)
        self.landmark_head = nn.Conv2d(hidden, num_anchors * 10, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        shared = self.shared_conv(x)
        return (flatten_anchors(self.cls_head(shared), 2), flatten_anchors(self.bbox_head(shared), 4),
                flatten_anchors(self.landmark_head(shared), 10))
