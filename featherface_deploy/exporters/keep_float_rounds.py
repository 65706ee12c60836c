"""The rounds of a keep-float search, shared by the ONNX and the TFLite INT8 exports.

Each round records which layers (ONNX node names, or TFLite module scopes) were kept in
float, the detection agreement with FP32 it reached on the calibration photos and the
share of MACs left in float. A search keeps :func:`kept_round`: among the rounds that reach
its budget the cheapest (fewest MACs in float: what runs in integer kernels is the point of
INT8), and when none does :func:`best_round`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SearchStep:
    """One round of a keep-float search: the layers kept float so far and the agreement reached."""

    kept_float: tuple[str, ...]
    agreement: float
    float_fraction: float

    def record(self) -> dict:
        """The step as JSON reads it back (lists, not tuples), for the contract."""
        return {"kept_float": list(self.kept_float), "agreement": self.agreement, "float_fraction": self.float_fraction}


def best_round(history: Sequence[SearchStep]) -> int:
    """The round a search that missed its budget keeps: the highest agreement, then the fewest MACs in float.

    Agreement is not monotone in the layers kept float (V2-CA's ONNX search: 0.9893 at round 6,
    0.9851 at round 12), so the last round is not the best one.
    """
    return max(range(len(history)), key=lambda index: (history[index].agreement, -history[index].float_fraction))


def kept_round(history: Sequence[SearchStep], budget: float) -> int:
    """The round a search keeps: of those that meet ``budget``, the one with the fewest MACs in float
    (then the highest agreement); when none meets it, :func:`best_round`."""
    meeting = [index for index, step in enumerate(history) if step.agreement >= budget]
    if not meeting:
        return best_round(history)
    return min(meeting, key=lambda index: (history[index].float_fraction, -history[index].agreement))
