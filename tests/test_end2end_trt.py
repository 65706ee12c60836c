"""TensorRT rules of end-to-end graphs (no TensorRT needed): NonMaxSuppression from 8.5, its box limit, TopK's K."""

from __future__ import annotations

import pytest

from conftest import export_row, requires_backend  # noqa: E402

requires_backend("onnx", "export")
import onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from featherface_deploy.errors import ExportError  # noqa: E402
from featherface_deploy.trt.graph_check import check_graph, check_onnx_file  # noqa: E402
from featherface_deploy.trt.versions import get_version  # noqa: E402


def _nms_graph(boxes: int, k: int) -> onnx.ModelProto:
    """scores (boxes,) → TopK(k) → NonMaxSuppression over the k best of ``boxes`` boxes."""
    nodes = [
        helper.make_node("TopK", ["scores", "k"], ["top", "index"], name="topk"),
        helper.make_node("Gather", ["boxes", "index"], ["chosen"], axis=0, name="gather"),
        helper.make_node("Unsqueeze", ["chosen", "axis0"], ["boxes3"], name="unsqueeze_boxes"),
        helper.make_node("Unsqueeze", ["top", "axes01"], ["scores3"], name="unsqueeze_scores"),
        helper.make_node("NonMaxSuppression", ["boxes3", "scores3", "max_out", "iou", "threshold"], ["selected"],
                         name="nms"),
    ]
    initializers = [
        helper.make_tensor("k", TensorProto.INT64, [1], [k]),
        helper.make_tensor("axis0", TensorProto.INT64, [1], [0]),
        helper.make_tensor("axes01", TensorProto.INT64, [2], [0, 1]),
        helper.make_tensor("max_out", TensorProto.INT64, [], [10]),
        helper.make_tensor("iou", TensorProto.FLOAT, [], [0.4]),
        helper.make_tensor("threshold", TensorProto.FLOAT, [], [0.0]),
    ]
    graph = helper.make_graph(nodes, "nms", [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [boxes, 4]),
                                             helper.make_tensor_value_info("scores", TensorProto.FLOAT, [boxes])],
                              [helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _rules(model, version, **kwargs):
    return [(p.rule, p.node) for p in check_graph(model, get_version(version), **kwargs)]


def test_nms_needs_tensorrt_8_5():
    model = _nms_graph(16800, 1000)
    assert ("nms", "nms") in _rules(model, "8.2")
    assert _rules(model, "8.5") == _rules(model, "10.3") == []


def test_nms_box_limit_5000_and_2000_on_small_jetsons():
    assert _rules(_nms_graph(16800, 3000), "10.3") == []
    assert _rules(_nms_graph(16800, 3000), "10.3", small_jetson=True) == [("nms", "nms")]
    problems = check_graph(_nms_graph(20000, 3840), get_version("8.6"), small_jetson=True)
    assert [p.rule for p in problems] == ["nms"] and "at most 2000" in problems[0].message


def test_topk_k_at_most_3840():
    assert _rules(_nms_graph(16800, 3840), "10.3") == []
    problems = check_graph(_nms_graph(16800, 3841), get_version("10.3"))
    assert [p.rule for p in problems] == ["topk"] and "K ≤ 3840" in problems[0].message


def test_end_to_end_export_fits_tensorrt_from_8_5(tiny_e2e_onnx):
    path, _ = tiny_e2e_onnx
    version = get_version("10.3")
    assert check_onnx_file(path, version) == []
    assert {p.rule for p in check_onnx_file(path, get_version("8.2"))} >= {"nms"}


def test_rows_without_end2end_refuse_it_naming_the_rows_that_take_it(tmp_path):
    from featherface_deploy.models import create_model

    for row, name in (("engine", "x.engine"), ("engine-int8", "y.engine")):
        with pytest.raises(ExportError, match="it applies to: onnx, onnx-int8, .*trt-recipe-fp16, trt-recipe-int8"):
            export_row(create_model("featherface-tiny"), tmp_path / name, row, end2end=True)


def test_int8_recipe_end2end_needs_qdq_tensorrt(tmp_path, calibration_dir):
    """8.x builds INT8 from a calibration cache (implicit INT8 would quantize the tail): refused with the fix."""
    from featherface_deploy.models import create_model

    with pytest.raises(ExportError, match="needs TensorRT 10.x or later .*use --trt-version 10.3"):
        export_row(create_model("featherface-tiny"), tmp_path / "r", "trt-recipe-int8", end2end=True,
                   trt_version="8.6", calib_dir=str(calibration_dir))


@pytest.mark.slow
def test_fp16_recipe_pins_exactly_the_tail_to_fp32(tmp_path):
    """trt-recipe-fp16 --end2end: build.sh obeys FP32 for the nodes downstream of loc/conf/landmarks, and only them."""
    import shlex

    import torch

    from conftest import TINY_E2E_SETTINGS
    from featherface_deploy.exporters.end2end_compose import tail_node_names
    from featherface_deploy.models import create_model

    torch.manual_seed(0)
    outcome = export_row(create_model("featherface-tiny"), tmp_path / "recipe", "trt-recipe-fp16", trt_version="10.3",
                         **TINY_E2E_SETTINGS)
    assert outcome.contract.postprocess == "in-graph" and outcome.in_graph.passed
    model = onnx.load(str(tmp_path / "recipe" / "model.onnx"))
    tail = tail_node_names(model)
    by_name = {node.name: node for node in model.graph.node}
    assert {"NonMaxSuppression", "TopK", "Exp"} <= {by_name[name].op_type for name in tail}
    assert not {"Conv", "Softmax"} & {by_name[name].op_type for name in tail}  # the network stays FP16
    args = shlex.split((tmp_path / "recipe" / "build.sh").read_text().splitlines()[-3])[1:]
    assert "--fp16" in args and "--precisionConstraints=obey" in args
    for flag in ("--layerPrecisions=", "--layerOutputTypes="):
        pinned = next(a for a in args if a.startswith(flag))[len(flag):].split(",")
        assert pinned == [f"{name}:fp32" for name in tail]
    assert outcome.contract.extra["tensorrt"]["trtexec"] == args


def test_recipe_carries_the_end_to_end_graph(tmp_path):
    """trt-recipe --end2end: the folder's model.onnx is the verified end-to-end graph, fitting 10.3's parser."""
    from conftest import TINY_E2E_SETTINGS
    from featherface_deploy.models.registry import create_untrained_model

    outcome = export_row(create_untrained_model("featherface-tiny", 0), tmp_path / "recipe", "trt-recipe", trt_version="10.3",
                         **TINY_E2E_SETTINGS)
    assert outcome.contract.postprocess == "in-graph" and outcome.in_graph.passed
    model = onnx.load(str(tmp_path / "recipe" / "model.onnx"))
    assert [o.name for o in model.graph.output] == ["detections", "num_detections"]
    assert "NonMaxSuppression" in {node.op_type for node in model.graph.node}
    assert check_graph(model, get_version("10.3")) == []
