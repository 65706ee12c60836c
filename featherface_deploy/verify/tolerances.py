"""Parity tolerance tiers: FP32 tight, FP16 looser, INT8 judged after decode only."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from featherface_deploy.errors import ExportError


@dataclass(frozen=True)
class Tolerances:
    """Parity limits. ``None`` skips a raw-output check.

    Attributes:
        conf: Max abs error of the face probability.
        loc: Max abs error of the box deltas.
        landmarks: Max abs error of the landmark deltas.
        min_iou: Matched detections must overlap at least this much.
        min_match_rate: Matched / max(#reference, #candidate) detections.
        max_score_diff: Max face-probability difference of matched detections.
        score_threshold: Detections compared are those scoring at least this.
        borderline: Unmatched detections within this of ``score_threshold`` are ignored
            (a score of 0.50001 against 0.49999 is not a disagreement).
        min_reference_faces: The reference must find at least this many detections ≥
            ``score_threshold`` over all images, else the detection-level check compared nothing
            and fails (0 only for untrained models).
    """

    conf: float | None = 1e-4
    loc: float | None = 1e-3
    landmarks: float | None = 1e-3
    min_iou: float = 0.99
    min_match_rate: float = 1.0
    max_score_diff: float = 1e-3
    score_threshold: float = 0.5
    borderline: float = 1e-3
    min_reference_faces: int = 1

    @classmethod
    def fp32(cls) -> "Tolerances":
        """Float32 export vs float32 PyTorch."""
        return cls()

    @classmethod
    def fp16(cls) -> "Tolerances":
        """Half-precision weights: face probabilities raw, boxes and landmarks after decode.

        Float16 weights in the DCN offset convolutions move sample points by a
        fraction of a pixel, which moves the raw deltas of some background anchors
        by up to ~0.3 on V1 while every detection ≥ 0.5 still matches (IoU ≥ 0.998).
        """
        return cls(conf=1e-2, loc=None, landmarks=None, min_iou=0.95, min_match_rate=0.95,
                   max_score_diff=2e-2, borderline=2e-2)

    @classmethod
    def int8(cls) -> "Tolerances":
        """Quantised models: judged after decode only (and, in benchmarks, by the AP drop)."""
        return cls(conf=None, loc=None, landmarks=None, min_iou=0.8, min_match_rate=0.8,
                   max_score_diff=0.2, borderline=0.1)

    @classmethod
    def for_precision(cls, precision: str) -> "Tolerances":
        """The tier for ``fp32``, ``fp16`` or ``int8``.

        Raises:
            ExportError: Unknown precision.
        """
        tiers = {"fp32": cls.fp32, "fp16": cls.fp16, "int8": cls.int8}
        if precision not in tiers:
            raise ExportError(f"unknown precision '{precision}'; expected one of {sorted(tiers)}")
        return tiers[precision]()

    def for_untrained(self) -> "Tolerances":
        """These limits for a model with random weights: raw outputs judged as before, detections reported only.

        Random weights score a thousand or more anchors per photo just above 0.5, so which of them survive
        NMS and the top-k cut flips on differences of 1e-8 in the raw outputs (a whole-model V2-Optimized
        ONNX export: raw max |Δ| 6e-8, detection match rate 0.81); the match rate of such "faces" says nothing
        about the conversion, and no face is required.
        """
        return self.replace(min_reference_faces=0, min_match_rate=0.0)

    def replace(self, **changes) -> "Tolerances":
        """A copy with some limits changed."""
        return dataclasses.replace(self, **changes)
