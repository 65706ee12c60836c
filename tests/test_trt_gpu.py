"""The GPU side: TensorRT engine build and runtime, and the PyTorch CUDA row.

Only the clear errors can run on the project's machines (no TensorRT, no GPU);
everything else carries the ``gpu`` marker and skips with the reason.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from featherface_deploy.errors import BackendNotInstalledError, InputError, missing_backend  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
HAS_TRT = importlib.util.find_spec("tensorrt") is not None
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no NVIDIA GPU visible to torch on this machine")
needs_trt = pytest.mark.skipif(not (HAS_TRT and HAS_CUDA), reason="TensorRT and an NVIDIA GPU are not available "
                               "here (TensorRT cannot be installed on the project's machines)")


def _tiny():
    from featherface_deploy.models import create_model

    torch.manual_seed(0)
    return create_model("featherface-tiny")


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA: the error path cannot be exercised")
def test_cuda_device_without_gpu_is_a_clear_error() -> None:
    from featherface_deploy.runtimes.torch_runtime import TorchRuntime

    with pytest.raises(BackendNotInstalledError, match="needs an NVIDIA GPU"):
        TorchRuntime(_tiny(), device="cuda")
    with pytest.raises(InputError, match="CUDA only"):
        TorchRuntime(_tiny(), half=True)


def test_trt_runtime_missing_backend_names_the_extra() -> None:
    if HAS_TRT:
        pytest.skip("tensorrt is installed")
    with pytest.raises(BackendNotInstalledError, match=r"featherface-deploy\[tensorrt\]"):
        import featherface_deploy.runtimes.trt_runtime  # noqa: F401
    assert "tensorrt" in str(missing_backend("tensorrt", "tensorrt"))


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("half", [False, True])
def test_torch_cuda_matches_cpu(half: bool) -> None:
    from featherface_deploy.runtimes.torch_runtime import TorchRuntime

    model = _tiny()
    batch = np.random.default_rng(0).normal(scale=50, size=(1, 3, 64, 64)).astype(np.float32)
    cpu = TorchRuntime(model).infer(batch)
    gpu = TorchRuntime(_tiny(), device="cuda", half=half).infer(batch)
    for role in cpu:
        np.testing.assert_allclose(gpu[role], cpu[role], atol=5e-2 if half else 1e-3)


@pytest.mark.gpu
@needs_trt
def test_engine_build_and_run(tmp_path) -> None:
    from conftest import export_row
    from featherface_deploy.runtimes.torch_runtime import TorchRuntime
    from featherface_deploy.runtimes.trt_runtime import TrtRuntime

    engine = export_row(_tiny(), tmp_path / "tiny.engine", "engine", imgsz=(64, 64), simplify=False).path
    runtime = TrtRuntime(engine)
    batch = np.random.default_rng(0).normal(scale=50, size=(1, 3, 64, 64)).astype(np.float32)
    reference = TorchRuntime(_tiny()).infer(batch)
    outputs = runtime.infer(batch)
    assert runtime.max_batch == 1 and b"featherface" not in engine.read_bytes()[:64]
    for role in reference:
        np.testing.assert_allclose(outputs[role], reference[role], atol=1e-3)
