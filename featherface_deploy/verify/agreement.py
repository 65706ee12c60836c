"""Detection agreement: how well a reduced-precision model finds its float model's faces.

The AP of the candidate's detections, taking the reference's confident detections
(score ≥ ``reference_score``) as ground truth, on the same preprocessed inputs: 1.0 means
the candidate finds exactly the reference's faces, ranked first. INT8 exports use it on
their calibration photos to decide whether to keep more layers in float (never on
evaluation images). Generic over backends: each side is a callable from an NCHW float32
batch to the ``loc``/``conf``/``landmarks`` outputs, such as a runtime's ``infer``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from featherface_deploy.contract import DecodeContract
from featherface_deploy.postprocess import PostprocessConfig, decode_image
from featherface_deploy.postprocess.nms import iou_matrix
from featherface_deploy.postprocess.preprocess import Transform
from featherface_deploy.verify.metrics import ranked_average_precision

Infer = Callable[[np.ndarray], Mapping[str, np.ndarray]]


def detection_agreement(reference: Infer, candidate: Infer, batches: Iterable[np.ndarray],
                        contract: DecodeContract, reference_score: float = 0.1, iou: float = 0.5) -> float:
    """AP of ``candidate``'s detections against ``reference``'s (score ≥ ``reference_score``) as truth.

    Args:
        reference: The float model's inference (NCHW float32 batch of one → output roles).
        candidate: The reduced-precision model's.
        batches: NCHW float32 batches of one image, already preprocessed for both.
        contract: Decode contract (priors, variances) shared by both.
        reference_score: Reference detections at or above it are the truth.
        iou: Overlap for a candidate detection to hit a truth box (each truth box hit once).

    Returns:
        Agreement in [0, 1]. Detections use the default protocol (conf ≥ 0.02, NMS 0.4).
    """
    config = PostprocessConfig()
    scores, hits, total = [], [], 0
    for batch in batches:
        height, width = batch.shape[2:]
        identity = Transform(1.0, 1.0, (height, width))
        found = []
        for infer in (reference, candidate):
            outputs = infer(batch)
            found.append(decode_image(outputs["loc"][0], outputs["conf"][0], outputs["landmarks"][0],
                                      (height, width), contract, identity, config))
        truth_detections, test = found
        truth = truth_detections.boxes[truth_detections.scores >= reference_score]
        total += len(truth)
        used = np.zeros(len(truth), dtype=bool)
        for box, score in zip(test.boxes, test.scores):
            overlaps = iou_matrix(box[None], truth)[0]
            best = int(np.argmax(overlaps)) if len(truth) else -1
            hit = best >= 0 and overlaps[best] >= iou and not used[best]
            if hit:
                used[best] = True
            scores.append(float(score))
            hits.append(hit)
    return ranked_average_precision(np.array(scores), np.array(hits, dtype=bool), total)
