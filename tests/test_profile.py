"""``profile``: ONNX Runtime's per-node profile grouped by layer, the physical floor, LiteRT's delegation, the CLI."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from featherface_deploy.cli.main import cli
from featherface_deploy.harness.onnx_scopes import NAME_SCOPES_KEY, group_of, layer_of, node_scopes

onnx = pytest.importorskip("onnx")
helper = onnx.helper
TINY = (64, 64)


def test_module_paths_name_groups_and_layers():
    assert group_of(("body", "stage1", "0")) == "backbone" and group_of(("ClassHead", "0")) == "heads"
    assert group_of(("ssh2", "conv3X3", "0")) == "ssh2" and group_of(()) == "other"
    assert layer_of(("ssh2", "conv3X3", "0")) == "ssh2.conv3X3" and layer_of(()) == "other"


def test_simplified_graph_keeps_the_module_paths():
    from featherface_deploy.exporters.torch2onnx import keep_name_scopes

    def graph(with_scopes):
        node = helper.make_node("Relu", ["x"], ["y"], name="node_relu")
        if with_scopes:
            node.metadata_props.add(key=NAME_SCOPES_KEY, value="['', 'ssh1', 'ssh1.conv3X3', 'relu']")
        value = helper.make_tensor_value_info
        return helper.make_model(helper.make_graph([node], "g", [value("x", onnx.TensorProto.FLOAT, [1])],
                                                   [value("y", onnx.TensorProto.FLOAT, [1])]))

    simplified = graph(False)
    keep_name_scopes(graph(True), simplified)
    assert node_scopes(simplified) == {"node_relu": ("ssh1", "conv3X3")}


def _floor_graph():
    """One Conv (any-size input), one MatMul, one Gather with computed indices, one DeformConv."""
    value = helper.make_tensor_value_info
    floats = onnx.TensorProto.FLOAT
    rng = np.random.default_rng(0)

    def const(name, shape):
        return onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("MatMul", ["a", "b"], ["mm"], name="matmul"),
        helper.make_node("Cast", ["idx_in"], ["idx"], to=onnx.TensorProto.INT64, name="cast"),
        helper.make_node("Gather", ["table", "idx"], ["gathered"], name="gather", axis=0),
        helper.make_node("DeformConv", ["d", "dw", "offset", "", "mask"], ["deformed"], name="deform",
                         pads=[1, 1, 1, 1]),
    ]
    inputs = [value("x", floats, [1, 3, "h", "w"]), value("idx_in", onnx.TensorProto.FLOAT, [36]),
              value("d", floats, [1, 4, 8, 8]), value("offset", floats, [1, 18, 8, 8]),
              value("mask", floats, [1, 9, 8, 8])]
    outputs = [value(name, floats, None) for name in ("conv", "mm", "gathered", "deformed")]
    graph = helper.make_graph(nodes, "floor", inputs, outputs,
                              [const("w", (8, 3, 3, 3)), const("a", (5, 7)), const("b", (7, 2)),
                               const("table", (100, 8)), const("dw", (6, 4, 3, 3))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def test_floor_counts_macs_and_dcn_reads_by_hand():
    from featherface_deploy.harness.onnx_floor import node_floor

    floor = node_floor(_floor_graph(), (16, 16))
    assert floor["conv"] == {"op": "Conv", "macs": 8 * 16 * 16 * 3 * 9, "dcn_bytes": 0}
    assert floor["matmul"]["macs"] == 5 * 2 * 7
    assert floor["gather"] == {"op": "Gather", "macs": 0, "dcn_bytes": 36 * 8 * 4}
    # 64 output pixels × 9 taps × 4 input channels × 4 corners × 4 bytes; MACs 6 × 64 × 4 × 9.
    assert floor["deform"] == {"op": "DeformConv", "macs": 6 * 64 * 4 * 9, "dcn_bytes": 64 * 9 * 4 * 4 * 4}
    assert "cast" not in floor


@pytest.fixture(scope="module")
def onnx_report(tiny_onnx):
    pytest.importorskip("onnxruntime")
    from featherface_deploy.harness.profile import profile_model

    return profile_model(tiny_onnx, TINY, 1, 1, 3)


def test_ort_profile_splits_the_real_trace_into_groups_that_sum_to_the_total(onnx_report):
    summary = onnx_report["summary"]
    assert summary["runs"] == 3 and summary["input_shape"] == [1, 3, *TINY]
    groups = {row["group"]: row for row in onnx_report["groups"]}
    assert {"backbone", "bifpn", "ssh1", "ssh2", "ssh3", "heads"} <= set(groups)
    assert sum(row["ms"] for row in groups.values()) == pytest.approx(summary["kernels_ms"], abs=0.01)
    assert sum(row["share"] for row in groups.values()) == pytest.approx(100.0, abs=0.1)
    assert sum(row["ms"] for row in onnx_report["op_types"]) == pytest.approx(summary["kernels_ms"], abs=0.01)
    assert 0 < summary["kernels_ms"] and all(row["ms"] >= 0 for row in groups.values())


def test_ort_profile_puts_the_floor_beside_the_groups(onnx_report):
    groups = {row["group"]: row for row in onnx_report["groups"]}
    assert groups["backbone"]["macs"] > 0 and groups["backbone"]["dcn_bytes"] == 0
    assert all(groups[f"ssh{i}"]["dcn_bytes"] > 0 for i in (1, 2, 3))
    layers = onnx_report["dcn_layers"]
    assert len(layers) == 15 and all(row["layer"].startswith("ssh") for row in layers)
    total = sum(row["macs"] for row in onnx_report["groups"])
    assert onnx_report["summary"]["gmacs"] == pytest.approx(total / 1e9, abs=1e-4)


def test_litert_profile_reports_partitions_and_the_ops_outside(tmp_path):
    litert_torch = pytest.importorskip("litert_torch")
    pytest.importorskip("ai_edge_litert")
    import torch

    from featherface_deploy.harness.profile import profile_model
    from featherface_deploy.models.deform_conv import ModulatedDeformConv2d, set_dcn_lowering
    from support.seeding import seeded

    block = seeded(lambda: torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), ModulatedDeformConv2d(4, 4)), 0)
    block.eval()
    set_dcn_lowering(block, "gather")
    path = tmp_path / "dcn.tflite"
    path.write_bytes(bytes(litert_torch.convert(block, (torch.zeros(1, 3, 8, 8),)).model_content()))
    report = profile_model(path, (8, 8), 1, 1, 2)
    summary = report["summary"]
    assert summary["partitions"] >= 1 and summary["ops_in_xnnpack"] >= 1
    assert summary["ops_outside"] >= 1 and summary["ops_in_xnnpack"] + summary["ops_outside"] == summary["ops"]
    outside = {row["op"] for row in report["outside_op_types"]}
    assert "GATHER_ND" in outside or "GATHER" in outside
    assert summary["xnnpack_ms"] > 0 and summary["builtin_ms"] > 0 and summary["rest_ms"] > 0
    assert sum(row["ops"] for row in report["groups"]) == summary["ops"]


def test_cli_prints_the_tables_and_writes_the_json(tiny_onnx, tmp_path):
    out = tmp_path / "profile.json"
    result = CliRunner().invoke(cli, ["profile", str(tiny_onnx), "--imgsz", "64", "--runs", "2", "--warmup", "1",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "| Group | ms | share % | MMAC |" in result.output and "| DCN layer |" in result.output
    assert "| Op type | nodes |" in result.output
    written = json.loads(out.read_text())
    assert written["format"] == "onnx" and written["facts"]["runtime"] == "onnxruntime"
    assert {row["group"] for row in written["groups"]} >= {"backbone", "heads"}


@pytest.mark.parametrize("name, content, message", [
    ("notes.txt", b"hello", "unknown suffix '.txt'"),
    ("broken.onnx", b"not a model", "ONNX Runtime cannot profile"),
    ("weights.pth", b"x", "profile takes ONNX (.onnx) or TFLite (.tflite) files"),
])
def test_cli_refuses_what_it_cannot_profile(tmp_path, name, content, message):
    pytest.importorskip("onnxruntime")
    path = tmp_path / name
    path.write_bytes(content)
    result = CliRunner().invoke(cli, ["profile", str(path)])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_profilers_never_import_torch():
    import subprocess
    import sys

    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    code = ("import sys, featherface_deploy.harness.profile_ort, featherface_deploy.harness.profile_litert, "
            "featherface_deploy.harness.onnx_floor, featherface_deploy.harness.profile; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
