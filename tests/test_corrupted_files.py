"""Corrupted and mismatched model files, per format: one FeatherFaceError line naming the file, never a backend's.

For ``.onnx``, ``.tflite``, ``.mlpackage`` and ``.pth``: truncated, zero bytes,
random bytes, another format under the right suffix, and the right format with
a contract that does not belong to it (edited priors, input size or layout;
a graph that is not a FeatherFace head) — issue cases 8 and 11. ``.engine``
files need TensorRT: without it every one of them is the clear "not installed"
error naming the file. The valid base files are exported once per module from
the seeded tiny model; an export costs minutes on a busy 2-core machine, so
the tests that need one are marked slow (the ``.pth``, ``.engine`` and
hand-built ONNX graph cases are not).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import requires_backend
from featherface_deploy import FaceDetector
from featherface_deploy.contract import DecodeContract, PriorConfig, sidecar_path
from featherface_deploy.errors import BackendError, BackendNotInstalledError, ContractError, FeatherFaceError
from featherface_deploy.models.registry import create_untrained_model

SIZE = (64, 64)
DAMAGES = ("truncated", "zero-bytes", "random-bytes", "wrong-format")
JPEG = Path(__file__).resolve().parents[1] / "featherface_deploy" / "data" / "astronaut.jpg"
WRONG_PRIORS = PriorConfig(steps=(4, 16, 32))


def _tiny() -> torch.nn.Module:
    return create_untrained_model("featherface-tiny", 0)


def _open_and_run(path: Path, **options) -> None:
    """Loads ``path`` as a user would and runs one image through it (a mismatch may only show there)."""
    detector = FaceDetector.load(path, threads=1, **options)
    size = detector.runtime.contract.input_size or SIZE
    detector(np.zeros((*size, 3), np.uint8))


def assert_refused(path: Path, kind: type[FeatherFaceError] = FeatherFaceError, **options) -> FeatherFaceError:
    """``path`` fails with a project error subclass: one line that names the file."""
    with pytest.raises(FeatherFaceError) as caught:
        _open_and_run(path, **options)
    error = caught.value
    assert type(error) is not FeatherFaceError and isinstance(error, kind), repr(error)
    message = str(error)
    assert "\n" not in message and path.name in message, message
    return error


def _damaged(valid: Path, damage: str, folder: Path, wrong_format: bytes) -> Path:
    """A copy of the file ``valid`` damaged as named, with the valid sidecar beside it (so the file is to blame)."""
    data = valid.read_bytes()
    content = {"truncated": data[: len(data) // 2], "zero-bytes": b"",
               "random-bytes": np.random.default_rng(0).bytes(4096), "wrong-format": wrong_format}[damage]
    path = folder / f"{damage}{valid.suffix}"
    path.write_bytes(content)
    if sidecar_path(valid).is_file():
        shutil.copy(sidecar_path(valid), sidecar_path(path))
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pth") / "tiny.pth"
    torch.save(_tiny().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def onnx_file(artifacts) -> Path:
    """The tiny model as a static 64×64 ONNX file (read-only: the tests damage copies)."""
    requires_backend("onnx", "export")
    return artifacts.get("onnx", imgsz=SIZE, simplify=False, require_faces=False)


@pytest.fixture(scope="module")
def tflite_file(tmp_path_factory) -> Path:
    """The tiny model as FP32 TFLite, from the session's shared conversion."""
    requires_backend("tflite", "export")
    from featherface_deploy.exporters.torch2tflite import scratch_key
    from featherface_deploy.pipeline import export_model
    from support.tflite_models import SIZE as TFLITE_SIZE
    from support.tflite_models import tiny_model_and_fp32

    model, converted = tiny_model_and_fp32()
    path = tmp_path_factory.mktemp("tflite") / "tiny.tflite"
    export_model(model, path, "tflite", {"imgsz": TFLITE_SIZE}, require_faces=False,
                 scratch={scratch_key(model, TFLITE_SIZE, "NHWC"): converted})
    return path


@pytest.fixture(scope="module")
def mlpackage(tiny_coreml) -> Path:
    """The session's tiny 64×64 Core ML package (read-only: the tests damage copies)."""
    requires_backend("coreml")
    return tiny_coreml


# --- .pth --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_checkpoint(checkpoint, tmp_path, damage):
    assert_refused(_damaged(checkpoint, damage, tmp_path, JPEG.read_bytes()))


