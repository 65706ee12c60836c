"""ONNX export: static and dynamic shapes, both DCN lowerings, the Pad_Fusion trap, contract, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import export_row, requires_backend, shared_dir  # noqa: E402

requires_backend("onnx", "export")
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402


from featherface_deploy.contract import METADATA_KEY, DecodeContract, sidecar_path  # noqa: E402
from featherface_deploy.errors import ExportError, ParityError  # noqa: E402
from featherface_deploy.exporters.dcn_choice import FASTEST  # noqa: E402
from featherface_deploy.models import load_model  # noqa: E402
from featherface_deploy.models.bifpn import same_maxpool  # noqa: E402
from featherface_deploy.models.registry import create_untrained_model  # noqa: E402
from featherface_deploy.runtimes.ort_runtime import OrtRuntime  # noqa: E402
from featherface_deploy.verify.tolerances import Tolerances  # noqa: E402

TINY_SIZE = (64, 96)


def _tiny():
    return create_untrained_model("featherface-tiny", 0)


def _torch_outputs(model, x: np.ndarray):
    with torch.inference_mode():
        return [t.numpy() for t in model(torch.from_numpy(x))]


def _assert_close(model, runtime: OrtRuntime, x: np.ndarray, atol=(1e-3, 1e-4, 1e-3)):
    got = runtime.infer(x)
    for role, want, tol in zip(("loc", "conf", "landmarks"), _torch_outputs(model, x), atol):
        np.testing.assert_allclose(got[role], want, atol=tol, rtol=0, err_msg=role)


def test_static_export_writes_model_metadata_and_sidecar(tmp_path):
    model = _tiny()
    result = export_row(model, tmp_path / "tiny.onnx", "onnx", imgsz=TINY_SIZE)
    proto = onnx.load(result.path)
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["loc", "conf", "landmarks"]
    embedded = {p.key: p.value for p in proto.metadata_props}[METADATA_KEY]
    contract = DecodeContract.from_json(embedded)
    assert contract == DecodeContract.from_json(sidecar_path(result.path).read_text())
    assert contract == result.contract
    assert contract.input_size == TINY_SIZE and contract.size_divisor == 32
    assert contract.source_format == "onnx" and contract.precision == "fp32"
    assert contract.extra["dcn"] == FASTEST["onnx"] and contract.extra["dcn_selected"].startswith("auto")
    assert {"torch", "onnx", "onnxruntime", "featherface_deploy"} <= set(contract.versions)
    assert result.parity.passed
    x = np.random.default_rng(1).normal(0, 60, (1, 3, *TINY_SIZE)).astype(np.float32)
    _assert_close(model, OrtRuntime(result.path), x)


@pytest.mark.slow
def test_dynamic_export_takes_any_batch_and_size(tmp_path):
    model = _tiny()
    result = export_row(model, tmp_path / "dyn.onnx", "onnx", imgsz=TINY_SIZE, dynamic=True)
    runtime = OrtRuntime(result.path)
    assert runtime.contract.input_size is None and runtime.max_batch is None
    rng = np.random.default_rng(2)
    for shape in [(1, 3, 32, 32), (3, 3, 96, 64), (2, 3, 160, 128)]:
        _assert_close(model, runtime, rng.normal(0, 60, shape).astype(np.float32))


@pytest.mark.slow
def test_native_dcn_matches_torch_and_uses_deformconv(tmp_path):
    model = _tiny()
    result = export_row(model, tmp_path / "native.onnx", "onnx", imgsz=TINY_SIZE, dcn="native", opset=19)
    ops = {n.op_type for n in onnx.load(result.path).graph.node}
    assert "DeformConv" in ops and "GatherND" not in ops and "Gather" not in ops
    assert result.contract.extra["dcn"] == "native"
    x = np.random.default_rng(3).normal(0, 60, (1, 3, *TINY_SIZE)).astype(np.float32)
    _assert_close(model, OrtRuntime(result.path), x)


def test_bad_options_raise_export_error(tmp_path):
    model = _tiny()
    with pytest.raises(ExportError, match="multiples of 32"):
        export_row(model, tmp_path / "a.onnx", "onnx", imgsz=(100, 96))
    with pytest.raises(ExportError, match="opset ≥ 19"):
        export_row(model, tmp_path / "a.onnx", "onnx", dcn="native", opset=18)
    with pytest.raises(ExportError, match="unknown DCN lowering"):
        export_row(model, tmp_path / "a.onnx", "onnx", dcn="torchvision")
    with pytest.raises(ExportError, match="opset 17"):
        export_row(model, tmp_path / "a.onnx", "onnx", opset=17)
    assert not list(tmp_path.iterdir())


def test_failed_parity_leaves_no_file(tmp_path, monkeypatch):
    strict = Tolerances(conf=0.0, loc=0.0, landmarks=0.0)
    with pytest.raises(ParityError, match="was not written"):
        export_row(_tiny(), tmp_path / "x.onnx", "onnx", imgsz=TINY_SIZE, tolerances=strict)
    assert not list(tmp_path.iterdir())


class _Pool(torch.nn.Module):
    def forward(self, x):
        return same_maxpool(x)


@pytest.mark.parametrize("simplifier", [None, "onnxsim", "onnxslim"])
def test_zero_pad_maxpool_survives_ort_and_simplifier_optimisations(tmp_path, simplifier):
    """Regression: Pad_Fusion / onnxsim folded the zero Pad into MaxPool's −inf padding (V1 boxes off by 0.7)."""
    from featherface_deploy.exporters.torch2onnx import simplify_onnx

    x = -1.0 - torch.rand(1, 4, 64, 96, generator=torch.Generator().manual_seed(4))  # every pooled value negative: zero padding must win at the border
    program = torch.onnx.export(_Pool().eval(), (x,), dynamo=True, opset_version=18, input_names=["input"])
    proto = program.model_proto
    if simplifier:
        proto = simplify_onnx(proto, simplifier)
    options = ort.SessionOptions()  # defaults: every graph optimisation on
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    want = same_maxpool(x).numpy()
    assert (want[..., -1, :] == 0).all() and (want[..., :, -1] == 0).all()
    np.testing.assert_array_equal(got, want)
    assert "Pad" not in {n.op_type for n in proto.graph.node}


