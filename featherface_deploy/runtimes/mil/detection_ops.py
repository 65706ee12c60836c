"""The MIL ops an end-to-end (in-graph post-processing) program adds, in numpy.

Each kernel follows its op's definition in ``coremltools.converters.mil.mil.ops.defs``:

- ``non_maximum_suppression`` (iOS15: boxes ``(n, B, 4)``, scores ``(n, B, K)``, a score
  threshold and a count output; iOS17: boxes ``(n, 4, B)``, scores ``(n, K, B)``, neither).
  Boxes are ``CENTER_SIZE_WIDTH_FIRST`` ``(cx, cy, w, h)``; a box is suppressed when its IoU
  with a selected one is ``> iou_threshold``; scores "below" the threshold are rejected
  (read literally: ``score < threshold``); indices are padded with −1, boxes and scores
  with 0. Unspecified by the definition and chosen here: equal scores are visited
  by increasing index, and a box without positive area has IoU 0 with every box.
- ``topk`` (descending unless ``ascending``; equal values by increasing index), ``split``,
  ``fill_like`` (iOS16: ``value`` in the shape of ``ref_tensor``).
"""

from __future__ import annotations

import numpy as np


def _corners(centre_size: np.ndarray) -> np.ndarray:
    """(B, 4) ``cx, cy, w, h`` → (B, 4) ``x1, y1, x2, y2``."""
    centre, half = centre_size[:, :2], centre_size[:, 2:] / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one corner box with (M, 4) corner boxes; 0 where the union has no positive area."""
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = width * height
    area = np.clip(box[2] - box[0], 0, None) * np.clip(box[3] - box[1], 0, None)
    areas = np.clip(others[:, 2] - others[:, 0], 0, None) * np.clip(others[:, 3] - others[:, 1], 0, None)
    union = area + areas - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0).astype(np.float32)


def _select(corners: np.ndarray, scores: np.ndarray, iou_threshold: float, score_threshold: float | None,
            max_boxes: int) -> list[int]:
    """Greedy NMS of one batch item over its best class score; the selected indices in selection order."""
    best = scores.max(axis=1)
    selected: list[int] = []
    for index in np.argsort(-best, kind="stable"):
        if len(selected) == max_boxes:
            break
        if np.isnan(best[index]) or (score_threshold is not None and best[index] < score_threshold):
            continue
        if selected and (_iou(corners[index], corners[selected]) > iou_threshold).any():
            continue
        selected.append(int(index))
    return selected


def _non_maximum_suppression(boxes, scores, iou_threshold, max_boxes, score_threshold=None,
                             per_class_suppression=False):
    if per_class_suppression:
        raise ValueError("per_class_suppression=True is not implemented by the reference interpreter")
    channels_last = score_threshold is not None  # iOS15 layout; iOS17 puts the boxes last
    if not channels_last:
        boxes, scores = np.swapaxes(boxes, 1, 2), np.swapaxes(scores, 1, 2)
    max_boxes = int(max_boxes)
    threshold = None if score_threshold is None else float(score_threshold)
    out_boxes = np.zeros((boxes.shape[0], max_boxes, 4), np.float32)
    out_scores = np.zeros((boxes.shape[0], max_boxes, scores.shape[2]), np.float32)
    out_indices = np.full((boxes.shape[0], max_boxes), -1, np.int32)
    counts = np.zeros(boxes.shape[0], np.int32)
    for item in range(boxes.shape[0]):
        selected = _select(_corners(boxes[item].astype(np.float32)), scores[item].astype(np.float32),
                           float(iou_threshold), threshold, max_boxes)
        counts[item] = len(selected)
        out_indices[item, :len(selected)] = selected
        out_boxes[item, :len(selected)] = boxes[item, selected]
        out_scores[item, :len(selected)] = scores[item, selected]
    if channels_last:
        return out_boxes, out_scores, out_indices, counts
    return np.swapaxes(out_boxes, 1, 2), np.swapaxes(out_scores, 1, 2), out_indices


def _topk(x, k=1, axis=-1, ascending=False, sort=True, return_indices=True):
    axis, k = int(axis), int(k)
    order = np.argsort(x if ascending else -x, axis=axis, kind="stable")
    indices = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(x, indices, axis=axis), indices.astype(np.int32)


def _split(x, axis, num_splits=None, split_sizes=None):
    axis = int(axis)
    if split_sizes is None:
        return tuple(np.split(x, int(num_splits), axis=axis))
    return tuple(np.split(x, np.cumsum([int(s) for s in split_sizes])[:-1], axis=axis))


def detection_ops() -> dict:
    """Returns ``{op_type: kernel(**inputs)}`` for the end-to-end head's ops."""
    return {"non_maximum_suppression": _non_maximum_suppression, "topk": _topk, "split": _split,
            "fill_like": lambda ref_tensor, value=0.0: np.full(np.shape(ref_tensor), value)}
