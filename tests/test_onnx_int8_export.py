"""One-step INT8 ONNX export from a checkpoint (FP32 export → calibration → QDQ → parity) and its CLI."""

import json

import onnx
import pytest
from click.testing import CliRunner

from featherface_deploy.cli.main import cli
from featherface_deploy.contract import METADATA_KEY

pytestmark = pytest.mark.slow


def test_cli_int8_export_writes_qdq_model_with_contract(tiny_checkpoint, calibration_dir, tmp_path):
    out = tmp_path / "tiny-int8.onnx"
    result = CliRunner().invoke(cli, ["export", str(tiny_checkpoint), "--int8", "--calib-dir", str(calibration_dir),
                                      "--calib-images", "4", "--imgsz", "128", "--search-budget", "0.5",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "parity" in result.output and "layers kept float" in result.output
    assert "keep-float search not run (auto)" in result.output
    model = onnx.load(str(out))
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node)
    contract = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    facts = contract["extra"]["int8"]
    assert contract["precision"] == "int8" and facts["calibration"]["images"] == 4
    depthwise = {n.name for n in model.graph.node if n.op_type == "Conv"
                 and any(a.name == "group" and a.i > 1 for a in n.attribute)}
    assert depthwise and depthwise <= set(facts["keep_float_nodes"])  # the accurate default
    assert facts["search"] == {**facts["search"], "mode": "auto", "ran": False}
    assert facts["agreement"]["budget"] == 0.5 and facts["agreement"]["final"] >= 0.5
    assert json.loads(out.with_name(out.name + ".json").read_text())["precision"] == "int8"


@pytest.mark.parametrize("flags, message", [
    (["--search", "--no-search"], "drop one"),
    (["--no-search", "--search-budget", "0.9"], "--no-search never searches"),
])
def test_conflicting_search_flags_are_refused(tiny_checkpoint, calibration_dir, tmp_path, flags, message):
    out = tmp_path / "x.onnx"
    result = CliRunner().invoke(cli, ["export", str(tiny_checkpoint), "--int8", "--calib-dir", str(calibration_dir),
                                      *flags, "-o", str(out)])
    assert result.exit_code == 1 and message in result.output
    assert not out.exists()


def test_int8_without_calibration_folder_is_refused(tiny_checkpoint, tmp_path):
    result = CliRunner().invoke(cli, ["export", str(tiny_checkpoint), "--int8", "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code == 1 and "--calib-dir" in result.output
    assert not (tmp_path / "x.onnx").exists()


def test_native_dcn_int8_is_refused(tiny_checkpoint, calibration_dir, tmp_path):
    result = CliRunner().invoke(cli, ["export", str(tiny_checkpoint), "--int8", "--calib-dir", str(calibration_dir),
                                      "--dcn", "native", "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code == 1 and "portable" in result.output


def test_fused_placement_quantizes_the_native_graph_and_info_prints_its_integer_share(tiny_checkpoint,
                                                                                      calibration_dir, tmp_path):
    out = tmp_path / "tiny-fused.onnx"
    result = CliRunner().invoke(cli, ["export", str(tiny_checkpoint), "--int8", "--calib-dir", str(calibration_dir),
                                      "--calib-images", "4", "--imgsz", "128", "--no-search", "--placement", "fused",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    model = onnx.load(str(out))
    assert any(node.op_type == "DeformConv" for node in model.graph.node)  # auto DCN → native for fused
    facts = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])["extra"]["int8"]
    assert facts["placement"] == "fused" and facts["integer_kernels"].get("QLinearConv", 0) > 0
    assert 0.0 < facts["integer_mac_fraction"] < 1.0  # the depthwise convolutions and DeformConv stay float
    assert facts["integer_kernels_on"].startswith("ONNX Runtime CPU provider on")
    info = CliRunner().invoke(cli, ["info", str(out)])
    assert info.exit_code == 0, info.output
    assert f"int8: {100 * facts['integer_mac_fraction']:.1f}% of MACs in integer kernels" in info.output
