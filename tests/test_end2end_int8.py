"""End-to-end ``onnx-int8``: the quantized network wrapped in the float adapter and tail."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from conftest import TINY_E2E_SETTINGS, export_row, requires_backend  # noqa: E402

requires_backend("onnx-int8", "export")
pytestmark = pytest.mark.slow  # two INT8 exports (calibration, parity, in-graph check): minutes

from featherface_deploy.detector import FaceDetector  # noqa: E402
from featherface_deploy.exporters.end2end_compose import TAIL_PREFIX, tail_node_names  # noqa: E402
from featherface_deploy.pipeline.raw_views import raw_view  # noqa: E402
from featherface_deploy.runtimes.in_graph import letterbox  # noqa: E402
from featherface_deploy.runtimes.ort_runtime import OrtEnd2EndRuntime  # noqa: E402
from featherface_deploy.verify.in_graph import (InGraphTolerances, check_in_graph_parity,  # noqa: E402
                                                default_in_graph_images)

QDQ = {"QuantizeLinear", "DequantizeLinear"}


def _export(tmp_path_factory, calibration_dir, **changes):
    """A seeded ``featherface-tiny`` exported ``onnx-int8 --end2end`` through the pipeline (no search)."""
    import torch

    from featherface_deploy.models import create_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-e2e-int8") / "tiny-e2e-int8.onnx"
    outcome = export_row(create_model("featherface-tiny"), path, "onnx-int8", calib_dir=str(calibration_dir),
                         calib_images=4, search=False, **{**TINY_E2E_SETTINGS, **changes})
    return path, outcome


@pytest.fixture(scope="module")
def tiny_e2e_int8(tmp_path_factory, calibration_dir):
    """The tiny model end to end at INT8, conf 0.3 (its random weights score every prior about 0.5)."""
    return _export(tmp_path_factory, calibration_dir)


def test_quantized_file_is_end_to_end_with_a_float_tail(tiny_e2e_int8):
    path, outcome = tiny_e2e_int8
    contract = outcome.contract
    assert contract.precision == "int8" and contract.postprocess == "in-graph"
    assert contract.end2end.max_det == TINY_E2E_SETTINGS["max_det"]
    proto = onnx.load(str(path))
    assert [o.name for o in proto.graph.output] == ["detections", "num_detections"]
    assert [i.name for i in proto.graph.input] == [contract.input_name]
    ops = [node.op_type for node in proto.graph.node]
    assert QDQ <= set(ops) and "NonMaxSuppression" in ops  # the network is INT8, the NMS is in the file
    tail = [node for node in proto.graph.node if node.name.startswith(TAIL_PREFIX)]
    assert tail and tail_node_names(proto) == [node.name for node in tail]
    assert not [node.name for node in tail if node.op_type in QDQ]
    assert "NonMaxSuppression" in {node.op_type for node in tail}


def test_pipeline_ran_both_gates(tiny_e2e_int8):
    _, outcome = tiny_e2e_int8
    assert outcome.parity.passed
    assert outcome.in_graph is not None and outcome.in_graph.passed and outcome.in_graph.matched > 0


def test_in_graph_equals_numpy_of_its_own_raw_outputs(tiny_e2e_int8):
    """The tail is float: on the same INT8 raw outputs, the FP32 limits hold (match rate 1, IoU ≥ 0.999)."""
    path, outcome = tiny_e2e_int8
    runtime = OrtEnd2EndRuntime.open(path)
    report = check_in_graph_parity(runtime, raw_view("onnx", path, outcome.contract), default_in_graph_images(),
                                   InGraphTolerances.for_precision("fp32"))
    assert report.passed and report.numpy > 0, report.format()


def test_photo_without_a_face_gives_no_detection(tmp_path_factory, calibration_dir):
    """conf 0.6: above every score the random tiny model gives (about 0.5), so no photo has a face for it."""
    path, outcome = _export(tmp_path_factory, calibration_dir, conf=0.6)
    assert outcome.in_graph.passed and outcome.in_graph.in_graph == 0
    detector = FaceDetector.load(path)
    assert isinstance(detector.runtime, OrtEnd2EndRuntime)
    photo = np.full((64, 64, 3), 128, np.uint8)
    rows, count = detector.runtime._run(letterbox(photo, outcome.contract)[0])
    assert count.tolist() == [0] and not rows.any()
    assert len(detector(photo)) == 0
