"""The official WIDER FACE evaluation: matching, PR curves and Easy / Medium / Hard AP.

:func:`evaluate` scores detections the way the official MATLAB eval tools do
(as ported to Python in the well-known ``widerface_evaluate/evaluation.py``),
in numpy only: global score normalisation, 1000 score thresholds, greedy
per-detection IoU matching with the "+1" pixel convention, faces outside a
setting's keep list ignored, and the VOC all-point AP
(:func:`featherface_deploy.verify.metrics.voc_average_precision`).

Predictions are always ``{(event, image_name): array (N, 5)}`` with rows
``[x1, y1, x2, y2, score]`` in image pixels; the conversion to the official
``x, y, w, h`` layout happens inside this module.

Deliberate differences from the Python port, none of which changes the
result for a well-formed submission:

* Detections are sorted by descending score (stable) before matching, as the
  MATLAB ``read_pred.m`` does; the Python port assumes files are sorted.
  With sorted input the result is identical to the port's.
* If every score is identical the official normalisation divides 0 by 0; here
  all normalised scores become 1.0 instead (every detection counts at every
  threshold).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from featherface_deploy.errors import EvaluationError
from featherface_deploy.evaluation.ground_truth import SETTINGS, ImageKey, WiderGroundTruth
from featherface_deploy.verify.metrics import voc_average_precision

THRESH_NUM = 1000
"""Number of score thresholds of the official PR curve (``thresh_num``)."""


@dataclass(frozen=True)
class WiderFaceAP:
    """Average precision on the three WIDER FACE settings, each in [0, 1].

    A setting whose ground truth has no face at all gets NaN.

    Attributes:
        easy: AP on the Easy setting.
        medium: AP on the Medium setting.
        hard: AP on the Hard setting.
    """

    easy: float
    medium: float
    hard: float

    @property
    def percentages(self) -> dict[str, float]:
        """The three APs in percent, keyed by setting name."""
        return {name: 100.0 * getattr(self, name) for name in SETTINGS}

    def format(self, digits: int = 2) -> str:
        """Formats the APs as percentages on one line.

        Args:
            digits: Decimal places of each percentage.

        Returns:
            For example ``"Easy 92.70% | Medium 90.12% | Hard 78.00%"``.
        """
        return " | ".join(
            f"{name.capitalize()} {value:.{digits}f}%"
            for name, value in self.percentages.items()
        )

    def __str__(self) -> str:
        return self.format()


def checked_predictions(key: ImageKey, pred: np.ndarray) -> np.ndarray:
    """Checks one image's ``[x1, y1, x2, y2, score]`` rows.

    Args:
        key: The image's ``(event, image_name)``, for the error message.
        pred: Its detections, any array-like.

    Returns:
        The rows as a float64 ``(N, 5)`` array (``(0, 5)`` when empty).

    Raises:
        EvaluationError: If the array is not ``(N, 5)`` or holds NaN/inf.
    """
    arr = np.asarray(pred, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 5), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise EvaluationError(f"predictions for {key} have shape {arr.shape}, expected (N, 5)")
    if not np.all(np.isfinite(arr)):
        raise EvaluationError(f"predictions for {key} contain NaN or infinite values")
    return arr


def _official_layout(key: ImageKey, pred: np.ndarray) -> np.ndarray:
    """Validates ``[x1, y1, x2, y2, s]`` rows and converts them to ``[x, y, w, h, s]``."""
    out = checked_predictions(key, pred).copy()
    out[:, 2] = out[:, 2] - out[:, 0]
    out[:, 3] = out[:, 3] - out[:, 1]
    return out


def _normalise_scores(preds: Mapping[ImageKey, np.ndarray]) -> None:
    """Official ``norm_score``, in place: (s - min) / (max - min) over all images.

    As in the official port the running max starts at 0 and the min at 1.
    """
    non_empty = [p for p in preds.values() if len(p)]
    max_score = max([0.0] + [float(p[:, 4].max()) for p in non_empty])
    min_score = min([1.0] + [float(p[:, 4].min()) for p in non_empty])
    diff = max_score - min_score
    for p in non_empty:
        if diff == 0:  # official code would produce NaN here
            p[:, 4] = 1.0
        else:
            p[:, 4] = (p[:, 4] - min_score) / diff


# Not postprocess.nms.iou_matrix on purpose: the official protocol counts x1..x2 as x2 - x1 + 1 pixels.
def _bbox_overlaps(boxes: np.ndarray, query_boxes: np.ndarray) -> np.ndarray:
    """IoU matrix (N, K) of corner boxes with the official "+1" pixel convention.

    Mirrors the official ``bbox_overlaps`` (Cython) operation by operation.
    """
    b, q = boxes[:, None, :], query_boxes[None, :, :]
    iw = np.minimum(b[..., 2], q[..., 2]) - np.maximum(b[..., 0], q[..., 0]) + 1
    ih = np.minimum(b[..., 3], q[..., 3]) - np.maximum(b[..., 1], q[..., 1]) + 1
    box_area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    query_area = (query_boxes[:, 2] - query_boxes[:, 0] + 1) * (
        query_boxes[:, 3] - query_boxes[:, 1] + 1)
    inter = iw * ih
    valid = (iw > 0) & (ih > 0)
    ua = box_area[:, None] + query_area[None, :] - inter
    out = np.zeros(inter.shape, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(inter, ua, out=out, where=valid)
    return out


def _match(pred: np.ndarray, gt: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Best gt (argmax IoU) of each detection and whether it clears the threshold.

    Args:
        pred: ``(N, 5)`` ``[x, y, w, h, s]`` detections, N >= 1.
        gt: ``(G, 4)`` ``[x, y, w, h]`` faces, G >= 1.
        iou_threshold: Minimum IoU of a match.

    Returns:
        ``(best_gt, matched)``: int array ``(N,)`` and bool array ``(N,)``.
    """
    p = pred[:, :4].copy()
    g = gt.copy()
    p[:, 2] = p[:, 2] + p[:, 0]
    p[:, 3] = p[:, 3] + p[:, 1]
    g[:, 2] = g[:, 2] + g[:, 0]
    g[:, 3] = g[:, 3] + g[:, 1]
    overlaps = _bbox_overlaps(p, g)
    best = overlaps.argmax(axis=1)
    best_overlap = overlaps[np.arange(len(p)), best]
    return best, best_overlap >= iou_threshold


