"""The GPU side: TensorRT engine build and runtime, and the PyTorch CUDA rows (``torch-cuda``, ``torch-cuda-fp16``).

Only the clear errors can run on the project's machines (no TensorRT, no GPU);
everything else carries the ``gpu`` marker and skips with the reason.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from featherface_deploy.cli.main import cli  # noqa: E402
from featherface_deploy.errors import BackendNotInstalledError, InputError, missing_backend  # noqa: E402
from featherface_deploy.formats import get_format  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
HAS_TRT = importlib.util.find_spec("tensorrt") is not None
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no NVIDIA GPU visible to torch on this machine")
needs_trt = pytest.mark.skipif(not (HAS_TRT and HAS_CUDA), reason="TensorRT and an NVIDIA GPU are not available "
                               "here (TensorRT cannot be installed on the project's machines)")


def _tiny():
    from featherface_deploy.models.registry import create_untrained_model

    return create_untrained_model("featherface-tiny", 0)


NO_GPU = "needs an NVIDIA GPU (torch.cuda.is_available() is False)"
GPU_ROWS = ("torch-cuda", "torch-cuda-fp16")
without_cuda = pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA: the error path cannot be exercised")


def _compare(checkpoint, images, out, formats):
    return CliRunner().invoke(cli, ["compare", str(checkpoint), "--formats", formats, "--images", str(images),
                                    "--limit", "2", "--imgsz", "64", "--warmup", "1", "--iters", "2",
                                    "--out", str(out)])


def test_gpu_rows_open_the_torch_runtime_on_cuda() -> None:
    assert [dict(get_format(name).runtime_options) for name in GPU_ROWS] == [{"device": "cuda"},
                                                                            {"device": "cuda", "half": True}]
    assert [get_format(name).precision for name in GPU_ROWS] == ["fp32", "fp16"]
    assert get_format("torch").runtime_options == () and get_format("torch").runs_here() == (True, "")
    assert {get_format(name).runtime for name in GPU_ROWS} == {get_format("torch").runtime}
    assert all(get_format(name).runs_here() == ((True, "") if HAS_CUDA else (False, NO_GPU)) for name in GPU_ROWS)


@without_cuda
def test_a_gpu_row_artifact_opens_with_device_cuda(tiny_checkpoint) -> None:
    from featherface_deploy.harness.artifacts import BuiltArtifact

    with pytest.raises(BackendNotInstalledError, match="device 'cuda' needs an NVIDIA GPU"):
        BuiltArtifact(get_format("torch-cuda"), tiny_checkpoint, 0.0, False).open(1)


@without_cuda
def test_compare_gives_the_gpu_rows_an_error_row(tiny_checkpoint, calibration_dir, tmp_path) -> None:
    result = _compare(tiny_checkpoint, calibration_dir, tmp_path, "torch,torch-cuda,torch-cuda-fp16")
    assert result.exit_code == 3, result.output  # a row that could not run breaks the run's budget
    rows = {row["label"]: row for row in json.loads((tmp_path / "compare.json").read_text())["rows"]}
    assert list(rows) == ["torch", *GPU_ROWS]
    assert rows["torch"]["p50_ms"] > 0 and "error" not in rows["torch"]
    for name in GPU_ROWS:
        assert rows[name]["error"] == f"BackendNotInstalledError: {name} cannot run here: {NO_GPU}"
        assert rows[name]["precision"] == get_format(name).precision
    assert "| torch-cuda | fp32 |" in result.stdout and "Traceback" not in result.output


@without_cuda
def test_benchmark_on_cuda_without_a_gpu_is_a_clear_error(tiny_checkpoint, tmp_path) -> None:
    def run(model, *flags):
        return CliRunner().invoke(cli, ["benchmark", str(model), "--iters", "1", "--warmup", "0", *flags])

    for flags, row in ((["--device", "cuda"], "torch-cuda"), (["--device", "cuda", "--half"], "torch-cuda-fp16")):
        result = run(tiny_checkpoint, *flags)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert f"Error: {' '.join(flags)} is the {row} row, which cannot run here: {NO_GPU}" in result.output
    half_on_cpu = run(tiny_checkpoint, "--half")
    assert half_on_cpu.exit_code == 2 and "--half is FP16 autocast on an NVIDIA GPU: add --device cuda" in \
        half_on_cpu.output
    onnx_file = tmp_path / "never-read.onnx"
    onnx_file.write_bytes(b"refused before it is opened")
    on_onnx = run(onnx_file, "--device", "cuda")
    assert on_onnx.exit_code == 2 and "--device cuda has no row for onnx files" in on_onnx.output


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


@pytest.mark.gpu
@needs_cuda
def test_compare_and_benchmark_run_the_gpu_rows(tiny_checkpoint, calibration_dir, tmp_path) -> None:
    result = _compare(tiny_checkpoint, calibration_dir, tmp_path, "torch,torch-cuda,torch-cuda-fp16")
    assert result.exit_code == 0, result.output
    rows = {row["label"]: row for row in json.loads((tmp_path / "compare.json").read_text())["rows"]}
    for name in GPU_ROWS:
        assert rows[name]["runtime"] == name and rows[name]["p50_ms"] > 0 and rows[name]["parity_pass"], rows[name]
    out = tmp_path / "bench.json"
    bench = CliRunner().invoke(cli, ["benchmark", str(tiny_checkpoint), "--device", "cuda", "--half", "--imgsz",
                                     "64", "--iters", "3", "--warmup", "1", "--json", str(out)])
    assert bench.exit_code == 0, bench.output
    payload = json.loads(out.read_text())
    assert payload["facts"]["format"] == "torch-cuda-fp16" and payload["rows"][0]["p50_ms"] > 0
