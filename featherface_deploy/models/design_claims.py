"""The design documents' parameter claims per top-level module, quoted, for ``info --architecture``.

Every number in ``shared/seeds`` is a claim, not a fact (see its README): this
module only quotes them, with the file and section each comes from, so
``featherface-deploy info --architecture NAME`` can print them beside the
parameters counted on the model. A claim names the top-level modules it
covers (``ssh1``, ``ssh2``, ``ssh3`` for "SSH_Grouped : 3 modules"), or
:data:`TOTAL` for the whole model. Architectures the documents say nothing
about (``featherface-tiny``, ``retinaface-mnet025``) have none.

Claims about parts the toolkit's model does not have as a top-level module
are left out and said so here: the V1 "CBAM" counts (the trained V1 has no
CBAM) and the DCN "context" counts (a part of each ``sshN``, not a module of
its own; ``benchmarks/claims.py`` compares those with the trained checkpoints).
"""

from __future__ import annotations

from dataclasses import dataclass

TOTAL = "total"
ARCH_DOC = "v2-optimized-architecture.md"
MODULES_DOC = "v2-optimized-modules.md"
ULTRA_DOC = "v2-ultra-architecture.md"
DIAGRAM_DOC = "v2-ultra-architecture-diagram.md"
CA_DOC = "v2-coordinate-attention-performance.md"

_SSH = ("ssh1", "ssh2", "ssh3")
_SHUFFLES = ("ssh1_cs", "ssh2_cs", "ssh3_cs")
_MANAGERS = ("backbone_cbam_manager", "bifpn_cbam_manager")
_V1_HEADS = ("ClassHead", "BboxHead", "LandmarkHead")


@dataclass(frozen=True)
class ModuleClaim:
    """One quoted parameter count.

    Attributes:
        modules: The top-level modules it covers (their parameters are summed), or ``("total",)``.
        claimed: The claimed count (an upper bound when ``at_most``).
        source: File in ``shared/seeds``.
        section: The section of that file it is quoted from.
        quote: The claim as written (shortened, not reworded).
        at_most: The document gives a bound ("<1K"), not a count.
    """

    modules: tuple[str, ...]
    claimed: int
    source: str
    section: str
    quote: str
    at_most: bool = False

    def label(self) -> str:
        """The claimed value as the document states it: ``12,288`` or ``≤ 1,000``."""
        return f"{'≤ ' if self.at_most else ''}{self.claimed:,}"

    def citation(self) -> str:
        """``file § section: "quote"``."""
        return f'{self.source} § {self.section}: "{self.quote}"'


_OPT_FINAL = "Configuration Finale V2 › Paramètres Architecturaux"
_ULTRA_TABLE = "Performance Analysis › Parameter Efficiency Breakdown"
_DIAGRAM = "Complete V2 Ultra Architecture Visualization"
_DISTRIBUTION = "Complete V2 Ultra Architecture Visualization › Parameter Distribution"
_V1_OVERVIEW = "Overview (the FeatherFace baseline model)"
_V1_TABLE = "Comparative Analysis V1 vs V2 (V1 column)"

_V1_CLAIMS: tuple[ModuleClaim, ...] = (
    ModuleClaim(("body",), 213_072, MODULES_DOC, _V1_OVERVIEW, "Backbone: 36.0% (213,072 params)"),
    ModuleClaim(("body",), 213_024, ULTRA_DOC, _ULTRA_TABLE + " (V1 column)", "MobileNet Backbone | 213,024"),
    ModuleClaim(("bifpn",), 112_606, MODULES_DOC, _V1_OVERVIEW, "BiFPN: 19.0% (112,606 params)"),
    ModuleClaim(("bifpn",), 113_610, ARCH_DOC, _V1_TABLE, "BiFPN Parameters | 113,610"),
    ModuleClaim(("bifpn",), 114_240, ULTRA_DOC, _ULTRA_TABLE + " (V1 column)", "BiFPN Feature Fusion | 114,240"),
    ModuleClaim(_SSH, 246_885, MODULES_DOC, _V1_OVERVIEW, "SSH modules: 41.7% (246,885 params)"),
    ModuleClaim(_V1_HEADS, 6_240, MODULES_DOC, _V1_OVERVIEW, "Detection Heads: 1.1% (6,240 params)"),
    ModuleClaim(_V1_HEADS, 7_200, ARCH_DOC, _V1_TABLE, "Detection Heads | 7,200"),
    ModuleClaim(_V1_HEADS, 7_136, ULTRA_DOC, _ULTRA_TABLE + " (V1 column)", "Detection Heads | 7,136"),
    ModuleClaim((TOTAL,), 592_000, MODULES_DOC, "Overview", "the FeatherFace baseline model has 0.592M parameters"),
    ModuleClaim((TOTAL,), 487_103, ARCH_DOC, _V1_TABLE, "Total Parameters | 487,103"),
)

