"""Runs a detector over a WIDER FACE folder and scores it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featherface_deploy.detector import FaceDetector
from featherface_deploy.evaluation.ground_truth import (
    WiderGroundTruth,
    list_images,
    load_ground_truth,
    subset_ground_truth,
)
from featherface_deploy.evaluation.protocol import WiderFaceAP, evaluate

Predictions = dict[tuple[str, str], np.ndarray]


@dataclass(frozen=True)
class WiderFaceResult:
    """Predictions of a detector on a WIDER FACE folder, and their AP.

    Attributes:
        predictions: (event, image name) → (N, 5) [x1, y1, x2, y2, score].
        ap: Easy / Medium / Hard AP.
        images: Number of images run.
    """

    predictions: Predictions
    ap: WiderFaceAP
    images: int


def predict_widerface(detector: FaceDetector, widerface_root: str | Path, limit: int | None = None,
                      on_image: Callable[[], None] | None = None,
                      ground_truth: WiderGroundTruth | None = None) -> Predictions:
    """Runs the detector on every image of the official layout, at the detector's own settings.

    Args:
        detector: Any :class:`FaceDetector`.
        widerface_root: Folder with ``WIDER_val/images`` and ``eval_tools/ground_truth``.
        limit: Run only the first ``limit`` images (for quick checks).
        on_image: Called after each image (progress reporting).
        ground_truth: The folder's ground truth if already loaded.

    Returns:
        The predictions keyed by (event, image name).
    """
    predictions: Predictions = {}
    for event, name, path in list_images(widerface_root, ground_truth)[:limit]:
        faces = detector(path)
        predictions[(event, name)] = np.concatenate([faces.boxes, faces.scores[:, None]], axis=1)
        if on_image is not None:
            on_image()
    return predictions


def evaluate_widerface(detector: FaceDetector, widerface_root: str | Path, limit: int | None = None,
                       on_image: Callable[[], None] | None = None,
                       ground_truth: WiderGroundTruth | None = None) -> WiderFaceResult:
    """Runs the detector on a WIDER FACE folder and computes Easy / Medium / Hard AP.

    With ``limit``, AP is computed over those images only (missing images would count as misses).

    Args:
        detector: Any :class:`FaceDetector`.
        widerface_root: Folder with ``WIDER_val/images`` and ``eval_tools/ground_truth``.
        limit: Run and score only the first ``limit`` images.
        on_image: Called after each image (progress reporting).
        ground_truth: The folder's ground truth if already loaded (read from its ``.mat`` files otherwise).

    Returns:
        The predictions, their AP and the number of images run.

    Raises:
        DatasetError: The folder does not have the official layout.
    """
    if ground_truth is None:
        ground_truth = load_ground_truth(widerface_root)
    predictions = predict_widerface(detector, widerface_root, limit, on_image, ground_truth)
    if limit is not None:
        ground_truth = subset_ground_truth(ground_truth, set(predictions))
    return WiderFaceResult(predictions, evaluate(predictions, ground_truth), len(predictions))

