"""The five "innovations" of FeatherFace V2-Ultra, written so that every one exports.

Sources: ``shared/seeds/v2-ultra-architecture.md`` § "Five Revolutionary
Zero-Parameter Innovations" (pseudo-code) and
``v2-ultra-architecture-diagram.md`` (the "V2 Ultra Innovations" block, which
places them after the BiFPN's CBAM_Plus and before SSH_Grouped, in the order
1 → 5). Where the two disagree or the code cannot run, the reading here is
the simplest one that does:

1. *Smart Feature Reuse*. The pseudo-code calls undefined helpers
   (``compute_feature_similarity``, ``apply_smart_routing``); the diagram's
   formulas are used instead: F3 += attention(F4) + resize(F5), F5 +=
   attention(F4) + resize(F3), F4 unchanged (the diagram gives no formula for
   it). "attention(F4)" is F4 as it arrives here, i.e. already refined by the
   shared BiFPN CBAM_Plus; the diagram's "downsample(F5)" for F3 and
   "upsample(F3)" for F5 point the wrong way (F3 is the largest map), so
   every term is resized to the level it is added to, by nearest
   interpolation to that level's size (PyTorch's floor rule, src = ⌊dst ·
   in / out⌋, as the BiFPN's ``up``). Shrinking is written as a row and
   column gather with those indices (:func:`nearest_resize`): litert-torch
   lowers a shrinking or non-integer-ratio ``interpolate`` to a TFLite resize
   that picks other pixels (measured: max error 280 on a random-weight
   probe). Zero parameters.
2. *Attention Multiplication*: the diagram's "CBAM(CBAM(CBAM(F)))", the
   shared BiFPN CBAM_Plus applied three more times (no residual; weights
   reused, so zero parameters). The text's
   ``attention_multiplication(attention_weights)`` (x ← x·sigmoid(x) three
   times) is applied to "attention weights" the document never locates in
   the data flow, so it is not used.
3. *Progressive Enhancement*: the text's code, per level. The diagram's
   ``enhance_small_features`` etc. are undefined. Downscaling uses ``size=``
   floor(h·s) (at least 1) instead of ``scale_factor=s``: the output size is
   the same, but PyTorch then maps coordinates with in/out like ONNX and
   TFLite resizes do (with ``scale_factor`` it maps with 1/s, which differs
   when h·s is not an integer). The scale 1.0 step resizes to the same size,
   an exact identity, so it is written as ``x + x``.
4. *Multi-Scale Intelligence*: the text's code sums maps of four different
   sizes, which cannot run; each bilinear rescale is resized back to the
   level's size (nearest, as in 3) before the √scale-weighted mean. The
   diagram's ``compute_importance_weights`` is undefined; the text's fixed
   weights are used. Zero parameters.
5. *Dynamic Weight Sharing*: the text's class exactly (C parameters; x ·
   w · sigmoid(mean_HW x)), one instance shared by the three levels (all 32
   channels wide). The diagram's similarity threshold is undefined and would
   be data-dependent control flow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from featherface_deploy.models.cbam import SharedCBAMManager

PROGRESSIVE_SCALES = (0.5, 0.75, 1.0)
MULTISCALE_SCALES = (1.0, 0.8, 0.6, 0.4)
ATTENTION_REPEATS = 3


def nearest_resize(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Nearest resize of ``x`` to ``like``'s size with PyTorch's floor rule, exact on every backend.

    Rows and columns ⌊i · in / out⌋ are gathered, which converters keep exact
    (``Gather``/``GATHER``); a TFLite resize at non-integer ratios is not.
    """
    (in_h, in_w), (out_h, out_w) = x.shape[-2:], like.shape[-2:]
    # int32 on purpose: coremltools lowers the traced floor division to float, and its gather refuses float
    # indices ("expects tensor or scalar of dtype from type domain ['int32', …]"); the cast keeps them integer.
    rows = (torch.arange(out_h, device=x.device) * in_h // out_h).to(torch.int32)
    columns = (torch.arange(out_w, device=x.device) * in_w // out_w).to(torch.int32)
    return x.index_select(2, rows).index_select(3, columns)


def smart_feature_reuse(levels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Innovation 1: F3 + F4 + F5 at F3's size, F4 as is, F5 + F4 + F3 at F5's size (nearest resizes)."""
    p3, p4, p5 = levels
    return [p3 + nearest_resize(p4, p3) + nearest_resize(p5, p3), p4,
            p5 + nearest_resize(p4, p5) + nearest_resize(p3, p5)]


def attention_multiplication(x: torch.Tensor, manager: SharedCBAMManager, gate_name: str,
                             repeats: int = ATTENTION_REPEATS) -> torch.Tensor:
    """Innovation 2: the shared CBAM_Plus of ``gate_name`` applied ``repeats`` times in a row."""
    for _ in range(repeats):
        x = manager(x, gate_name)
    return x


def scaled_size(x: torch.Tensor, scale: float) -> tuple[int, int]:
    """floor(h·scale), floor(w·scale), at least 1 each (integer arithmetic, exact for decimal scales)."""
    fraction = Fraction(scale).limit_denominator(100)
    height, width = x.shape[-2:]
    return (max(1, height * fraction.numerator // fraction.denominator),
            max(1, width * fraction.numerator // fraction.denominator))


def _rescaled(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Bilinear rescale by ``scale``, then nearest back to ``x``'s size (identity for scale 1)."""
    if scale == 1.0:
        return x
    small = F.interpolate(x, size=scaled_size(x, scale), mode="bilinear", align_corners=False)
    return nearest_resize(small, x)


def progressive_enhancement(x: torch.Tensor, scales: Sequence[float] = PROGRESSIVE_SCALES) -> torch.Tensor:
    """Innovation 3: x ← x + rescaled(x, s) for each scale in turn, divided by the number of scales."""
    enhanced = x
    for scale in scales:
        enhanced = enhanced + _rescaled(enhanced, scale)
    return enhanced / len(scales)


def multiscale_intelligence(x: torch.Tensor, scales: Sequence[float] = MULTISCALE_SCALES) -> torch.Tensor:
    """Innovation 4: mean over scales of √scale · rescaled(x, scale)."""
    total = sum(math.sqrt(scale) * _rescaled(x, scale) for scale in scales)
    return total / len(scales)


class DynamicWeightSharing(nn.Module):
    """Innovation 5: x · w · sigmoid(mean_HW x), with one learnt weight per channel.

    Args:
        channels: Input width (the number of parameters).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.shared_weights = nn.Parameter(torch.randn(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        adaptation = x.mean(dim=(2, 3), keepdim=True)
        return x * (self.shared_weights * torch.sigmoid(adaptation))