MODULE_CLAIMS: dict[str, tuple[ModuleClaim, ...]] = {
    "featherface-v1": _V1_CLAIMS + (
        ModuleClaim((TOTAL,), 489_178, CA_DOC, "Model Efficiency Metrics", "Parameters | 489,178 (V1)"),
    ),
    "featherface-v2-ca": (
        ModuleClaim(("ca_p3", "ca_p4", "ca_p5"), 4_244, CA_DOC, "Model Efficiency Metrics",
                    "Parameters | 489,178 | 493,422 | +4,244 (+0.8%)"),
        ModuleClaim((TOTAL,), 493_422, CA_DOC, "Model Efficiency Metrics", "Parameters | … | 493,422 (V2)"),
    ),
    "featherface-v2-optimized": (
        ModuleClaim(("body",), 213_072, ARCH_DOC, _OPT_FINAL,
                    "Shared Backbone : MobileNetV1-0.25 (213,072 params, 83.2%)"),
        ModuleClaim(_MANAGERS, 1_248, ARCH_DOC, _OPT_FINAL, "CBAM_Plus Shared : 2 managers (1,248 params, 0.5%)"),
        ModuleClaim(("bifpn",), 18_432, ARCH_DOC, _OPT_FINAL, "BiFPN_Light : 2 répétitions (18,432 params, 7.2%)"),
        ModuleClaim(_SSH, 12_288, ARCH_DOC, _OPT_FINAL, "SSH_Grouped : 3 modules (12,288 params, 4.8%)"),
        ModuleClaim(_SHUFFLES, 0, ARCH_DOC, _OPT_FINAL, "ChannelShuffle_Light : 3 modules (0 params, 0.0%)"),
        ModuleClaim(("shared_heads",), 11_520, ARCH_DOC, _OPT_FINAL,
                    "SharedMultiHead : 3 instances (11,520 params, 4.5%)"),
        ModuleClaim((TOTAL,), 256_148, ARCH_DOC, _OPT_FINAL, "Total Parameters : 256,148 (47.2% réduction vs V1)"),
    ),
    "featherface-v2-ultra": (
        ModuleClaim(("body",), 213_024, ULTRA_DOC, _ULTRA_TABLE, "MobileNet Backbone | 213,024 | 213,024"),
        ModuleClaim(("body",), 213_000, DIAGRAM_DOC, _DISTRIBUTION, "MobileNetV1-0.25 … 213K (83.2%)"),
        ModuleClaim(("backbone_cbam_manager",), 1_200, DIAGRAM_DOC, _DIAGRAM,
                    "SharedCBAMManager (Backbone) (1.2K params, 0.5%)"),
        ModuleClaim(("bifpn_cbam_manager",), 1_200, DIAGRAM_DOC, _DIAGRAM,
                    "SharedCBAMManager (BiFPN) (1.2K params, 0.5%)"),
        ModuleClaim(_MANAGERS, 1_232, ULTRA_DOC, _ULTRA_TABLE, "CBAM Attention | 22,080 | 1,232"),
        ModuleClaim(("bifpn",), 18_496, ULTRA_DOC, _ULTRA_TABLE, "BiFPN Feature Fusion | 114,240 | 18,496"),
        ModuleClaim(("bifpn",), 18_400, DIAGRAM_DOC, _DISTRIBUTION, "BiFPN_Light … 18.4K (7.2%)"),
        ModuleClaim(_SSH, 12_320, ULTRA_DOC, _ULTRA_TABLE, "Context Module | 148,224 | 12,320"),
        ModuleClaim(_SSH, 12_300, DIAGRAM_DOC, _DISTRIBUTION, "SSH_Grouped … 12.3K (4.8%)"),
        ModuleClaim(_SHUFFLES, 0, DIAGRAM_DOC, _DISTRIBUTION, "ChannelShuffle … 0 (0.0%)"),
        ModuleClaim(("shared_heads",), 12_320, ULTRA_DOC, _ULTRA_TABLE, "Detection Heads | 7,136 | 12,320"),
        ModuleClaim(("shared_heads",), 11_500, DIAGRAM_DOC, _DISTRIBUTION, "SharedMultiHead … 11.5K (4.5%)"),
        ModuleClaim(("dynamic_weight_sharing",), 1_000, ULTRA_DOC, "Innovation 5: Dynamic Weight Sharing",
                    "Dynamic Weight Sharing (<1K parameters, +0.5% mAP)", at_most=True),
        ModuleClaim(("dynamic_weight_sharing",), 8_000, DIAGRAM_DOC, _DISTRIBUTION,
                    "V2 Innovations … 8.0K (3.1%) [Dynamic Weight Sharing is the only one with parameters]"),
        ModuleClaim((TOTAL,), 244_483, ULTRA_DOC, _ULTRA_TABLE, "Total | 487,103 | 244,483 | 49.8%"),
        ModuleClaim((TOTAL,), 248_000, DIAGRAM_DOC, _DISTRIBUTION, "FeatherFace V2 Ultra (248K)"),
        ModuleClaim((TOTAL,), 248_136, ARCH_DOC, "V2 Standard vs V2 Ultra › Comparaison V2 Variants",
                    "Paramètres | 256,148 (47.2% réduction) | 248,136 (49.1% réduction)"),
    ),
}


def module_claims(architecture: str) -> tuple[ModuleClaim, ...]:
    """The quoted per-module claims for ``architecture`` (empty when the documents give none)."""
    return MODULE_CLAIMS.get(architecture, ())
