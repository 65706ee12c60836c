"""FeatherFace V2-Optimized and V2-Ultra: the design documents' deformable-free V2 variants (no trained weights).

The specification is ``shared/seeds/v2-optimized-architecture.md`` (§ (a)
overview, § (b) CBAM_Plus, § (c) BiFPN_Light, § (d) heads and the "Forward
Pass Architecture V2" code) for V2-Optimized, and
``v2-ultra-architecture.md`` with ``v2-ultra-architecture-diagram.md`` for
V2-Ultra. Module names follow the documents' code (``body``,
``backbone_cbam_manager``, ``bifpn``, ``bifpn_cbam_manager``, ``ssh1``…,
``ssh1_cs``…, ``shared_heads``), so a checkpoint trained with that code loads
strictly. Readings of what the documents leave open:

- Backbone: V1's MobileNetV1 ×0.25 (213,072 parameters; the documents also
  say 213,024). Preprocessing, anchors and decoding are V1's.
- BiFPN_Light (§ (c)) is V1's BiFPN cell at width 32 ("num_channels=32"),
  whose 3×3 convs are already depthwise-separable ("use_dwsep=True"), 2
  cells. ``reduction_factor=4`` is otherwise undefined; it is read as 4
  groups in the first cell's five lateral 1×1 projections, the only reading
  that comes near the document's own count (18,420 parameters here against
  the claimed 18,432; ungrouped laterals would give 38,388).
- The CBAM_Plus stages are the forward-pass code: manager(x) + x, then ReLU.
- V2-Ultra takes its hyper-parameters from the architecture text where it
  gives them and the data flow from the diagram: CBAM_Plus reduction 128
  (text § 2; the diagram says 32), SSH_Grouped with 8 groups (text § 4,
  "SSH groups = 8 … 8//8=1"; the diagram says 4), ChannelShuffle_Light with 4
  groups (diagram), the same BiFPN_Light and SharedMultiHead, and the five
  innovations of :mod:`featherface_deploy.models.ultra_ops` between the
  BiFPN's CBAM_Plus stage and SSH_Grouped (diagram).
- The ``phase == 'train'`` branch is not modelled: like V1 the model returns
  ``conf`` after the softmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from featherface_deploy.models.backbone import MobileNetV1
from featherface_deploy.models.bifpn import BiFPNCell
from featherface_deploy.models.cbam import SharedCBAMManager
from featherface_deploy.models.heads import ANCHORS_PER_LOCATION
from featherface_deploy.models.light_heads import ChannelShuffleLight, SharedMultiHead, SSHGrouped
from featherface_deploy.models.ultra_ops import (
    ATTENTION_REPEATS,
    MULTISCALE_SCALES,
    PROGRESSIVE_SCALES,
    DynamicWeightSharing,
    attention_multiplication,
    multiscale_intelligence,
    progressive_enhancement,
    smart_feature_reuse,
)

BACKBONE_LEVELS = ("stage1", "stage2", "stage3")
BIFPN_LEVELS = ("p3", "p4", "p5")


@dataclass(frozen=True)
class V2OptimizedConfig:
    """Hyper-parameters of FeatherFace V2-Optimized (``v2-optimized-architecture.md``).

    Attributes:
        name: Registry name.
        base_width: Width of the backbone's first conv (8 = MobileNetV1 ×0.25).
        fpn_width: BiFPN_Light, SSH_Grouped and head width ("out_channel_v2 : 32").
        fpn_cells: BiFPN_Light repetitions.
        lateral_groups: Groups of the BiFPN's lateral 1×1 convs (the reading of ``reduction_factor=4``).
        cbam_reduction: CBAM_Plus reduction ratio.
        ssh_groups: Groups of every SSH_Grouped convolution.
        shuffle_groups: ChannelShuffle_Light groups.
    """

    name: str = "featherface-v2-optimized"
    base_width: int = 8
    fpn_width: int = 32
    fpn_cells: int = 2
    lateral_groups: int = 4
    cbam_reduction: int = 32
    ssh_groups: int = 4
    shuffle_groups: int = 4


@dataclass(frozen=True)
class V2UltraConfig(V2OptimizedConfig):
    """Hyper-parameters of FeatherFace V2-Ultra (``v2-ultra-architecture*.md``).

    Attributes:
        attention_repeats: Innovation 2's number of extra CBAM_Plus applications.
        progressive_scales: Innovation 3's scales.
        multiscale_scales: Innovation 4's scales.
    """

    name: str = "featherface-v2-ultra"
    cbam_reduction: int = 128
    ssh_groups: int = 8
    attention_repeats: int = ATTENTION_REPEATS
    progressive_scales: tuple[float, ...] = PROGRESSIVE_SCALES
    multiscale_scales: tuple[float, ...] = MULTISCALE_SCALES


class FeatherFaceV2Optimized(nn.Module):
    """MobileNetV1 → CBAM_Plus → BiFPN_Light → CBAM_Plus → SSH_Grouped → ChannelShuffle_Light → SharedMultiHead.

    Same interface as :class:`~featherface_deploy.models.featherface.FeatherFace`:
    BGR − mean (B, 3, H, W), any H×W, → ``(loc, conf, landmarks)`` with
    ``conf`` after the softmax.

    Args:
        config: The variant's hyper-parameters.
    """

    def __init__(self, config: V2OptimizedConfig = V2OptimizedConfig()) -> None:
        super().__init__()
        self.config = config
        width = config.fpn_width
        self.body = MobileNetV1(config.base_width)
        self.backbone_cbam_manager = SharedCBAMManager(dict(zip(BACKBONE_LEVELS, self.body.out_channels)),
                                                       config.cbam_reduction)
        self.bifpn = nn.ModuleList(
            BiFPNCell(width, self.body.out_channels if i == 0 else None, config.lateral_groups)
            for i in range(config.fpn_cells))
        self.bifpn_cbam_manager = SharedCBAMManager(dict.fromkeys(BIFPN_LEVELS, width), config.cbam_reduction)
        self.ssh1 = SSHGrouped(width, width, config.ssh_groups)
        self.ssh2 = SSHGrouped(width, width, config.ssh_groups)
        self.ssh3 = SSHGrouped(width, width, config.ssh_groups)
        self.ssh1_cs = ChannelShuffleLight(config.shuffle_groups)
        self.ssh2_cs = ChannelShuffleLight(config.shuffle_groups)
        self.ssh3_cs = ChannelShuffleLight(config.shuffle_groups)
        self.shared_heads = nn.ModuleList(SharedMultiHead(width, ANCHORS_PER_LOCATION) for _ in range(3))

    @staticmethod
    def _attend(manager: SharedCBAMManager, levels: list[torch.Tensor], names: tuple[str, ...]) -> list[torch.Tensor]:
        """The documents' CBAM_Plus stage: relu(manager(x, name) + x) per level."""
        return [torch.relu(manager(x, name) + x) for x, name in zip(levels, names)]

    def refine(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Between the BiFPN's CBAM_Plus and SSH_Grouped: nothing in V2-Optimized."""
        return levels

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Returns the three head inputs (after SSH_Grouped and the shuffle)."""
        levels = self._attend(self.backbone_cbam_manager, list(self.body(x)), BACKBONE_LEVELS)
        p3, p4, p5 = levels
        for cell in self.bifpn:
            p3, p4, p5 = cell(p3, p4, p5)
        levels = self.refine(self._attend(self.bifpn_cbam_manager, [p3, p4, p5], BIFPN_LEVELS))
        ssh = (self.ssh1, self.ssh2, self.ssh3)
        shuffles = (self.ssh1_cs, self.ssh2_cs, self.ssh3_cs)
        return [shuffle(module(level)) for level, module, shuffle in zip(levels, ssh, shuffles)]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        outputs = [head(level) for head, level in zip(self.shared_heads, self.features(x))]
        logits, loc, landmarks = (torch.cat(parts, dim=1) for parts in zip(*outputs))
        return loc, torch.softmax(logits, dim=-1), landmarks


class FeatherFaceV2Ultra(FeatherFaceV2Optimized):
    """V2-Optimized with the five innovations between the BiFPN's CBAM_Plus and SSH_Grouped.

    Args:
        config: The variant's hyper-parameters.
    """

    def __init__(self, config: V2UltraConfig = V2UltraConfig()) -> None:
        super().__init__(config)
        self.dynamic_weight_sharing = DynamicWeightSharing(config.fpn_width)

    def refine(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Innovations 1 → 5 (see :mod:`featherface_deploy.models.ultra_ops`)."""
        config = self.config
        levels = smart_feature_reuse(levels)
        levels = [attention_multiplication(x, self.bifpn_cbam_manager, name, config.attention_repeats)
                  for x, name in zip(levels, BIFPN_LEVELS)]
        levels = [progressive_enhancement(x, config.progressive_scales) for x in levels]
        levels = [multiscale_intelligence(x, config.multiscale_scales) for x in levels]
        return [self.dynamic_weight_sharing(x) for x in levels]
