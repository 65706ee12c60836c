"""End-to-end ONNX: the NMS lowering, the head, the exported file, its runtime and its contract."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import TINY_E2E_SETTINGS, export_row, requires_backend  # noqa: E402

requires_backend("onnx", "export")
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from featherface_deploy.contract import DecodeContract, End2EndSpec, sidecar_path, signed  # noqa: E402
from featherface_deploy.detector import FaceDetector  # noqa: E402
from featherface_deploy.errors import ContractError, ExportError, InputError  # noqa: E402
from featherface_deploy.exporters.end2end_head import End2EndTail  # noqa: E402
from featherface_deploy.exporters.nms_onnx import nms_translation  # noqa: E402
from featherface_deploy.export_options import OnnxOptions  # noqa: E402
from featherface_deploy.formats import get_format  # noqa: E402
from featherface_deploy.models.registry import base_contract  # noqa: E402
from featherface_deploy.postprocess import PostprocessConfig, Transform, decode_image, load_image  # noqa: E402
from featherface_deploy.runtimes.ort_runtime import OrtEnd2EndRuntime, OrtRuntime  # noqa: E402
from featherface_deploy.verify.in_graph import crowd_photo  # noqa: E402
from featherface_deploy.verify.photos import default_parity_images  # noqa: E402

MAX_OUTPUT = 8


class _Nms(torch.nn.Module):
    def forward(self, boxes, scores):
        return torch.ops.featherface.nms(boxes, scores, 0.4, MAX_OUTPUT)


@pytest.fixture(scope="module")
def nms_session():
    """The ONNX lowering of featherface::nms alone (IoU 0.4, max_output 8), in ONNX Runtime."""
    boxes, scores = torch.zeros(6, 4), torch.zeros(6)
    program = torch.onnx.export(_Nms().eval(), (boxes, scores), dynamo=True, opset_version=18,
                                custom_translation_table=nms_translation(), input_names=["boxes", "scores"],
                                output_names=["indices", "count"],
                                dynamic_shapes=({0: torch.export.Dim("k", min=2, max=512)},
                                                {0: torch.export.Dim("k", min=2, max=512)}))
    return ort.InferenceSession(program.model_proto.SerializeToString())


def _both(session, boxes, scores):
    want = torch.ops.featherface.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.4, MAX_OUTPUT)
    got = session.run(None, {"boxes": boxes, "scores": scores})
    return [w.numpy() for w in want], got


def test_nms_lowering_edges(nms_session):
    """IoU exactly at the threshold is kept (strict >), score 0 is never selected, zero-area boxes are kept."""
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 0.4], [0, 0, 1, 0.41], [5, 5, 6, 6], [5, 5, 5, 6], [9, 9, 8, 8]],
                     np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.0, 0.6, 0.5], np.float32)
    (want_idx, want_n), (got_idx, got_n) = _both(nms_session, boxes, scores)
    assert want_n.tolist() == got_n.tolist() == [4]
    assert want_idx.tolist() == got_idx.tolist() == [0, 1, 4, 5, 0, 0, 0, 0]


@pytest.mark.parametrize("seed", range(20))
def test_nms_lowering_matches_op_on_random_boxes(nms_session, seed):
    """Random crowded boxes with rank scores (and a few zeros): ONNX Runtime selects what the torch op does."""
    rng = np.random.default_rng(seed)
    count = int(rng.integers(2, 200))
    corner = rng.uniform(0, 50, (count, 2)).astype(np.float32)
    size = rng.uniform(0, 20, (count, 2)).astype(np.float32)
    boxes = np.concatenate([corner, corner + size], axis=1)
    scores = rng.permutation(count).astype(np.float32) / count  # distinct, one is 0
    (want_idx, want_n), (got_idx, got_n) = _both(nms_session, boxes, scores)
    assert want_n.tolist() == got_n.tolist()
    assert want_idx.tolist() == got_idx.tolist()


def _tail(conf=0.3, max_det=5, top_k=50, size=(64, 64)):
    return End2EndTail(base_contract("featherface-tiny").priors, size,
                       End2EndSpec(max_det=max_det, conf=conf, pre_nms_top_k=top_k))


def _raw(count, rng):
    loc = rng.normal(0, 0.5, (1, count, 4)).astype(np.float32)
    probability = rng.uniform(0, 1, count).astype(np.float32)
    conf = np.stack([1 - probability, probability], axis=-1)[None]
    landmarks = rng.normal(0, 0.5, (1, count, 10)).astype(np.float32)
    return loc, conf, landmarks


def test_tail_matches_numpy_postprocessing_with_ties_and_non_finite_candidates():
    """Eager head vs decode_image: tied scores, a NaN score, an infinite box and landmark are handled alike."""
    tail = _tail()
    rng = np.random.default_rng(0)
    loc, conf, landmarks = _raw(168, rng)
    conf[0, 10:20, 1] = conf[0, 10, 1] = 0.9  # ties
    conf[0, 30, 1] = np.nan
    loc[0, 40, 2], landmarks[0, 50, 3] = np.inf, -np.inf
    conf[0, 40:51:10, 1] = 0.95
    with torch.no_grad():
        rows, count = tail(*(torch.from_numpy(a) for a in (loc, conf, landmarks)))
    contract = base_contract("featherface-tiny", input_size=(64, 64))
    want = decode_image(loc[0], conf[0], landmarks[0], (64, 64), contract, Transform(1.0, 1.0, (64, 64)),
                        PostprocessConfig(conf_threshold=0.3, nms_iou=0.4, top_k=50, keep_top_k=5))
    n = int(count[0])
    assert count.dtype == torch.int32 and n == len(want) == 5
    rows = rows[0].numpy()
    np.testing.assert_allclose(rows[:n, :4], want.boxes, atol=1e-4)
    np.testing.assert_array_equal(rows[:n, 4], want.scores)
    np.testing.assert_allclose(rows[:n, 5:], want.landmarks.reshape(-1, 10), atol=1e-4)
    assert np.isfinite(rows).all()


def test_tail_with_no_candidate_returns_zero_rows():
    tail = _tail(conf=0.5)
    loc, conf, landmarks = _raw(168, np.random.default_rng(1))
    conf[0, :, 1], conf[0, :, 0] = 0.1, 0.9
    with torch.no_grad():
        rows, count = tail(*(torch.from_numpy(a) for a in (loc, conf, landmarks)))
    assert count.tolist() == [0] and rows.shape == (1, 5, 15) and not rows.any()


@pytest.mark.parametrize("changes, message", [
    ({"max_det": 0}, "--max-det must be a positive integer"),
    ({"pre_nms_top_k": -1}, "--pre-nms-top-k must be a positive integer"),
    ({"conf": 1.0}, "--conf must be strictly between 0 and 1"),
    ({"nms_iou": math.nan}, "--nms-iou must be strictly between 0 and 1"),
    ({"conf": 0.0}, "--conf must be strictly between 0 and 1"),
    ({"dynamic": True}, "drop --dynamic"),
])
def test_end2end_options_refuse_bad_settings(changes, message):
    with pytest.raises(ExportError, match=message):
        OnnxOptions(end2end=True, **changes).validate(get_format("onnx"))


def test_export_verifies_in_graph_detections(tiny_e2e_onnx):
    path, outcome = tiny_e2e_onnx
    assert outcome.contract.postprocess == "in-graph" and outcome.contract.end2end.max_det == 20
    assert outcome.in_graph is not None and outcome.in_graph.passed and outcome.in_graph.matched > 0
    assert outcome.in_graph.max_landmark_px <= 0.01 and outcome.in_graph.min_iou >= 0.999
    contract = DecodeContract.from_json(sidecar_path(path).read_text())
    assert contract == outcome.contract
    outputs = [o.name for o in ort.InferenceSession(str(path)).get_outputs()]
    assert outputs == ["detections", "num_detections"]


def test_face_detector_runs_the_end_to_end_file(tiny_e2e_onnx):
    path, _ = tiny_e2e_onnx
    detector = FaceDetector.load(path)
    assert isinstance(detector.runtime, OrtEnd2EndRuntime) and detector.runtime.postprocess == "in-graph"
    assert detector.config.conf_threshold == TINY_E2E_SETTINGS["conf"]
    photo = load_image(default_parity_images()[0])
    faces = detector(photo)
    assert 0 < len(faces) <= TINY_E2E_SETTINGS["max_det"]
    assert (np.diff(faces.scores) <= 0).all() and (faces.scores >= 0.3).all()
    crowd = detector(crowd_photo(photo))
    assert len(crowd) == TINY_E2E_SETTINGS["max_det"]  # random weights: far more candidates than rows


def test_thresholds_may_only_tighten(tiny_e2e_onnx):
    path, _ = tiny_e2e_onnx
    runtime = OrtRuntime.open(path)
    photo = load_image(default_parity_images()[0])
    everything = runtime.detect(photo)
    tighter = runtime.default_config()
    tighter = PostprocessConfig(conf_threshold=float(np.median(everything.scores)), nms_iou=tighter.nms_iou,
                                top_k=tighter.top_k, keep_top_k=3)
    subset = runtime.detect(photo, tighter)
    assert 0 < len(subset) <= 3 and (subset.scores >= tighter.conf_threshold).all()
    np.testing.assert_array_equal(subset.boxes, everything.boxes[:len(subset)])
    with pytest.raises(InputError, match="conf_threshold 0.1 is below the 0.3"):
        runtime.detect(photo, PostprocessConfig(conf_threshold=0.1, top_k=100, keep_top_k=20))
    with pytest.raises(InputError, match="nms_iou 0.5 differs"):
        runtime.detect(photo, PostprocessConfig(conf_threshold=0.5, nms_iou=0.5, top_k=100, keep_top_k=20))


def test_raw_runtime_refuses_an_end_to_end_file(tiny_e2e_onnx):
    with pytest.raises(ContractError, match="is an end-to-end model"):
        OrtRuntime(tiny_e2e_onnx[0])


def test_contract_that_does_not_match_the_outputs_is_refused(tiny_e2e_onnx):
    path, outcome = tiny_e2e_onnx
    wrong = outcome.contract.replace(end2end=End2EndSpec(max_det=30, conf=0.3, pre_nms_top_k=100))
    with pytest.raises(ContractError, match="do not match its end-to-end contract"):
        OrtEnd2EndRuntime(ort.InferenceSession(str(path)), contract=wrong)
    edited = json.loads(outcome.contract.to_json())
    edited["postprocess"] = "numpy"
    with pytest.raises(ContractError, match="in-graph contract needs its end2end settings"):
        DecodeContract.from_json(json.dumps(signed(edited)))  # re-signed: the structural check is what is tested


def test_cli_end2end_flags(tmp_path):
    """The export command's --end2end flags: bad values and rows that cannot take it are one-line errors."""
    from click.testing import CliRunner

    from featherface_deploy.cli.main import cli

    base = ["export", "--architecture", "featherface-tiny", "--random-init", "--imgsz", "64"]
    cases = [(["--format", "onnx", "--end2end", "--max-det", "0"], "--max-det must be a positive integer"),
             (["--format", "onnx", "--end2end", "--conf", "nan"], "--conf must be strictly between 0 and 1"),
             (["--format", "tflite-int8", "--end2end", "-o", str(tmp_path / "x.tflite")],
              "it applies to: onnx, onnx-int8, tflite"),
             (["--format", "onnx", "--int8", "--end2end"], "INT8 needs --calib-dir"),
             (["--format", "onnx", "--end2end", "--dynamic"], "drop --dynamic")]
    for extra, message in cases:
        out = [] if "-o" in extra else ["-o", str(tmp_path / "x.onnx")]
        result = CliRunner().invoke(cli, [*base, *extra, *out])
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output
        assert not list(tmp_path.glob("x.*"))