def _checkpoint(name: str) -> Path:
    path = shared_dir() / "weights" / name
    if not path.is_file():
        pytest.skip(f"checkpoint {path} not available (set FEATHERFACE_SHARED)")
    return path


def _calibration_images(count: int = 3) -> list[Path]:
    images = sorted((shared_dir() / "data" / "calibration").glob("*.jpg"))[:count]
    if not images:
        pytest.skip("calibration images not available (set FEATHERFACE_SHARED)")
    return images


@pytest.mark.slow
@pytest.mark.parametrize("dcn", ["portable", "native"])
def test_v1_parity_on_real_images(tmp_path, dcn):
    checkpoint = _checkpoint("featherface-v1.pth")
    result = export_row(checkpoint, tmp_path / f"v1-{dcn}.onnx", "onnx", dcn=dcn, opset=19 if dcn == "native" else 18,
                         parity_images=_calibration_images())
    report = result.parity
    assert report.max_abs["conf"] <= 1e-4 and report.max_abs["loc"] <= 1e-3 and report.max_abs["landmarks"] <= 1e-3
    assert report.match_rate == 1.0 and report.reference_detections > 0
    # The default ORT session (all optimisations) on the golden astronaut stays on the reference.
    golden = np.load(shared_dir() / "docs" / "golden" / "featherface-v1.npz")
    x = golden["astronaut_512x512__input"]
    x = x[None] if x.ndim == 3 else x
    padded = np.zeros((1, 3, 640, 640), np.float32)
    padded[..., : x.shape[2], : x.shape[3]] = x
    model = load_model(checkpoint).model
    _assert_close(model, OrtRuntime(result.path), padded)


@pytest.mark.slow
def test_v2_dynamic_export_on_real_images(tmp_path):
    checkpoint = _checkpoint("featherface-v2-ca.pth")
    result = export_row(checkpoint, tmp_path / "v2.onnx", "onnx", imgsz=(480, 640), dynamic=True,
                         parity_images=_calibration_images(2))
    assert result.parity.passed and result.contract.model_name == "featherface-v2-ca"
    data = json.loads(sidecar_path(result.path).read_text())
    assert data["input_size"] is None and data["size_divisor"] == 32
