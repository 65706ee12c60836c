"""``featherface-deploy bundle``: a bundle runs by itself on a Python with only numpy + onnxruntime, and its
detections are the local run's (one implementation of preprocessing, decode and NMS, copied into the bundle).

The device Python is :func:`loopback_sshd.make_device_python`'s venv (numpy and onnxruntime linked in, nothing
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
from loopback_sshd import device_environment, make_device_python

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
    done = subprocess.run([str(python), str(bundle / "run.py"), *args], capture_output=True, text=True,
                          timeout=120, cwd=bundle.parent, env=device_environment())
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


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
    from featherface_deploy.remote.image_pack import write_pack
    from featherface_deploy.remote.packing import model_contract, pack_images

    paths = sorted((widerface_root / "WIDER_val" / "images").rglob("*.jpg"))[:3]
    size = (96, 128)
    pack = write_pack(pack_images([([path.name], path) for path in paths], model_contract(tiny_onnx), size),
                      tmp_path / "pack.npz")
    result = _run(device_python, bundle_dir, "detect", "--images", str(pack), "--conf-threshold", "0.3")
    local = FaceDetector.load(tiny_onnx, config=PostprocessConfig(conf_threshold=0.3), size=size, threads=1)
    assert [item["key"] for item in result["detections"]] == [[path.name] for path in paths]
    total = 0
    for item, path in zip(result["detections"], paths):
        expected = local(path).to_list()  # the runner's JSON rounding (0.01 px, 1e-5)
        assert len(item["faces"]) == len(expected)
        for key, tolerance in (("box", 0.011), ("score", 1.1e-5), ("landmarks", 0.011)):
            np.testing.assert_allclose([face[key] for face in item["faces"]], [face[key] for face in expected],
                                       atol=tolerance, rtol=0)
        total += len(expected)
    assert total > 0  # the comparison covered real detections


def test_bundle_of_a_checkpoint_says_to_export_first(tmp_path):
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"not read")
    result = CliRunner().invoke(cli, ["bundle", str(checkpoint), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "cannot run in a device bundle" in result.output and "export" in result.output
    assert not (tmp_path / "out").exists()
