"""What a device needs to run a bundle, per file format, and the error that says so when it is missing.

Used on both sides: :mod:`.bundle` writes the requirements into the manifest and ``run.py``, and the runner
(:mod:`.device_main`) names them when the model's runtime cannot be imported on the device, where
``pip install featherface-deploy[...]`` (the host's advice) would be wrong: the bundle carries the package.
Standard library only (Python ≥ 3.8).
"""

from __future__ import annotations

from typing import Dict, List

# Format family → packages the device's Python needs (pip names; "a or b": either).
DEVICE_PACKAGES: Dict[str, List[str]] = {
    "onnx": ["numpy", "onnxruntime"],
    "tflite": ["numpy", "ai-edge-litert or tflite-runtime"],
    "coreml": ["numpy", "coremltools"],
    "engine": ["numpy", "tensorrt", "cuda-python"],
}
# Format family → how to install them on a device, and what runs where.
INSTALL_HINTS: Dict[str, str] = {
    "onnx": "pip install numpy onnxruntime (onnxruntime-gpu on an NVIDIA GPU)",
    "tflite": "pip install numpy ai-edge-litert (32-bit ARM: tflite-runtime)",
    "coreml": ("pip install numpy coremltools; on macOS the bundle runs Core ML (--compute-units), elsewhere "
               "the numpy reference interpreter of the ML Program (not Core ML)"),
    "engine": ("on a Jetson: JetPack's TensorRT Python bindings (apt install python3-libnvinfer) and "
               "pip install cuda-python; on an x86 NVIDIA GPU: pip install tensorrt cuda-python. The engine "
               "must have been built by the same TensorRT version for the same GPU"),
}


def missing_runtime_message(model: str, family: str, error: BaseException) -> str:
    """The device-side message for a model whose runtime cannot be imported.

    Args:
        model: The model's file name.
        family: Its format family (a key of :data:`DEVICE_PACKAGES`).
        error: The error raised when the runtime was opened; the import that failed is found in its causes.

    Returns:
        One line naming the missing module, the bundle's requirements and how to install them.
    """
    missing = _failed_import(error)
    needs = ", ".join(DEVICE_PACKAGES.get(family, ["numpy"]))
    return (f"cannot run {model} on this device: {missing or 'its runtime'} is not installed; this bundle needs "
            f"Python >= 3.8 with {needs}. Install: {INSTALL_HINTS.get(family, 'see the bundle MANIFEST.json')}")


def _failed_import(error: BaseException):
    """The module name of the first ImportError among ``error`` and its causes, else ``None``."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ImportError) and error.name:
            return error.name
        error = error.__cause__ or error.__context__
    return None
