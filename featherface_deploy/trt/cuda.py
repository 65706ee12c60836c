"""cuda-python's runtime API, shared by the TensorRT runtime and the INT8 calibrator (GPU machines only)."""

from __future__ import annotations

from featherface_deploy.errors import missing_backend

try:
    from cuda.bindings import runtime as cudart  # cuda-python ≥ 12.6
except ImportError:  # pragma: no cover - older cuda-python (JetPack 5/6 wheels)
    try:
        from cuda import cudart
    except ImportError as error:
        raise missing_backend("cuda-python", "tensorrt") from error


def check(result):
    """Unpacks a cuda-python ``(error, *values)`` tuple, raising on an error."""
    error, *values = result
    if error != cudart.cudaError_t.cudaSuccess:
        raise RuntimeError(f"CUDA error {error}")
    return values[0] if len(values) == 1 else values
