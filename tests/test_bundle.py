"""``featherface-deploy bundle``: a bundle runs by itself on a Python with only numpy + onnxruntime (a Core ML
bundle: numpy + coremltools and coremltools' own requirements, no torch), and its detections are the local run's
(one implementation of preprocessing, decode and NMS, copied into the bundle). A TensorRT engine bundle cannot
run here (no TensorRT, no GPU): its contents and its error without tensorrt are checked.

The device Python is :func:`support.loopback_sshd.make_device_python`'s venv (the named packages linked in, nothing
else importable).
"""

from __future__ import annotations

import json
import subprocess
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from featherface_deploy.cli.main import cli
from featherface_deploy.remote.bundle import read_manifest
from support.loopback_sshd import device_environment, make_device_python

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def device_python(tmp_path_factory):
    """A Python with only numpy and onnxruntime."""
    return make_device_python(tmp_path_factory.mktemp("device-venv") / "venv")


@pytest.fixture(scope="module")
def bundle_dir(tiny_onnx, tmp_path_factory):
    """The tiny model's bundle, written by the CLI."""
    out = tmp_path_factory.mktemp("bundle") / "bundle"
    result = CliRunner().invoke(cli, ["bundle", str(tiny_onnx), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _run(python, bundle, *args) -> dict:
    done = _run_status(python, bundle, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _run_status(python, bundle, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), str(bundle / "run.py"), *args], capture_output=True, text=True,
                          timeout=180, cwd=bundle.parent, env=device_environment())


def _pack(model, widerface_root, tmp_path, size, count=3):
    """The first ``count`` WIDER images fitted for ``model`` into ``size`` and packed as the host does."""
    from featherface_deploy.remote.image_pack import write_pack
    from featherface_deploy.remote.packing import model_contract, pack_images

    paths = sorted((widerface_root / "WIDER_val" / "images").rglob("*.jpg"))[:count]
    return paths, write_pack(pack_images([([path.name], path) for path in paths], model_contract(model), size),
                             tmp_path / "pack.npz")


def _assert_same_faces(detections, local, paths) -> int:
    """The bundle's faces equal ``local(path)``'s (within the runner's JSON rounding); returns how many."""
    assert [item["key"] for item in detections] == [[path.name] for path in paths]
    total = 0
    for item, path in zip(detections, paths):
        expected = local(path).to_list()  # the runner's JSON rounding (0.01 px, 1e-5)
        assert len(item["faces"]) == len(expected)
        for key, tolerance in (("box", 0.011), ("score", 1.1e-5), ("landmarks", 0.011)):
            np.testing.assert_allclose([face[key] for face in item["faces"]], [face[key] for face in expected],
                                       atol=tolerance, rtol=0)
        total += len(expected)
    return total


def test_bundle_folder_and_zip_hold_the_same_files(bundle_dir, tiny_onnx, tmp_path):
    manifest = read_manifest(bundle_dir)
    assert manifest["model"] == "tiny.onnx" and manifest["format"] == "onnx"
    assert (bundle_dir / "model" / "tiny.onnx").read_bytes() == tiny_onnx.read_bytes()
    assert (bundle_dir / "model" / "tiny.onnx.json").is_file()
    result = CliRunner().invoke(cli, ["bundle", str(tiny_onnx), "-o", str(tmp_path / "b.zip")])
    assert result.exit_code == 0, result.output
    assert manifest["digest"] in result.output and "numpy and onnxruntime" in result.output
    with zipfile.ZipFile(tmp_path / "b.zip") as archive:
        assert sorted(archive.namelist()) == sorted([*manifest["files"], "MANIFEST.json"])
        assert json.loads(archive.read("MANIFEST.json"))["digest"] == manifest["digest"]
    assert not any(name.startswith(("featherface_deploy/exporters", "featherface_deploy/models"))
                   for name in manifest["files"])


def test_bundle_runs_alone_on_a_python_with_only_numpy_and_onnxruntime(bundle_dir, device_python):
    isolated = subprocess.run([str(device_python), "-c", "import featherface_deploy"], capture_output=True,
                              cwd="/", timeout=60, env=device_environment())
    assert isolated.returncode != 0  # nothing but the bundle provides the package
    for absent in ("torch", "click", "scipy", "PIL"):
        assert subprocess.run([str(device_python), "-c", f"import {absent}"], capture_output=True,
                              timeout=60, env=device_environment()).returncode != 0
    result = _run(device_python, bundle_dir, "benchmark", "--imgsz", "64", "--warmup", "1", "--iters", "3",
                  "--batch", "1,2")
    assert result["schema"] == "featherface-deploy/device-result/1" and result["command"] == "benchmark"
    assert [(row["threads"], row["batch"]) for row in result["rows"]] == [(1, 1), (1, 2)]
    assert all(row["p50_ms"] > 0 and row["iterations"] == 3 for row in result["rows"])
    assert set(result["facts"]["versions"]) == {"numpy", "onnxruntime"}
    assert result["model"]["file"] == "tiny.onnx"


def test_bundle_detections_equal_the_local_run(bundle_dir, device_python, tiny_onnx, widerface_root, tmp_path):
    from featherface_deploy.detector import FaceDetector
    from featherface_deploy.postprocess import PostprocessConfig

    size = (96, 128)
    paths, pack = _pack(tiny_onnx, widerface_root, tmp_path, size)
    result = _run(device_python, bundle_dir, "detect", "--images", str(pack), "--conf-threshold", "0.3")
    assert result["runtime"] == {"name": "onnxruntime", "note": ""}
    local = FaceDetector.load(tiny_onnx, config=PostprocessConfig(conf_threshold=0.3), size=size, threads=1)
    assert _assert_same_faces(result["detections"], local, paths) > 0  # the comparison covered real detections


def test_bundle_of_a_checkpoint_says_to_export_first(tmp_path):
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"not read")
    result = CliRunner().invoke(cli, ["bundle", str(checkpoint), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "cannot run in a device bundle" in result.output and "export" in result.output
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def coreml_device_python(tmp_path_factory):
    """A Python with only numpy, coremltools and what coremltools itself requires (no torch, no onnxruntime)."""
    return make_device_python(tmp_path_factory.mktemp("coreml-venv") / "venv", ("numpy", "coremltools"),
                              with_requirements=True)


@pytest.mark.slow
def test_coreml_bundle_runs_without_core_ml_through_the_named_interpreter_and_matches_the_local_run(
        tiny_coreml, coreml_device_python, widerface_root, tmp_path):
    from featherface_deploy.detector import FaceDetector
    from featherface_deploy.postprocess import PostprocessConfig
    from featherface_deploy.runtimes.coreml_runtime import INTERPRETER_NAME, INTERPRETER_NOTE, coreml_available

    if coreml_available():
        pytest.skip("Core ML runs here (macOS): the bundle would run Core ML, not the interpreter checked here")
    out = tmp_path / "bundle"
    built = CliRunner().invoke(cli, ["bundle", str(tiny_coreml), "-o", str(out)])
    assert built.exit_code == 0, built.output
    assert "numpy and coremltools" in built.output and "reference interpreter" in built.output
    manifest = read_manifest(out)
    assert manifest["format"] == "coreml" and manifest["model"] == "tiny.mlpackage"
    package_files = sorted(p.relative_to(tiny_coreml).as_posix() for p in tiny_coreml.rglob("*") if p.is_file())
    assert sorted(name[len("model/tiny.mlpackage/"):] for name in manifest["files"]
                  if name.startswith("model/tiny.mlpackage/")) == package_files
    assert "model/tiny.mlpackage.json" in manifest["files"]
    assert "featherface_deploy/runtimes/mil/interpreter.py" in manifest["files"]
    for absent in ("torch", "onnxruntime", "scipy", "PIL"):
        assert subprocess.run([str(coreml_device_python), "-c", f"import {absent}"], capture_output=True,
                              timeout=60, env=device_environment()).returncode != 0

    paths, pack = _pack(tiny_coreml, widerface_root, tmp_path, None, count=2)
    result = _run(coreml_device_python, out, "detect", "--images", str(pack), "--conf-threshold", "0.3")
    assert result["runtime"] == {"name": INTERPRETER_NAME, "note": INTERPRETER_NOTE}
    assert set(result["facts"]["versions"]) == {"numpy", "coremltools"}
    local = FaceDetector.load(tiny_coreml, config=PostprocessConfig(conf_threshold=0.3), engine="interpreter")
    assert _assert_same_faces(result["detections"], local, paths) > 0

    timed = _run(coreml_device_python, out, "benchmark", "--warmup", "0", "--iters", "2", "--compute-units", "cpu")
    assert timed["settings"]["compute_units"] == "cpu" and timed["settings"]["imgsz"] == [64, 64]  # its own size
    assert [(row["runtime"], row["runtime_note"]) for row in timed["rows"]] == [(INTERPRETER_NAME, INTERPRETER_NOTE)]
    assert timed["rows"][0]["p50_ms"] > 0 and "compute_units" not in timed["rows"][0]  # not Core ML: none applied
    assert timed["model"]["file"] == "tiny.mlpackage" and timed["model"]["bytes"] > 0


def test_engine_bundle_holds_the_engine_and_the_trt_runtime_and_names_what_to_install(tiny_onnx, device_python,
                                                                                      tmp_path):
    # No TensorRT here, so no real engine can be built: these bytes stand in for one. They are never opened,
    # because the bundle stops at the missing tensorrt before reading the file.
    engine = tmp_path / "tiny.engine"
    engine.write_bytes(b"not a real TensorRT engine")
    (tmp_path / "tiny.engine.json").write_bytes((tiny_onnx.parent / "tiny.onnx.json").read_bytes())
    out = tmp_path / "bundle"
    built = CliRunner().invoke(cli, ["bundle", str(engine), "-o", str(out)])
    assert built.exit_code == 0, built.output
    manifest = read_manifest(out)
    assert manifest["format"] == "engine" and manifest["requires"]["packages"] == ["numpy", "tensorrt",
                                                                                   "cuda-python"]
    assert {"model/tiny.engine", "model/tiny.engine.json", "featherface_deploy/runtimes/trt_runtime.py",
            "featherface_deploy/trt/cuda.py"} <= set(manifest["files"])
    assert (out / "model" / "tiny.engine").read_bytes() == engine.read_bytes()
    assert not any("onnx2trt" in name or "calibrat" in name for name in manifest["files"])  # host-side only
    for command in (["benchmark", "--imgsz", "64", "--iters", "1"], ["detect"]):
        done = _run_status(device_python, out, *command)
        assert done.returncode == 2 and done.stdout == ""
        error = done.stderr.strip().splitlines()[-1]
        assert error.startswith("error: cannot run tiny.engine on this device: tensorrt is not installed")
        assert "numpy, tensorrt, cuda-python" in error and "python3-libnvinfer" in error
        assert "pip install tensorrt cuda-python" in error and "featherface-deploy[" not in error
    wrong = _run_status(device_python, out, "detect", "--compute-units", "cpu")
    assert wrong.returncode == 2 and "--compute-units applies to Core ML packages" in wrong.stderr
