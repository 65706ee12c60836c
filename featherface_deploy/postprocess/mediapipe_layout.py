"""The tensor layout of a MediaPipe-task FeatherFace file, and its mapping to the canonical roles (numpy only).

A file made for MediaPipe's ObjectDetector (``export --format mediapipe``)
takes NHWC float32 **RGB 0–255** (the graph flips to BGR and subtracts the
mean) and has two outputs: ``location`` (1, N, 4 + 2K) = box deltas in the
task's YXHW order, then (y, x) deltas of K keypoints (the 5 landmarks, then
optionally the box corners x1y1 and x2y2 re-encoded as keypoints), and
``score`` (1, N, 1) = the face probability. Its decode contract marks this
with ``extra["mediapipe"]``; our LiteRT runtime uses these functions to feed
it canonical inputs and read back ``loc`` / ``conf`` / ``landmarks``.
"""

from __future__ import annotations

import numpy as np

from featherface_deploy.contract import DecodeContract

CONTRACT_KEY = "mediapipe"
LANDMARKS = 5


def is_task_file(contract: DecodeContract) -> bool:
    """Whether the contract belongs to a file in the MediaPipe-task layout."""
    return isinstance(contract.extra.get(CONTRACT_KEY), dict)


def task_input(batch_nchw: np.ndarray, mean_bgr) -> np.ndarray:
    """Canonical (B, 3, H, W) BGR − mean → the file's (B, H, W, 3) RGB 0–255 float32."""
    bgr = batch_nchw + np.asarray(mean_bgr, dtype=np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray(bgr[:, ::-1].transpose(0, 2, 3, 1), dtype=np.float32)


def task_input_nhwc(batch_nhwc: np.ndarray, mean_bgr) -> np.ndarray:
    """Canonical NHWC BGR − mean (a calibration set of an NHWC contract) → RGB 0–255 NHWC float32."""
    bgr = batch_nhwc + np.asarray(mean_bgr, dtype=np.float32).reshape(1, 1, 1, 3)
    return np.ascontiguousarray(bgr[..., ::-1], dtype=np.float32)


def canonical_outputs(location: np.ndarray, score: np.ndarray) -> dict[str, np.ndarray]:
    """``location`` (B, N, 4 + 2K) and ``score`` (B, N, 1) → ``loc`` (x, y, w, h deltas), ``conf``, ``landmarks``.

    ``conf`` is (1 − p, p): the file carries the face probability only.
    """
    loc = location[..., [1, 0, 3, 2]]
    points = location[..., 4:4 + 2 * LANDMARKS].reshape(*location.shape[:2], LANDMARKS, 2)[..., ::-1]
    probability = score[..., :1]
    return {"loc": np.ascontiguousarray(loc, dtype=np.float32),
            "conf": np.concatenate([1.0 - probability, probability], axis=-1).astype(np.float32),
            "landmarks": np.ascontiguousarray(points.reshape(*location.shape[:2], 2 * LANDMARKS), dtype=np.float32)}