def test_checkpoint_of_another_shape_names_the_file_and_the_key(checkpoint, tmp_path):
    from featherface_deploy.errors import CheckpointError

    state = torch.load(checkpoint, weights_only=True)
    key = next(iter(state))
    state[key] = torch.zeros(1)
    torch.save(state, tmp_path / "reshaped.pth")
    error = assert_refused(tmp_path / "reshaped.pth", CheckpointError)
    assert key in str(error)
    assert_refused(tmp_path / "reshaped.pth", CheckpointError, architecture="featherface-tiny")


# --- .engine (TensorRT) ------------------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None,
                    reason="TensorRT is installed here: engines are tested in test_trt_gpu")
@pytest.mark.parametrize("damage", DAMAGES)
def test_engine_without_tensorrt_names_the_file_and_the_extra(checkpoint, tmp_path, damage):
    valid = tmp_path / "valid.engine"
    valid.write_bytes(b"\x00" * 1024)  # no engine can be built here; every file is refused alike
    error = assert_refused(_damaged(valid, damage, tmp_path, checkpoint.read_bytes()), BackendNotInstalledError)
    assert "featherface-deploy[tensorrt]" in str(error)


# --- .onnx -------------------------------------------------------------------------------------------------------


def _graph(path: Path, contract: DecodeContract, outputs: dict[str, list], nodes: list, initializers=()) -> Path:
    """Writes a small ONNX graph (input ``input`` 1×3×64×64) with ``contract`` in its metadata."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from featherface_deploy.metadata.onnx import write_contract

    graph = helper.make_graph(nodes, "not-featherface",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, *SIZE])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()],
                              list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    write_contract(model, contract)
    onnx.save(model, str(path))
    return path


def _tiny_contract() -> DecodeContract:
    from featherface_deploy.models.registry import base_contract

    return base_contract("featherface-tiny", size_divisor=32, source_format="onnx").replace(input_size=SIZE)


def test_identity_graph_with_the_right_names_is_refused_before_inference(tmp_path):
    # Before the checks: IndexError in `detect`, a 1.82 TiB allocation in `evaluate`.
    requires_backend("onnx")
    from onnx import helper

    names = ("loc", "conf", "landmarks")
    path = _graph(tmp_path / "identity.onnx", _tiny_contract(), {n: [1, 3, *SIZE] for n in names},
                  [helper.make_node("Identity", ["input"], [n]) for n in names])
    error = assert_refused(path, ContractError)
    assert "not a FeatherFace head output" in str(error)


def test_backend_failure_during_inference_is_a_backend_error_with_the_cause_chained(tmp_path):
    requires_backend("onnx")
    from onnx import TensorProto, helper

    contract = _tiny_contract()
    rows = contract.priors.count(*SIZE)
    shapes = {"loc": [1, rows, 4], "conf": [1, rows, 2], "landmarks": [1, rows, 10]}
    # Reshapes that declare the right head shapes but cannot run: 12,288 input values into rows × width.
    nodes = [helper.make_node("Reshape", ["input", f"{n}_shape"], [n]) for n in shapes]
    initializers = [helper.make_tensor(f"{n}_shape", TensorProto.INT64, [3], s) for n, s in shapes.items()]
    path = _graph(tmp_path / "unrunnable.onnx", contract, shapes, nodes, initializers)
    from featherface_deploy.runtimes.ort_runtime import OrtRuntime

    runtime = OrtRuntime(path, threads=1)  # loads: every declared shape agrees with the contract
    with pytest.raises(BackendError, match="onnxruntime failed to run the model") as caught:
        runtime.infer(np.zeros((1, 3, *SIZE), np.float32))
    assert caught.value.__cause__ is not None and "\n" not in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_onnx(onnx_file, checkpoint, tmp_path, damage):
    # Before the wrapping, a 0-byte .onnx was ONNX Runtime's raw InvalidArgument traceback.
    assert_refused(_damaged(onnx_file, damage, tmp_path, checkpoint.read_bytes()), BackendError)


def _onnx_with_contract(onnx_file: Path, path: Path, contract: DecodeContract | None) -> Path:
    """A copy of ``onnx_file`` whose embedded contract is ``contract`` (``None``: metadata removed)."""
    import onnx

    from featherface_deploy.contract import METADATA_KEY
    from featherface_deploy.metadata.onnx import write_contract

    model = onnx.load(str(onnx_file))
    if contract is None:
        kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
    else:
        write_contract(model, contract)
    onnx.save(model, str(path))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("edit, message", [
    ({"priors": WRONG_PRIORS}, "has 168 rows but the contract's priors (steps [4, 16, 32]"),
    ({"input_size": (128, 128)}, "takes 64×64 inputs but the contract says input_size 128×128"),
    ({"input_size": None}, "fixed 64×64 input but the contract says it takes any size"),
    ({"input_layout": "NHWC"}, "is NCHW but the contract says input_layout NHWC"),
    ({"output_names": ("boxes", "scores", "points")}, "do not match the contract"),
])
def test_onnx_with_a_contract_that_is_not_its_own(onnx_file, tmp_path, edit, message):
    from featherface_deploy.runtimes.ort_runtime import OrtRuntime

    edited = OrtRuntime(onnx_file).contract.replace(**edit)
    error = assert_refused(_onnx_with_contract(onnx_file, tmp_path / "edited.onnx", edited), ContractError)
    assert message in str(error)


@pytest.mark.slow
def test_onnx_sidecar_that_is_edited_or_broken(onnx_file, tmp_path):
    from featherface_deploy.runtimes.ort_runtime import OrtRuntime

    bare = _onnx_with_contract(onnx_file, tmp_path / "bare.onnx", None)
    assert_refused(bare, ContractError)  # neither metadata nor sidecar
    for text in ("{not json", '{"schema_version": 1, "priors": {"steps": "x"}}', "[]",
                 OrtRuntime(onnx_file).contract.replace(priors=WRONG_PRIORS).to_json()):
        sidecar_path(bare).write_text(text)
        assert_refused(bare, ContractError)


# --- .tflite -----------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_tflite(tflite_file, checkpoint, tmp_path, damage):
    assert_refused(_damaged(tflite_file, damage, tmp_path, checkpoint.read_bytes()))


@pytest.mark.slow
@pytest.mark.parametrize("edit, message", [
    ({"priors": WRONG_PRIORS}, "rows but the contract's priors (steps [4, 16, 32]"),
    ({"input_size": (128, 128)}, "disagrees with the contract's input size (128, 128)"),
    ({"input_layout": "NCHW"}, "is not a batch-1, 3-channel NCHW image tensor"),
])
def test_tflite_with_a_contract_that_is_not_its_own(tflite_file, tmp_path, edit, message):
    from featherface_deploy.metadata.tflite import embed_contract
    from featherface_deploy.runtimes.tflite_runtime import TfliteRuntime

    edited = TfliteRuntime(tflite_file).contract.replace(**edit)
    path = tmp_path / "edited.tflite"
    path.write_bytes(embed_contract(tflite_file.read_bytes(), edited))
    error = assert_refused(path, ContractError)
    assert message in str(error)


# --- .mlpackage (the numpy reference interpreter off macOS) ------------------------------------------------------


@pytest.mark.parametrize("damage", ("truncated", "zero-bytes", "random-bytes"))
def test_damaged_mlpackage_files(mlpackage, tmp_path, damage):
    inside = sorted(p.relative_to(mlpackage) for p in mlpackage.rglob("*") if p.is_file())
    assert {p.name for p in inside} >= {"Manifest.json", "model.mlmodel", "weight.bin"}
    for part in inside:  # one damaged file at a time: the manifest, the program, the weights
        package = tmp_path / f"{part.name}.mlpackage"
        shutil.copytree(mlpackage, package)
        shutil.copy(sidecar_path(mlpackage), sidecar_path(package))
        target = package / part
        data = target.read_bytes()
        target.write_bytes({"truncated": data[: len(data) // 2], "zero-bytes": b"",
                            "random-bytes": np.random.default_rng(0).bytes(len(data))}[damage])
        assert_refused(package)


def test_mlpackage_that_is_not_a_package(mlpackage, checkpoint, tmp_path):
    empty = tmp_path / "empty.mlpackage"
    empty.mkdir()
    for path, content in ((tmp_path / "zero.mlpackage", b""), (tmp_path / "file.mlpackage", checkpoint.read_bytes()),
                          (tmp_path / "random.mlpackage", np.random.default_rng(0).bytes(4096)), (empty, None)):
        if content is not None:
            path.write_bytes(content)
        shutil.copy(sidecar_path(mlpackage), sidecar_path(path))
        assert_refused(path)


def test_mlpackage_with_a_contract_that_is_not_its_own(mlpackage, tmp_path):
    import coremltools

    from featherface_deploy.contract import METADATA_KEY

    model = coremltools.models.MLModel(str(mlpackage), skip_model_load=True)
    contract = DecodeContract.from_json(model.user_defined_metadata[METADATA_KEY])
    model.user_defined_metadata[METADATA_KEY] = contract.replace(priors=WRONG_PRIORS).to_json()
    model.save(str(tmp_path / "edited.mlpackage"))
    error = assert_refused(tmp_path / "edited.mlpackage", ContractError)
    assert "has 168 rows but the contract's priors (steps [4, 16, 32]" in str(error)