def _image_pr_info(scores: np.ndarray, best: np.ndarray, matched: np.ndarray,
                   keep_mask: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Vectorised official ``image_eval`` + ``img_pr_info`` for one image.

    Args:
        scores: ``(N,)`` normalised scores, sorted descending.
        best: ``(N,)`` index of each detection's best-IoU gt face.
        matched: ``(N,)`` whether that IoU clears the threshold.
        keep_mask: ``(G,)`` True for faces that count in the setting.
        thresholds: ``(T,)`` the official score thresholds.

    Returns:
        ``(T, 2)`` array: [number of proposals, number of recalled faces]
        at each threshold, counting only detections with score >= threshold.
    """
    n = len(scores)
    hits_kept = matched & keep_mask[best]
    # proposal_list: -1 for a detection matched to an ignored face, else 1.
    proposal_ok = ~(matched & ~keep_mask[best])
    # pred_recall[h]: distinct kept faces recalled by detections 0..h.
    hit_idx = np.flatnonzero(hits_kept)
    _, first = np.unique(best[hit_idx], return_index=True)
    pred_recall = np.cumsum(np.bincount(hit_idx[first], minlength=n))
    proposals = np.cumsum(proposal_ok)
    # r_index = last detection with score >= thresh (scores sorted descending).
    count = n - np.searchsorted(scores[::-1], thresholds, side="left")
    r_index = np.maximum(count - 1, 0)
    info = np.stack([proposals[r_index], pred_recall[r_index]], axis=1).astype(np.float64)
    info[count == 0] = 0.0
    return info


def _prepare(predictions: Mapping[ImageKey, np.ndarray]) -> dict[ImageKey, np.ndarray]:
    """Converts, normalises and sorts (descending score, stable) all detections."""
    preds = {key: _official_layout(key, value) for key, value in predictions.items()}
    _normalise_scores(preds)
    for key, p in preds.items():
        preds[key] = p[np.argsort(-p[:, 4], kind="stable")]
    return preds


def evaluate(predictions: Mapping[ImageKey, np.ndarray], ground_truth: WiderGroundTruth,
             iou_threshold: float = 0.5) -> WiderFaceAP:
    """Scores detections with the official WIDER FACE protocol.

    Args:
        predictions: ``(event, image_name)`` -> float array ``(N, 5)`` of
            ``[x1, y1, x2, y2, score]`` rows in image pixels. Ground-truth
            images that are absent count as having no detections. Extra keys
            take part in the (global) score normalisation only, as in the
            official code.
        ground_truth: From :func:`~featherface_deploy.evaluation.ground_truth.load_ground_truth`.
        iou_threshold: Minimum IoU (official "+1" convention) of a match.

    Returns:
        The Easy / Medium / Hard average precision; NaN for a setting without
        any kept face in ``ground_truth`` (possible on a small subset).

    Raises:
        EvaluationError: If a prediction array is not ``(N, 5)`` or holds NaN/inf.
    """
    preds = _prepare(predictions)
    thresholds = 1 - (np.arange(THRESH_NUM) + 1) / THRESH_NUM
    curves = {s: np.zeros((THRESH_NUM, 2)) for s in SETTINGS}
    for key in ground_truth.images:
        pred, gt = preds.get(key), ground_truth.boxes[key]
        if pred is None or len(pred) == 0 or len(gt) == 0:
            continue
        best, matched = _match(pred, gt, iou_threshold)
        for setting in SETTINGS:
            keep_mask = np.zeros(len(gt), dtype=bool)
            keep_mask[ground_truth.keep[setting][key] - 1] = True
            curves[setting] += _image_pr_info(pred[:, 4], best, matched, keep_mask, thresholds)
    aps = []
    for setting in SETTINGS:
        count_face = ground_truth.num_kept(setting)
        if count_face == 0:  # e.g. a tiny subset: AP is undefined
            aps.append(float("nan"))
            continue
        curve = curves[setting]
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = curve[:, 1] / curve[:, 0]  # 0/0 -> NaN, as official
        aps.append(voc_average_precision(curve[:, 1] / count_face, precision))
    return WiderFaceAP(*aps)


