"""Shared pre- and post-processing in numpy only (no torch): every runtime uses these."""

from featherface_deploy.postprocess.decode import decode_boxes, decode_landmarks
from featherface_deploy.postprocess.detections import Detections
from featherface_deploy.postprocess.image_io import load_image
from featherface_deploy.postprocess.nms import nms
from featherface_deploy.postprocess.pipeline import PostprocessConfig, decode_image
from featherface_deploy.postprocess.preprocess import Transform, fit_image, preprocess, to_tensor
from featherface_deploy.postprocess.priors import generate_priors

__all__ = [
    "Detections",
    "PostprocessConfig",
    "Transform",
    "decode_boxes",
    "decode_image",
    "decode_landmarks",
    "fit_image",
    "generate_priors",
    "load_image",
    "nms",
    "preprocess",
    "to_tensor",
]
