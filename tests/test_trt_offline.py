"""TensorRT without TensorRT: version rules, the parser check, the INT8 flavour and the calibration cache.

Graphs are built with ``onnx.helper`` (milliseconds); the INT8 flavour is run
for real through ONNX Runtime's quantizer on a small two-convolution model.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import requires_backend  # noqa: E402

requires_backend("trt-recipe", "export")
import onnx  # noqa: E402

from click.testing import CliRunner  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from featherface_deploy.calibration import CalibrationSet  # noqa: E402
from featherface_deploy.contract import DecodeContract  # noqa: E402
from featherface_deploy.errors import FeatherFaceError  # noqa: E402
from featherface_deploy.trt import calib_cache  # noqa: E402
from featherface_deploy.trt.graph_check import check_graph  # noqa: E402
from featherface_deploy.trt.versions import get_version, version_for_installed  # noqa: E402

RNG = np.random.default_rng(0)


def _model(nodes, initializers, opset, inputs=("x",), output="y"):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in inputs],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _deform_conv(pads=(1, 1, 1, 1)):
    weights = {"w": RNG.normal(size=(4, 4, 3, 3)).astype(np.float32)}
    node = helper.make_node("DeformConv", ["x", "w", "offset", "mask"], ["y"], name="dcn", kernel_shape=[3, 3],
                            pads=list(pads))
    return _model([node], weights, 19, inputs=("x", "offset", "mask"))


def _rules(model, version):
    return [p.rule for p in check_graph(model, get_version(version))]


def test_version_rules() -> None:
    assert [get_version(v).native_deform_conv for v in ("8.2", "8.6", "10.0", "10.3", "10.x", "11.x")] == \
        [False, False, False, True, True, True]
    assert get_version("8.6").int8 == "calibration-cache" and get_version("10.3").int8 == "qdq"
    assert get_version("11.x").strongly_typed and not get_version("11.x").precision_flags
    assert get_version("10.3").jetpack == "JetPack 6.x" and "Nano" in get_version("8.2").jetpack
    assert get_version("8.6").dcn == "portable" and get_version("10.3").dcn == "native"
    assert version_for_installed("10.3.0.30").name == "10.3"
    assert version_for_installed("8.6.1").name == "8.6" and version_for_installed("11.1.0").name == "11.x"
    with pytest.raises(FeatherFaceError, match="unknown TensorRT version"):
        get_version("9.9")


def test_deform_conv_rule() -> None:
    assert _rules(_deform_conv(), "10.3") == []
    assert _rules(_deform_conv(), "10.0") == ["op"]
    assert sorted(_rules(_deform_conv(), "8.6")) == ["op", "opset"]
    assert _rules(_deform_conv((1, 1, 0, 0)), "10.3") == ["deformconv"]
    quantized = _deform_conv()
    quantized.graph.node.insert(0, helper.make_node("DequantizeLinear", ["xq", "s"], ["x_dq"], name="dq"))
    quantized.graph.node[1].input[0] = "x_dq"
    quantized.graph.initializer.extend([numpy_helper.from_array(np.float32(0.1), "s"),
                                        numpy_helper.from_array(np.zeros((1, 4, 5, 5), np.int8), "xq")])
    assert _rules(quantized, "10.3") == ["deformconv"]


def test_qdq_rules() -> None:
    weight = RNG.normal(size=(4, 3, 3, 3)).astype(np.float32)
    inits = {"wq": (weight * 20).astype(np.int8), "ws": np.full(4, 0.05, np.float32), "wz": np.zeros(4, np.int8),
             "bq": np.arange(4, dtype=np.int32), "bs": np.full(4, 0.01, np.float32), "xs": np.float32(0.1),
             "xz": np.int8(3)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="q_x"),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq_x"),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="dq_w", axis=1),
             helper.make_node("DequantizeLinear", ["bq", "bs"], ["bd"], name="dq_b", axis=0),
             helper.make_node("Conv", ["xd", "wd", "bd"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    problems = check_graph(_model(nodes, inits, 17), get_version("10.3"))
    found = {(p.node, p.rule) for p in problems}
    assert found == {("q_x", "qdq-zero-point"), ("dq_x", "qdq-zero-point"), ("dq_w", "qdq-axis"),
                     ("dq_b", "qdq-bias")}
    assert all(re.fullmatch(r"\S+: .+ \[[a-z-]+\]", p.format()) for p in problems)


@pytest.fixture(scope="module")
def conv_model(tmp_path_factory):
    """A float model of two biased convolutions with its decode contract, and a calibration set for it."""
    root = tmp_path_factory.mktemp("trt-int8")
    inits = {"w1": RNG.normal(size=(8, 3, 3, 3)).astype(np.float32), "b1": RNG.normal(size=8).astype(np.float32),
             "w2": RNG.normal(size=(4, 8, 1, 1)).astype(np.float32), "b2": RNG.normal(size=4).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["y"], name="conv2")]
    path = root / "float.onnx"
    onnx.save(_model(nodes, inits, 17, inputs=("input",)), str(path))
    inputs = RNG.normal(scale=40, size=(4, 3, 16, 16)).astype(np.float32)
    calib = CalibrationSet(inputs, tuple(f"{i}.png" for i in range(4)), "test", {})
    return root, path, calib


def _quantize(conv_model, options, name):
    from featherface_deploy.exporters.onnx_quantize import quantize_onnx

    root, path, calib = conv_model
    return quantize_onnx(path, root / name, calib, contract=DecodeContract(model_name="test"), options=options)


def test_tensorrt_int8_flavour(conv_model) -> None:
    from featherface_deploy.exporters.onnx_quantize import Int8Options
    from featherface_deploy.exporters.onnx2trt_int8 import tensorrt_int8_options

    default = onnx.load(str(_quantize(conv_model, Int8Options(), "ort.onnx").path))
    assert "qdq-bias" in _rules(default, "10.3")  # ONNX Runtime's default: int32 bias DQ, rejected by TensorRT
    model = onnx.load(str(_quantize(conv_model, tensorrt_int8_options(), "trt.onnx").path))
    assert _rules(model, "10.3") == [] and _rules(model, "8.6") == []
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    dequantize = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert dequantize and all(inits[n.input[0]].dtype == np.int8 for n in dequantize if n.input[0] in inits)
    assert all(not inits[n.input[2]].any() for n in dequantize if len(n.input) > 2)
    weight_dq = [n for n in dequantize if n.input[0] in inits and inits[n.input[1]].size > 1]
    assert len(weight_dq) == 2
    assert all(helper.get_attribute_value(a) == 0 for n in weight_dq for a in n.attribute if a.name == "axis")


def test_calibration_cache_from_qdq_scales(conv_model, tmp_path) -> None:
    from featherface_deploy.exporters.onnx2trt_int8 import tensorrt_int8_options, write_calibration_cache

    int8 = _quantize(conv_model, tensorrt_int8_options(), "trt-cache.onnx")
    version = get_version("8.6")
    scales = write_calibration_cache(int8.path, tmp_path / "calib.cache", version)
    text = (tmp_path / "calib.cache").read_text()
    lines = text.splitlines()
    assert lines[0] == "TRT-8600-EntropyCalibration2"
    assert all(re.fullmatch(r"[^:]+: [0-9a-f]{8}", line) for line in lines[1:]) and len(lines) == 3
    code, calibrator, read = calib_cache.read_cache(tmp_path / "calib.cache")
    assert (code, calibrator) == (8600, "EntropyCalibration2")
    assert read == {k: float(np.float32(v)) for k, v in scales.items()}
    # The graph input's scale is its calibration statistic: max |x| over the set / 127 (MinMax, symmetric).
    _, _, calib = conv_model
    assert read["input"] == pytest.approx(float(np.abs(calib.inputs).max()) / 127, rel=1e-6)


def test_calibration_cache_format() -> None:
    assert calib_cache.scale_to_hex(1.0) == "3f800000" and calib_cache.hex_to_scale("3f800000") == 1.0
    assert calib_cache.version_code(get_version("10.3")) == 100300
    scales = calib_cache.scales_from_ranges({"a": (-2.54, 1.0), "b": (0.0, 0.0), "c:0": (0.0, 12.7)})
    text = calib_cache.format_cache(scales, 8502)
    assert text.splitlines()[0] == "TRT-8502-EntropyCalibration2" and "b:" not in text
    _, _, read = calib_cache.parse_cache(text)
    assert read == pytest.approx({"a": 0.02, "c:0": 0.1}, rel=1e-6)
    with pytest.raises(FeatherFaceError, match="first line"):
        calib_cache.parse_cache("a: 3f800000\n")
    with pytest.raises(FeatherFaceError, match="line 2"):
        calib_cache.parse_cache("TRT-8502-EntropyCalibration2\na: 3f80\n")
    with pytest.raises(FeatherFaceError, match="scales must be > 0"):
        calib_cache.format_cache({"a": 0.0}, 8502)


def test_check_trt_command(tmp_path) -> None:
    from featherface_deploy.cli.main import cli

    onnx.save(_deform_conv(), str(tmp_path / "dcn.onnx"))
    fits = CliRunner().invoke(cli, ["check-trt", str(tmp_path / "dcn.onnx"), "--trt-version", "10.3"])
    assert fits.exit_code == 0 and "fits TensorRT 10.3" in fits.output
    fails = CliRunner().invoke(cli, ["check-trt", str(tmp_path / "dcn.onnx"), "--trt-version", "8.6"])
    assert fails.exit_code == 1
    assert fails.output.splitlines() == [p.format() for p in check_graph(_deform_conv(), get_version("8.6"))]
