"""Greedy non-maximum suppression (numpy, vectorised in blocks).

Candidates are taken in score order, in blocks of :data:`BLOCK`: a block is
first checked against every box kept so far with one IoU matrix, then resolved
greedily inside itself with a second one, so a crowded frame costs a few
matrix operations instead of one Python iteration per kept box.
"""

from __future__ import annotations

import numpy as np

BLOCK = 256


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two box sets [x1, y1, x2, y2] (continuous coordinates, no +1), shaped (len(a), len(b))."""
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(width, 0) * np.maximum(height, 0)
    area_a = np.maximum(a[:, 2] - a[:, 0], 0) * np.maximum(a[:, 3] - a[:, 1], 0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS: keeps the best box, drops those overlapping it by more than the threshold, repeats.

    Args:
        boxes: (N, 4) [x1, y1, x2, y2].
        scores: (N,) scores.
        iou_threshold: Boxes with IoU strictly above this are suppressed.

    Returns:
        Indices of the kept boxes, best first (int64).
    """
    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order]
    keep = np.zeros(len(order), dtype=bool)
    for start in range(0, len(order), BLOCK):
        block = boxes[start:start + BLOCK]
        alive = np.ones(len(block), dtype=bool)
        kept = boxes[:start][keep[:start]]
        if len(kept):
            alive &= ~(iou_matrix(kept, block) > iou_threshold).any(axis=0)
        overlaps = iou_matrix(block, block) > iou_threshold
        for i in np.nonzero(alive)[0]:
            if alive[i]:
                alive[i + 1:] &= ~overlaps[i, i + 1:]
        keep[start:start + len(block)] = alive
    return order[np.nonzero(keep)[0]]
