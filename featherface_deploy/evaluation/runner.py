"""Runs a detector over a WIDER FACE folder and scores it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featherface_deploy.detector import FaceDetector
from featherface_deploy.evaluation.widerface import (
    WiderFaceAP,
    WiderGroundTruth,
    evaluate,
    list_images,
    load_ground_truth,
)

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
                       on_image: Callable[[], None] | None = None) -> WiderFaceResult:
    """Runs the detector on a WIDER FACE folder and computes Easy / Medium / Hard AP.

    With ``limit``, AP is computed over those images only (missing images would count as misses).
    """
    ground_truth = load_ground_truth(widerface_root)
    predictions = predict_widerface(detector, widerface_root, limit, on_image, ground_truth)
    if limit is not None:
        ground_truth = subset_ground_truth(ground_truth, set(predictions))
    return WiderFaceResult(predictions, evaluate(predictions, ground_truth), len(predictions))


def subset_ground_truth(ground_truth: WiderGroundTruth, keys: set[tuple[str, str]]) -> WiderGroundTruth:
    """Restricts the ground truth to the given (event, image name) keys, in the official order."""
    images = tuple(key for key in ground_truth.images if key in keys)
    return WiderGroundTruth(
        images=images,
        boxes={key: ground_truth.boxes[key] for key in images},
        keep={setting: {key: kept[key] for key in images} for setting, kept in ground_truth.keep.items()},
    )