def test_info_describes_the_end_to_end_file(tiny_e2e_onnx):
    from click.testing import CliRunner

    from featherface_deploy.cli.main import cli

    result = CliRunner().invoke(cli, ["info", str(tiny_e2e_onnx[0])])
    assert result.exit_code == 0, result.output
    assert "input:  input (1, 3, 64, 64) float32, RGB 0-255" in result.output
    assert "output: detections (1, 20, 15)" in result.output and "num_detections (1,) int32" in result.output
    assert "post-processing: in-graph (conf ≥ 0.3" in result.output


def test_device_main_keeps_the_baked_thresholds_unless_given(tiny_e2e_onnx, tmp_path, capsys):
    """The remote device side passes thresholds only when the user gave them (an end-to-end file refuses lower ones)."""
    import json

    from featherface_deploy.remote import device_main

    path, _ = tiny_e2e_onnx
    photo = tmp_path / "photo.npy"
    np.save(photo, load_image(default_parity_images()[0]))
    assert device_main.main(["detect", "--model", str(path), str(photo)]) == 0
    found = json.loads(capsys.readouterr().out)["detections"][0]["faces"]
    assert 0 < len(found) <= TINY_E2E_SETTINGS["max_det"]
    assert device_main.main(["detect", "--model", str(path), "--conf-threshold", "0.1", str(photo)]) != 0
    assert "0.1" in capsys.readouterr().err
