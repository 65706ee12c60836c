"""In-graph post-processing against ours: an end-to-end file's detections vs numpy on the same graph's raw outputs.

An end-to-end file decodes and suppresses inside its graph. This check runs the file
(a :class:`~featherface_deploy.runtimes.base.DetectingRuntime`) and, on the same images, the
**same graph** with its raw ``loc``/``conf``/``landmarks`` exposed (a raw view, see
:class:`RgbInputView`), decodes those with :func:`~featherface_deploy.postprocess.decode_image`
and the file's baked thresholds, top-k and ``max_det``, and matches the two sets of
detections one to one in original image pixels. FP32: every detection matched, IoU ≥ 0.999,
|Δscore| ≤ 1e-4, landmarks within 0.01 px. Reduced precisions: the tier of
:class:`~featherface_deploy.verify.tolerances.Tolerances` (detection matching as for parity).

The photos are the parity photos plus a crowd (:func:`crowd_photo`: one photo tiled into a grid),
so the NMS and ``max_det`` see many faces. Any format's exporter pipeline calls
:func:`check_in_graph_parity` with its own raw view.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featherface_deploy.contract import DecodeContract
from featherface_deploy.errors import ParityError
from featherface_deploy.postprocess import decode_image, load_image, preprocess
from featherface_deploy.runtimes.base import DetectingRuntime, Runtime
from featherface_deploy.verify.parity import _DetectionStats
from featherface_deploy.verify.photos import default_parity_images
from featherface_deploy.verify.tolerances import Tolerances

CROWD_TILES = 5
MATCH_IOU = 0.5  # pairs overlapping this much are matched; the limit on their IoU is judged apart


@dataclass(frozen=True)
class InGraphTolerances:
    """Limits of the in-graph vs numpy comparison.

    Attributes:
        min_match_rate: Matched / all firm detections.
        min_iou: Matched boxes overlap at least this much.
        max_score_diff: Largest score difference of a matched pair.
        max_landmark_px: Largest landmark difference of a matched pair, in image pixels (``None``: not judged).
        borderline: Unmatched detections within this of the confidence threshold are not counted.
    """

    min_match_rate: float = 1.0
    min_iou: float = 0.999
    max_score_diff: float = 1e-4
    max_landmark_px: float | None = 0.01
    borderline: float = 0.0

    @classmethod
    def for_precision(cls, precision: str) -> "InGraphTolerances":
        """FP32: the tight limits above; FP16/INT8: detection matching with the parity tier's limits."""
        if precision == "fp32":
            return cls()
        tier = Tolerances.for_precision(precision)
        return cls(min_match_rate=tier.min_match_rate, min_iou=tier.min_iou, max_score_diff=tier.max_score_diff,
                   max_landmark_px=None, borderline=tier.borderline)


@dataclass(frozen=True)
class InGraphReport:
    """The outcome of :func:`check_in_graph_parity`.

    Attributes:
        runtime: Name of the runtime checked.
        images: Images compared.
        in_graph: Detections the file returned (all images).
        numpy: Detections of the numpy post-processing.
        matched: One-to-one matches.
        match_rate: matched / firm detections of either side.
        min_iou: Smallest IoU of a match (1.0 when none).
        max_score_diff: Largest score difference of a match.
        max_landmark_px: Largest landmark difference of a match, in pixels.
        tolerances: The limits applied.
        failures: Why it failed (empty when it passed).
    """

    runtime: str
    images: int
    in_graph: int
    numpy: int
    matched: int
    match_rate: float
    min_iou: float
    max_score_diff: float
    max_landmark_px: float
    tolerances: InGraphTolerances
    failures: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """Whether every limit held."""
        return not self.failures

    def format(self) -> str:
        """A short human-readable report."""
        tol = self.tolerances
        lines = [f"in-graph post-processing ({self.runtime}) vs numpy on the same graph's raw outputs, "
                 f"{self.images} image(s): {'PASS' if self.passed else 'FAIL'}",
                 f"  detections: in-graph {self.in_graph}, numpy {self.numpy}, matched {self.matched} "
                 f"(rate {self.match_rate:.3f} ≥ {tol.min_match_rate:g}, min IoU {self.min_iou:.5f} ≥ {tol.min_iou:g})",
                 f"  matched: max |Δscore| = {self.max_score_diff:.3g} (≤ {tol.max_score_diff:g}), "
                 f"max |Δlandmark| = {self.max_landmark_px:.3g} px"
                 + (f" (≤ {tol.max_landmark_px:g})" if tol.max_landmark_px is not None else " (not judged)")]
        lines.extend(f"  ✗ {failure}" for failure in self.failures)
        return "\n".join(lines)


