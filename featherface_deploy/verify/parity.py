"""Parity of an exported model against a reference, generic over runtimes.

Every runtime gets the **same** preprocessed inputs (Polygraphy's comparator
habit). Two levels are checked, with tiered tolerances:

- raw outputs: max abs error of face probabilities (``conf``), box deltas
  (``loc``) and landmark deltas (``landmarks``); FP32 tight, FP16 looser,
  INT8 not judged on raw tensors (``None``);
- detections after the shared decode + NMS: one-to-one IoU matching, match
  rate, max score and landmark differences.

Only numpy and the runtimes' public ``infer`` are used, so the same check
serves ONNX Runtime, TFLite, Core ML or TensorRT exports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featherface_deploy.errors import ParityError
from featherface_deploy.postprocess import Detections, PostprocessConfig, decode_image, load_image, preprocess
from featherface_deploy.postprocess.nms import iou_matrix
from featherface_deploy.runtimes.base import Runtime
from featherface_deploy.verify.photos import default_parity_images
from featherface_deploy.verify.tolerances import Tolerances

RAW_ROLES = ("conf", "loc", "landmarks")
ANY_SIZE_BOX = (640, 640)


@dataclass(frozen=True)
class ParityReport:
    """The outcome of a parity check.

    Attributes:
        candidate: Name of the checked runtime.
        reference: Name of the reference runtime.
        images: Number of inputs compared.
        max_abs: Max abs error per raw output role.
        reference_detections: Detections of the reference (all images).
        candidate_detections: Detections of the candidate.
        matched: One-to-one matches with IoU ≥ ``tolerances.min_iou``.
        match_rate: matched / max(reference, candidate) counts (1.0 when both are empty).
        min_matched_iou: Smallest IoU among matches (1.0 when none).
        max_score_diff: Largest score difference among matches.
        max_landmark_diff: Largest landmark difference among matches, in pixels.
        tolerances: The limits applied.
        failures: Why the check failed (empty when it passed).
    """

    candidate: str
    reference: str
    images: int
    max_abs: dict[str, float]
    reference_detections: int
    candidate_detections: int
    matched: int
    match_rate: float
    min_matched_iou: float
    max_score_diff: float
    max_landmark_diff: float
    tolerances: Tolerances
    failures: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        """Whether every check is within tolerance."""
        return not self.failures

    def format(self) -> str:
        """A short human-readable report."""
        tol = self.tolerances
        lines = [f"parity {self.candidate} vs {self.reference} on {self.images} image(s): "
                 f"{'PASS' if self.passed else 'FAIL'}"]
        for role in RAW_ROLES:
            limit = getattr(tol, role)
            lines.append(f"  max |Δ{role}| = {self.max_abs[role]:.3g}"
                         + (f" (≤ {limit:g})" if limit is not None else " (not judged)"))
        lines.append(f"  detections ≥ {tol.score_threshold:g}: reference {self.reference_detections}, "
                     f"candidate {self.candidate_detections}, matched {self.matched} "
                     f"(rate {self.match_rate:.3f} ≥ {tol.min_match_rate:g}, min IoU {self.min_matched_iou:.4f})")
        lines.append(f"  matched: max |Δscore| = {self.max_score_diff:.3g} (≤ {tol.max_score_diff:g}), "
                     f"max |Δlandmark| = {self.max_landmark_diff:.3g} px")
        lines.extend(f"  ✗ {failure}" for failure in self.failures)
        return "\n".join(lines)


def parity_inputs(contract, images: Sequence[str | Path | np.ndarray] = (),
                  size: tuple[int, int] = ANY_SIZE_BOX) -> list[tuple[np.ndarray, object]]:
    """Preprocesses images for the candidate's contract; no images → the shipped photo of a face.

    Any-size models get each image fitted into ``size`` (padded to the size divisor).

    Returns:
        (input (1, 3, H, W), transform) pairs.
    """
    prepared = []
    for image in images or default_parity_images():
        tensor, transform = preprocess(load_image(image), contract, None if contract.input_size else size)
        prepared.append((tensor[None], transform))
    return prepared


def check_parity(
    candidate: Runtime,
    reference: Runtime,
    images: Sequence[str | Path | np.ndarray] = (),
    tolerances: Tolerances | None = None,
    raise_on_failure: bool = True,
    size: tuple[int, int] = ANY_SIZE_BOX,
) -> ParityReport:
    """Runs both runtimes on the same inputs and compares raw outputs and detections.

    Args:
        candidate: The exported model's runtime.
        reference: The reference (usually :class:`TorchRuntime`).
        images: Image paths or BGR arrays; none → :func:`default_parity_images`.
        tolerances: Limits.
        raise_on_failure: Raise :class:`ParityError` when outside tolerance.
        size: Resize box for any-size candidates.

    Returns:
        The report.

    Raises:
        ParityError: Outside tolerance (when ``raise_on_failure``).
    """
    tolerances = tolerances or Tolerances()
    postprocess = PostprocessConfig(conf_threshold=max(tolerances.score_threshold - tolerances.borderline, 0.0))
    max_abs = dict.fromkeys(RAW_ROLES, 0.0)
    stats = _DetectionStats()
    inputs = parity_inputs(candidate.contract, images, size)
    for batch, transform in inputs:
        got, want = candidate.infer(batch), reference.infer(batch)
        diffs = {
            "conf": np.abs(got["conf"][..., 1] - want["conf"][..., 1]),
            "loc": np.abs(got["loc"] - want["loc"]),
            "landmarks": np.abs(got["landmarks"] - want["landmarks"]),
        }
        for role, diff in diffs.items():
            max_abs[role] = max(max_abs[role], float(diff.max()) if diff.size else 0.0)
        size_hw = batch.shape[2:]
        found = decode_image(got["loc"][0], got["conf"][0], got["landmarks"][0], size_hw,
                             candidate.contract, transform, postprocess)
        expected = decode_image(want["loc"][0], want["conf"][0], want["landmarks"][0], size_hw,
                                reference.contract, transform, postprocess)
        stats.add(expected, found, tolerances)

    report = ParityReport(
        candidate=candidate.name, reference=reference.name, images=len(inputs), max_abs=max_abs,
        reference_detections=stats.reference, candidate_detections=stats.candidate, matched=stats.matched,
        match_rate=stats.match_rate, min_matched_iou=stats.min_iou, max_score_diff=stats.max_score_diff,
        max_landmark_diff=stats.max_landmark_diff, tolerances=tolerances,
        failures=_failures(max_abs, stats, tolerances),
    )
    if raise_on_failure and not report.passed:
        raise ParityError(report.format() + "\nthe exported model was not written; if the difference is expected "
                          "(e.g. reduced precision), pass looser tolerances")
    return report


class _DetectionStats:
    """Accumulates one-to-one detection matching over images."""

    def __init__(self) -> None:
        self.reference = self.candidate = self.matched = self.disagreements = 0
        self.min_iou = 1.0
        self.max_score_diff = self.max_landmark_diff = 0.0

    @property
    def match_rate(self) -> float:
        total = self.matched + self.disagreements
        return self.matched / total if total else 1.0

    def add(self, expected: Detections, found: Detections, tol: Tolerances) -> None:
        firm_ref = expected.scores >= tol.score_threshold + tol.borderline
        firm_cand = found.scores >= tol.score_threshold + tol.borderline
        self.reference += int((expected.scores >= tol.score_threshold).sum())
        self.candidate += int((found.scores >= tol.score_threshold).sum())
        iou = iou_matrix(expected.boxes, found.boxes) if len(expected) and len(found) else np.zeros((len(expected), len(found)))
        used = np.zeros(len(found), dtype=bool)
        for i in range(len(expected)):  # reference is sorted best first
            scores = np.where(used, -1.0, iou[i]) if len(found) else np.zeros(0)
            j = int(np.argmax(scores)) if scores.size else -1
            if j >= 0 and scores[j] >= tol.min_iou:
                used[j] = True
                if expected.scores[i] >= tol.score_threshold or found.scores[j] >= tol.score_threshold:
                    self.matched += 1
                    self.min_iou = min(self.min_iou, float(iou[i, j]))
                    self.max_score_diff = max(self.max_score_diff, abs(float(expected.scores[i] - found.scores[j])))
                    self.max_landmark_diff = max(
                        self.max_landmark_diff, float(np.abs(expected.landmarks[i] - found.landmarks[j]).max()))
            elif firm_ref[i]:
                self.disagreements += 1
        self.disagreements += int((~used & firm_cand).sum())


def _failures(max_abs: dict[str, float], stats: _DetectionStats, tol: Tolerances) -> tuple[str, ...]:
    failures = []
    for role in RAW_ROLES:
        limit = getattr(tol, role)
        if limit is not None and not max_abs[role] <= limit:  # "not <=" also catches NaN
            failures.append(f"raw '{role}' differs by {max_abs[role]:.3g} > {limit:g}")
    if stats.match_rate < tol.min_match_rate:
        failures.append(f"detection match rate {stats.match_rate:.3f} < {tol.min_match_rate:g} "
                        f"(IoU ≥ {tol.min_iou:g})")
    if stats.reference < tol.min_reference_faces:
        failures.append(f"the reference found {stats.reference} face(s) ≥ {tol.score_threshold:g} (need "
                        f"{tol.min_reference_faces}): the detection check compared nothing; use photos with faces")
    if stats.max_score_diff > tol.max_score_diff:
        failures.append(f"matched detection scores differ by {stats.max_score_diff:.3g} > {tol.max_score_diff:g}")
    return tuple(failures)
