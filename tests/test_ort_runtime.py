"""OrtRuntime: contract from metadata or sidecar, rejection of files without one, providers, batches, inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import requires_backend  # noqa: E402

requires_backend("onnx", "export")  # the tests build their models with the ONNX exporter
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from featherface_deploy.contract import METADATA_KEY, SCHEMA_VERSION, sidecar_path  # noqa: E402
from featherface_deploy.errors import BackendNotInstalledError, ContractError, InputError  # noqa: E402
from featherface_deploy.runtimes.ort_runtime import OrtRuntime  # noqa: E402


@pytest.fixture(scope="module")
def exported(tiny_onnx):
    """The session's dynamic tiny FeatherFace export (batch, height and width free) and the model it came from."""
    from featherface_deploy.models.registry import create_untrained_model

    return tiny_onnx, create_untrained_model("featherface-tiny", 0)  # the seed tiny_onnx was exported with


def _strip_metadata(src, dst):
    proto = onnx.load(src)
    kept = [p for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.save(proto, dst)
    return proto


def test_contract_from_metadata_and_batched_inference(exported):
    path, model = exported
    runtime = OrtRuntime(path, threads=1)
    assert runtime.contract.model_name == "featherface-tiny" and runtime.contract.size_divisor == 32
    assert runtime.providers == ["CPUExecutionProvider"] and runtime.max_batch is None
    batch = np.random.default_rng(0).normal(0, 50, (3, 3, 64, 96)).astype(np.float32)
    out = runtime.infer({"input": batch})
    assert out["loc"].shape == (3, 2 * (8 * 12 + 4 * 6 + 2 * 3), 4)
    np.testing.assert_allclose(out["conf"].sum(-1), 1.0, atol=1e-5)
    single = runtime.infer(batch[1:2])
    np.testing.assert_allclose(single["loc"][0], out["loc"][1], atol=1e-5)


def test_contract_from_sidecar_when_metadata_is_absent(exported, tmp_path):
    path, _ = exported
    bare = tmp_path / "bare.onnx"
    _strip_metadata(path, bare)
    sidecar_path(bare).write_bytes(sidecar_path(path).read_bytes())
    assert OrtRuntime(bare).contract.model_name == "featherface-tiny"


def test_file_without_contract_is_rejected(exported, tmp_path):
    path, _ = exported
    bare = tmp_path / "bare.onnx"
    _strip_metadata(path, bare)
    with pytest.raises(ContractError, match="no decode contract"):
        OrtRuntime(bare)
    with pytest.raises(ContractError, match="metadata"):
        OrtRuntime(ort.InferenceSession(str(bare), providers=["CPUExecutionProvider"]))


def test_unknown_schema_version_is_rejected(exported, tmp_path):
    path, _ = exported
    proto = onnx.load(path)
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            data = json.loads(prop.value)
            data["schema_version"] = SCHEMA_VERSION + 1
            prop.value = json.dumps(data)
    future = tmp_path / "future.onnx"
    onnx.save(proto, future)
    with pytest.raises(ContractError, match="schema version"):
        OrtRuntime(future)


def test_injected_session(exported):
    path, _ = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    runtime = OrtRuntime(session)
    assert runtime.session is session and runtime.contract.source_format == "onnx"


def test_missing_provider_names_it(exported):
    path, _ = exported
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA provider is available here")
    with pytest.raises(BackendNotInstalledError, match="CUDAExecutionProvider.*onnxruntime-gpu"):
        OrtRuntime(path, providers=["cuda"])


def test_input_validation(exported):
    runtime = OrtRuntime(exported[0])
    good = np.zeros((1, 3, 64, 64), np.float32)
    with pytest.raises(InputError, match="float32"):
        runtime.infer(good.astype(np.float64))
    with pytest.raises(InputError, match="multiples of 32"):
        runtime.infer(np.zeros((1, 3, 64, 70), np.float32))
    with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
        runtime.infer(np.zeros((3, 64, 64), np.float32))
    with pytest.raises(InputError, match="named 'input'"):
        runtime.infer({"images": good})


def test_face_detector_loads_onnx(exported):
    from featherface_deploy import FaceDetector

    detector = FaceDetector.load(exported[0], threads=1)
    faces = detector(np.zeros((70, 90, 3), np.uint8))
    assert faces.boxes.shape[1:] == (4,) and faces.landmarks.shape[1:] == (5, 2)


def test_runtime_import_does_not_import_torch():
    code = ("import sys; import featherface_deploy.runtimes.ort_runtime; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_timing_harness_turns_thread_spinning_off(exported):
    """Interleaved timing: an idle session's spinning threads would steal the cores from the timed one."""
    from featherface_deploy.formats import get_format
    from featherface_deploy.harness.artifacts import BuiltArtifact
    from featherface_deploy.harness.latency import open_for_timing
    from featherface_deploy.runtimes.ort_runtime import SPINNING_KEYS

    path, _ = exported
    for runtime in (open_for_timing(OrtRuntime, path, 1), BuiltArtifact(get_format("onnx"), path, 0.0, True).open(1)):
        options = runtime.session.get_session_options()
        assert [options.get_session_config_entry(key) for key in SPINNING_KEYS] == ["0", "0"]