class RgbInputView(Runtime):
    """A raw view of an end-to-end graph behind the canonical input (BGR − mean, NCHW float32).

    ``inner`` runs the end-to-end graph with its raw tensors exposed as outputs and takes the
    graph's own input (RGB 0–255, NCHW; a backend with another layout converts inside its runtime
    as usual). The conversion back (add the mean, flip the channels) is exact for 8-bit images,
    and the numpy padding (0 after the mean) becomes the mean colour the end-to-end runtimes pad
    with, so the graph sees the very tensor its end-to-end runtime gives it.

    Args:
        inner: The raw-output runtime of the same graph (contract: ``postprocess`` numpy,
            ``output_names`` = the end-to-end spec's ``raw_tensors``).
        contract: The end-to-end file's contract (its mean).
    """

    def __init__(self, inner: Runtime, contract: DecodeContract) -> None:
        super().__init__(inner.contract)
        self.inner = inner
        self.name = f"{inner.name} (raw view of the end-to-end graph)"
        self._mean = np.asarray(contract.mean_bgr, dtype=np.float32).reshape(1, 3, 1, 1)

    def _infer(self, batch: np.ndarray) -> Mapping[str, np.ndarray]:
        return self.inner.infer(np.ascontiguousarray((batch + self._mean)[:, ::-1]))


def raw_contract(contract: DecodeContract) -> DecodeContract:
    """The contract of an end-to-end graph's raw view: raw tensors as outputs, numpy post-processing."""
    return contract.replace(postprocess="numpy", end2end=None, output_names=contract.end2end.raw_tensors)


def crowd_photo(image: np.ndarray, tiles: int = CROWD_TILES) -> np.ndarray:
    """``image`` (H×W×3) tiled ``tiles`` × ``tiles``: a crowd of the same faces, for NMS and ``max_det``."""
    return np.ascontiguousarray(np.tile(image, (tiles, tiles, 1)))


def default_in_graph_images() -> list[np.ndarray]:
    """The parity photos and a crowd made of the first one (BGR uint8)."""
    photos = [load_image(path) for path in default_parity_images()]
    return [*photos, crowd_photo(photos[0])]


def check_in_graph_parity(detecting: DetectingRuntime, raw: Runtime,
                          images: Sequence[str | Path | np.ndarray] = (),
                          tolerances: InGraphTolerances | None = None,
                          raise_on_failure: bool = True) -> InGraphReport:
    """Compares an end-to-end file's detections with numpy post-processing of the same graph's raw outputs.

    Args:
        detecting: The end-to-end file's runtime.
        raw: The same graph's raw outputs behind the canonical input (e.g. :class:`RgbInputView`).
        images: Paths or BGR arrays; none → :func:`default_in_graph_images`. A crowd is worth including.
        tolerances: Limits; default: the tier of the file's precision.
        raise_on_failure: Raise :class:`ParityError` outside the limits.

    Returns:
        The report.

    Raises:
        ParityError: Outside the limits (when ``raise_on_failure``); the message is the report.
    """
    contract = detecting.contract
    tolerances = tolerances or InGraphTolerances.for_precision(contract.precision)
    config = detecting.default_config()
    matching = Tolerances(min_iou=MATCH_IOU, score_threshold=config.conf_threshold, borderline=tolerances.borderline)
    stats = _DetectionStats()
    pictures = [load_image(image) for image in images] if images else default_in_graph_images()
    for image in pictures:
        found = detecting.detect(image, config)
        tensor, transform = preprocess(image, raw.contract)
        outputs = raw.infer(tensor[None])
        expected = decode_image(outputs["loc"][0], outputs["conf"][0], outputs["landmarks"][0],
                                tensor.shape[1:], raw.contract, transform, config)
        stats.add(expected, found, matching)
    report = InGraphReport(detecting.name, len(pictures), stats.candidate, stats.reference, stats.matched,
                           stats.match_rate, stats.min_iou, stats.max_score_diff, stats.max_landmark_diff,
                           tolerances, _failures(stats, tolerances))
    if raise_on_failure and not report.passed:
        raise ParityError(report.format() + "\nthe end-to-end model was not written")
    return report


def _failures(stats: _DetectionStats, tol: InGraphTolerances) -> tuple[str, ...]:
    failures = []
    if stats.match_rate < tol.min_match_rate:
        failures.append(f"match rate {stats.match_rate:.3f} < {tol.min_match_rate:g}")
    if stats.matched and not stats.min_iou >= tol.min_iou:
        failures.append(f"a matched box overlaps only {stats.min_iou:.5f} < {tol.min_iou:g}")
    if not stats.max_score_diff <= tol.max_score_diff:
        failures.append(f"matched scores differ by {stats.max_score_diff:.3g} > {tol.max_score_diff:g}")
    if tol.max_landmark_px is not None and not stats.max_landmark_diff <= tol.max_landmark_px:
        failures.append(f"matched landmarks differ by {stats.max_landmark_diff:.3g} px > {tol.max_landmark_px:g}")
    return tuple(failures)
