"""From raw network outputs to :class:`Detections`: decode, threshold, top-k, NMS, rescale.

Every runtime goes through this one function, so backends differ only in
their raw outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featherface_deploy.contract import DecodeContract
from featherface_deploy.limits import positive_count, probability
from featherface_deploy.postprocess.decode import decode_boxes, decode_landmarks
from featherface_deploy.postprocess.detections import Detections
from featherface_deploy.postprocess.nms import nms
from featherface_deploy.postprocess.preprocess import Transform
from featherface_deploy.postprocess.priors import generate_priors


@dataclass(frozen=True)
class PostprocessConfig:
    """Detection thresholds. Defaults follow the FeatherFace authors' WIDER FACE protocol.

    Attributes:
        conf_threshold: Minimum face probability kept.
        nms_iou: Greedy NMS IoU threshold.
        top_k: Candidates kept (by score) before NMS.
        keep_top_k: Detections kept after NMS.
    """

    conf_threshold: float = 0.02
    nms_iou: float = 0.4
    top_k: int = 5000
    keep_top_k: int = 750

    def __post_init__(self) -> None:
        """Refuses NaN or out-of-range thresholds and counts < 1 (:mod:`featherface_deploy.limits`).

        Raises:
            InputError: One line naming the field and the value.
        """
        object.__setattr__(self, "conf_threshold", probability("conf_threshold", self.conf_threshold))
        object.__setattr__(self, "nms_iou", probability("nms_iou", self.nms_iou))
        object.__setattr__(self, "top_k", positive_count("top_k", self.top_k))
        object.__setattr__(self, "keep_top_k", positive_count("keep_top_k", self.keep_top_k))


def decode_image(
    loc: np.ndarray,
    conf: np.ndarray,
    landmarks: np.ndarray,
    input_size: tuple[int, int],
    contract: DecodeContract,
    transform: Transform,
    config: PostprocessConfig = PostprocessConfig(),
) -> Detections:
    """Decodes one image's raw outputs into detections in original pixels.

    Args:
        loc: (N, 4) box deltas.
        conf: (N, 2) class probabilities (or logits if the contract says so).
        landmarks: (N, 10) landmark deltas.
        input_size: (height, width) of the network input the outputs came from.
        contract: The model's decode contract.
        transform: How the original image was scaled into the input.
        config: Thresholds.

    Returns:
        The detections, best first. Boxes are not clipped to the image (as in
        the reference decoder); candidates with a non-finite score, box or
        landmark are dropped.
    """
    height, width = input_size
    scores = conf[:, 1] if contract.conf_is_probability else _softmax_face(conf)
    candidates = np.nonzero(scores >= config.conf_threshold)[0]
    if candidates.size == 0:
        return Detections.empty()
    candidates = candidates[np.argsort(-scores[candidates], kind="stable")[: config.top_k]]
    priors = generate_priors(contract.priors, height, width)[candidates]
    boxes = decode_boxes(loc[candidates], priors, contract.priors.variance)
    points = decode_landmarks(landmarks[candidates], priors, contract.priors.variance)
    pixel_scale = np.array([width / transform.scale_x, height / transform.scale_y], dtype=np.float32)
    boxes = boxes * np.tile(pixel_scale, 2)
    points = points * pixel_scale
    scores = scores[candidates]
    # A broken model (NaN/Inf raw outputs) must not yield NaN boxes: such candidates are dropped.
    finite = np.isfinite(boxes).all(axis=1) & np.isfinite(points).all(axis=(1, 2)) & np.isfinite(scores)
    if not finite.all():
        boxes, points, scores = boxes[finite], points[finite], scores[finite]
    keep = nms(boxes, scores, config.nms_iou)[: config.keep_top_k]
    return Detections(
        boxes=boxes[keep].astype(np.float32),
        scores=scores[keep].astype(np.float32),
        landmarks=points[keep].astype(np.float32),
    )


def _softmax_face(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp[:, 1] / exp.sum(axis=1)
