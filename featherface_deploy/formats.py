"""The one table of model formats: suffixes, runtimes, exporters and install extras.

The CLI's choices, suffix detection and "missing backend" messages are all
derived from :data:`FORMATS`; adding a backend means adding a row here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from featherface_deploy.errors import ExportError, FeatherFaceError


@dataclass(frozen=True)
class ModelFormat:
    """One artifact format.

    Attributes:
        name: CLI name (``torch``, ``onnx``, ``tflite``…).
        suffixes: File suffixes that identify it.
        extra: The pip extra that installs its runtime.
        runtime: ``module:Class`` of its runtime.
        exporter: ``module:function`` that writes it from a checkpoint, or ``None``.
        description: One line for help texts.
    """

    name: str
    suffixes: tuple[str, ...]
    extra: str
    runtime: str
    exporter: str | None
    description: str


FORMATS: tuple[ModelFormat, ...] = (
    ModelFormat("torch", (".pth", ".pt"), "torch", "featherface_deploy.runtimes.torch_runtime:TorchRuntime", None,
                "PyTorch checkpoint (reference)"),
    ModelFormat("onnx", (".onnx",), "onnx", "featherface_deploy.runtimes.ort_runtime:OrtRuntime",
                "featherface_deploy.exporters.torch2onnx:export_onnx", "ONNX (ONNX Runtime)"),
    ModelFormat("tflite", (".tflite",), "tflite", "featherface_deploy.runtimes.tflite_runtime:TfliteRuntime",
                "featherface_deploy.exporters.torch2tflite:export_tflite", "TFLite (LiteRT; Android, ARM CPUs)"),
    # Built on the device from a `featherface-deploy trt-recipe` folder (or exporters.onnx2trt.build_engine).
    ModelFormat("engine", (".engine",), "tensorrt", "featherface_deploy.runtimes.trt_runtime:TrtRuntime", None,
                "TensorRT engine (NVIDIA GPU, Jetson)"),
)


def format_names() -> list[str]:
    """Returns the names of all formats."""
    return [fmt.name for fmt in FORMATS]


def get_format(name: str) -> ModelFormat:
    """Looks a format up by name.

    Raises:
        ExportError: Unknown name; the message lists the known ones.
    """
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    raise ExportError(f"unknown format '{name}'; choose one of: {', '.join(format_names())}")


def format_for_path(path: str | Path) -> ModelFormat:
    """Identifies a model file's format from its suffix.

    Raises:
        FeatherFaceError: The suffix belongs to no known format.
    """
    suffix = Path(path).suffix.lower()
    for fmt in FORMATS:
        if suffix in fmt.suffixes:
            return fmt
    known = ", ".join(s for fmt in FORMATS for s in fmt.suffixes)
    raise FeatherFaceError(f"cannot tell the format of {path}: unknown suffix '{suffix}' (known: {known})")


def resolve(reference: str):
    """Imports ``module:attribute`` and returns the attribute."""
    module_name, attribute = reference.split(":")
    return getattr(importlib.import_module(module_name), attribute)
