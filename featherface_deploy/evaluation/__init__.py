"""Accuracy evaluation of face detectors.

Currently the official WIDER FACE validation protocol (Easy / Medium / Hard
AP), in numpy + scipy only; see :mod:`featherface_deploy.evaluation.widerface`.
"""

from featherface_deploy.evaluation.widerface import (
    SETTINGS,
    THRESH_NUM,
    WiderFaceAP,
    WiderGroundTruth,
    evaluate,
    list_images,
    load_ground_truth,
    read_predictions,
    write_predictions,
)

__all__ = [
    "SETTINGS",
    "THRESH_NUM",
    "WiderFaceAP",
    "WiderGroundTruth",
    "evaluate",
    "list_images",
    "load_ground_truth",
    "read_predictions",
    "write_predictions",
]

from featherface_deploy.evaluation.runner import WiderFaceResult, evaluate_widerface, predict_widerface  # noqa: E402

__all__ += ["WiderFaceResult", "evaluate_widerface", "predict_widerface"]
