"""Calibration data for post-training quantization.

:mod:`~featherface_deploy.calibration.dataset` (numpy only) builds and caches
preprocessed calibration sets; :mod:`~featherface_deploy.calibration.ort_reader`
adapts them to ONNX Runtime and is imported only when asked for, so importing
this package pulls in no backend.
"""

from featherface_deploy.calibration.dataset import (
    CACHE_ENV,
    CalibrationConfig,
    CalibrationSet,
    build_calibration_set,
    default_cache_dir,
    list_image_files,
)

__all__ = [
    "CACHE_ENV",
    "CalibrationConfig",
    "CalibrationSet",
    "OrtCalibrationReader",
    "build_calibration_set",
    "default_cache_dir",
    "list_image_files",
]


def __getattr__(name: str):
    # Lazy: the ORT adapter imports onnxruntime, which plain dataset users do not need.
    if name == "OrtCalibrationReader":
        from featherface_deploy.calibration.ort_reader import OrtCalibrationReader

        return OrtCalibrationReader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
