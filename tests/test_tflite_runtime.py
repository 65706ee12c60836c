"""``TfliteRuntime``: contract-driven I/O mapping, injection, import hygiene, and V1 end to end.

The runtime itself needs only numpy + ai-edge-litert; building the test model
needs litert-torch (the export extra), so those tests skip without it.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import requires_backend  # noqa: E402

requires_backend("tflite")

from featherface_deploy.contract import DecodeContract  # noqa: E402
from featherface_deploy.errors import ContractError, InputError  # noqa: E402
from featherface_deploy.runtimes.tflite_runtime import Interpreter, TfliteRuntime  # noqa: E402
from support.tflite_models import SIZE, tiny_model_and_fp32  # noqa: E402



@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    """The tiny model exported to FP32 TFLite (NHWC), with its contract embedded."""
    requires_backend("tflite", "export")
    from conftest import export_row
    from featherface_deploy.exporters.torch2tflite import scratch_key

    model, converted = tiny_model_and_fp32()
    path = tmp_path_factory.mktemp("tflite") / "tiny.tflite"
    export_row(model, path, "tflite", imgsz=SIZE, scratch={scratch_key(model, SIZE, "NHWC"): converted})
    return path, model


def test_runtime_imports_no_torch():
    code = ("import sys, featherface_deploy.runtimes.tflite_runtime as r; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'onnxruntime', 'litert_torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_outputs_mapped_by_signature_name_not_shape(tiny_file):
    path, model = tiny_file
    runtime = TfliteRuntime(path, threads=1)
    assert runtime.max_batch == 1
    # The signature lists outputs alphabetically (conf, landmarks, loc); the roles still come out right.
    names = [d["name"] for d in runtime.output_details.values()]
    assert [n.split("_")[-2] for n in names] == ["loc", "conf", "landmarks"]
    import torch

    x = np.random.default_rng(0).uniform(-100, 100, (1, 3, *SIZE)).astype(np.float32)
    got = runtime.infer({"input": x})
    with torch.no_grad():
        want = [t.numpy() for t in model(torch.from_numpy(x))]
    for role, ref in zip(("loc", "conf", "landmarks"), want):
        np.testing.assert_allclose(got[role], ref, atol=2e-5, rtol=0)


@pytest.mark.slow
def test_contract_that_disagrees_with_the_file_is_rejected(tiny_file):
    path, _ = tiny_file
    contract = TfliteRuntime(path).contract
    with pytest.raises(ContractError, match="do not match"):
        TfliteRuntime(path, contract=contract.replace(output_names=("boxes", "scores", "landmarks")))
    with pytest.raises(ContractError, match="not a batch-1"):  # the file is NHWC; an NCHW claim must not pass
        TfliteRuntime(path, contract=contract.replace(input_layout="NCHW"))
    with pytest.raises(ContractError, match="input size"):
        TfliteRuntime(path, contract=contract.replace(input_size=SIZE[::-1]))


@pytest.mark.slow
def test_injected_interpreter_needs_a_contract(tiny_file):
    path, _ = tiny_file
    contract = TfliteRuntime(path).contract
    with pytest.raises(ContractError, match="contract="):
        TfliteRuntime(Interpreter(model_path=str(path)))
    runtime = TfliteRuntime(Interpreter(model_path=str(path), num_threads=1), contract=contract)
    out = runtime.infer(np.zeros((1, 3, *SIZE), np.float32))
    assert out["conf"].shape[-1] == 2 and out["conf"].dtype == np.float32
    with pytest.raises(InputError):
        runtime.infer(np.zeros((2, 3, *SIZE), np.float32))  # static batch 1
    with pytest.raises(InputError):
        runtime.infer(np.zeros((1, 3, 32, 32), np.float32))


@pytest.mark.slow
def test_face_detector_loads_tflite_and_batches_one_by_one(tiny_file):
    from featherface_deploy import FaceDetector

    path, _ = tiny_file
    detector = FaceDetector.load(path, threads=1)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (50, 70, 3), dtype=np.uint8) for _ in range(3)]
    results = detector.detect_batch(images)
    assert len(results) == 3 and all(r.boxes.shape[1:] == (4,) for r in results)


def test_not_a_tflite_file(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ContractError, match="TFL3"):
        TfliteRuntime(bad)


@pytest.mark.slow
def test_v1_fp32_matches_golden_and_finds_the_astronaut(v1_weights, tmp_path):
    from conftest import shared_path

    requires_backend("tflite", "export")
    skimage_data = pytest.importorskip("skimage.data")
    from featherface_deploy import FaceDetector
    from conftest import export_row

    image = skimage_data.astronaut()[..., ::-1].copy()  # RGB → BGR, 512×512
    result = export_row(v1_weights, tmp_path / "v1.tflite", "tflite", imgsz=(512, 512), parity_images=[image])
    faces = FaceDetector.load(result.path, threads=2)(image)
    keep = faces.scores >= 0.5
    assert keep.sum() == 1
    np.testing.assert_allclose(faces.boxes[keep][0], [180, 60, 271, 178], atol=2.0)
    assert faces.scores[keep][0] > 0.999
    assert isinstance(result.contract, DecodeContract) and result.parity.max_abs["conf"] < 1e-4
    golden = np.load(shared_path("docs", "golden", "featherface-v1.npz"))
    raw = TfliteRuntime(result.path).infer(golden["astronaut_512x512__input"])
    for role in ("loc", "conf", "landmarks"):
        np.testing.assert_allclose(raw[role], golden[f"astronaut_512x512__{role}"], atol=1e-4, rtol=0, err_msg=role)


def _floor(package: str) -> str:
    """The lowest version of ``package`` that the ``tflite`` extra allows (its ``>=`` bound in setup.cfg)."""
    import configparser

    from packaging.requirements import Requirement

    from conftest import REPO_ROOT

    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    for line in config["options.extras_require"]["tflite"].strip().splitlines():
        requirement = Requirement(line)
        if requirement.name == package:
            return next(spec.version for spec in requirement.specifier if spec.operator == ">=")
    raise AssertionError(f"{package} is not in the tflite extra")


@pytest.mark.slow
@pytest.mark.parametrize("package,module", [("ai-edge-litert", "ai_edge_litert"), ("tflite-runtime", "tflite_runtime")])
def test_runtime_works_with_the_oldest_allowed_litert(tiny_file, tmp_path, package, module):
    """The runtime gives the same outputs with the lowest LiteRT (and the tflite-runtime fallback) setup.cfg allows."""
    import socket

    from packaging.version import Version

    from conftest import REPO_ROOT

    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
    except OSError:
        pytest.skip(f"PyPI is not reachable: cannot fetch {package} {_floor(package)}")
    version, target = _floor(package), tmp_path / "site"
    # tflite-runtime wheels were built against numpy 1.x (the extra pins numpy<2 where it is the fallback).
    numpy = ["numpy==1.26.4"] if package == "tflite-runtime" else []
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                    "--only-binary=:all:", "--target", str(target), f"{package}=={version}", *numpy],
                   check=True, timeout=240)
    path, _ = tiny_file
    x = np.random.default_rng(1).uniform(-100, 100, (1, 3, *SIZE)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    hide = "" if module == "ai_edge_litert" else "sys.modules['ai_edge_litert'] = None; "  # the fallback path
    code = (f"import sys, numpy as np; {hide}from importlib import metadata; "
            "from featherface_deploy.runtimes import tflite_runtime as r; "
            f"out = r.TfliteRuntime(sys.argv[1], threads=1).infer(np.load(sys.argv[2])); "
            f"np.savez(sys.argv[3], **out); print(r.BACKEND, metadata.version('{package}'))")
    env = {"PYTHONPATH": f"{target}:{REPO_ROOT}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "x.npy"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    backend, installed = done.stdout.split()
    assert backend == package and Version(installed) == Version(version)
    got, want = np.load(tmp_path / "out.npz"), TfliteRuntime(path, threads=1).infer(x)
    for role in ("loc", "conf", "landmarks"):
        np.testing.assert_allclose(got[role], want[role], atol=1e-4, rtol=0, err_msg=role)
