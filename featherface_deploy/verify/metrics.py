"""Average precision, written once for every caller.

:func:`voc_average_precision` is the VOC all-point AP under the precision
envelope, operation for operation the ``voc_ap`` of the official WIDER FACE
evaluation, so the evaluator's figures match the official tools.
:func:`ranked_average_precision` builds the PR curve of scored hit-or-miss
detections and scores it with the same function (the INT8 search's detection
agreement uses it). numpy only.
"""

from __future__ import annotations

import numpy as np


def voc_average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point interpolated AP: the area under the precision envelope.

    Args:
        recall: ``(K,)`` recall at each point of the curve, non-decreasing.
        precision: ``(K,)`` precision at the same points. NaN (a 0/0 point)
            propagates into the envelope exactly as in the official loop; it
            only matters where the recall changes.

    Returns:
        The AP, in [0, 1] for a well-formed curve.
    """
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    changed = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[changed + 1] - mrec[changed]) * mpre[changed + 1]))


def ranked_average_precision(scores: np.ndarray, hits: np.ndarray, num_truth: int) -> float:
    """AP of scored detections, each already judged a hit or a miss.

    Detections are ranked by descending score (stable, so ties keep their
    order); the curve's recall is ``hits so far / num_truth`` and its precision
    ``hits so far / detections so far``.

    Args:
        scores: ``(N,)`` detection scores.
        hits: ``(N,)`` bool, whether each detection matched a true object
            (each true object matched at most once).
        num_truth: Number of true objects.

    Returns:
        The AP in [0, 1]; with no true object, 1.0 when there is also no
        detection and 0.0 otherwise.
    """
    if num_truth == 0:
        return 1.0 if not len(scores) else 0.0
    order = np.argsort(-scores, kind="stable")
    true_positives = np.cumsum(hits[order])
    return voc_average_precision(true_positives / num_truth,
                                 true_positives / np.arange(1, len(order) + 1))
