"""Greedy non-maximum suppression (numpy, one vectorised IoU row per kept box)."""

from __future__ import annotations

import numpy as np


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS: keeps the best box, drops those overlapping it by more than the threshold, repeats.

    Areas use continuous coordinates (no +1), as in the RetinaFace reference.

    Args:
        boxes: (N, 4) [x1, y1, x2, y2].
        scores: (N,) scores.
        iou_threshold: Boxes with IoU strictly above this are suppressed.

    Returns:
        Indices of the kept boxes, best first (int64).
    """
    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order]
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    alive = np.ones(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(i)
        rest = np.nonzero(alive[i + 1:])[0] + i + 1
        if rest.size == 0:
            break
        width = np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0])
        height = np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1])
        inter = np.maximum(width, 0) * np.maximum(height, 0)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
        alive[rest[iou > iou_threshold]] = False
    return order[np.asarray(keep, dtype=np.int64)]
