"""Accuracy evaluation of face detectors.

Currently the official WIDER FACE validation protocol (Easy / Medium / Hard
AP), in numpy + scipy only, in three modules: the ground truth
(:mod:`~featherface_deploy.evaluation.ground_truth`), the official evaluation
(:mod:`~featherface_deploy.evaluation.protocol`) and the submission files
(:mod:`~featherface_deploy.evaluation.submission`); :mod:`~featherface_deploy.evaluation.runner`
runs a detector over the dataset and scores it.
"""

from featherface_deploy.evaluation.ground_truth import (
    SETTINGS,
    WiderGroundTruth,
    list_images,
    load_ground_truth,
    subset_ground_truth,
)
from featherface_deploy.evaluation.protocol import THRESH_NUM, WiderFaceAP, evaluate
from featherface_deploy.evaluation.runner import WiderFaceResult, evaluate_widerface, predict_widerface
from featherface_deploy.evaluation.submission import read_predictions, write_predictions

__all__ = [
    "SETTINGS",
    "THRESH_NUM",
    "WiderFaceAP",
    "WiderFaceResult",
    "WiderGroundTruth",
    "evaluate",
    "evaluate_widerface",
    "list_images",
    "load_ground_truth",
    "predict_widerface",
    "read_predictions",
    "subset_ground_truth",
    "write_predictions",
]
