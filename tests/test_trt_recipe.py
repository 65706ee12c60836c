"""The TensorRT build recipe folder: graph per version, opset rewrite, calibration cache, build.sh, README."""

from __future__ import annotations

import re
import shlex
import subprocess

import numpy as np
import pytest

from conftest import requires_backend  # noqa: E402

requires_backend("trt-recipe", "export")
import onnx  # noqa: E402

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from featherface_deploy.contract import DecodeContract, read_sidecar  # noqa: E402
from featherface_deploy.errors import ExportError  # noqa: E402
from featherface_deploy.trt.calib_cache import read_cache  # noqa: E402
from featherface_deploy.trt.graph_check import check_onnx_file  # noqa: E402
from featherface_deploy.trt.opset import default_opset, downgrade_opset  # noqa: E402
from featherface_deploy.trt.versions import get_version  # noqa: E402

RNG = np.random.default_rng(1)
CONTRACT = DecodeContract(model_name="test", input_size=(8, 8))


def _model(deform: bool) -> "onnx.ModelProto":
    """input → Conv → (DeformConv | ReduceMean over H, W at opset 18 + Mul) → y."""
    inits = [numpy_helper.from_array(RNG.normal(size=(4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(RNG.normal(size=(4, 4, 3, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(RNG.normal(size=(18, 4, 3, 3)).astype(np.float32) * 0.1, "wo"),
             numpy_helper.from_array(np.array([2, 3], np.int64), "axes")]
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], name="conv", pads=[1, 1, 1, 1])]
    if deform:
        nodes += [helper.make_node("Conv", ["c", "wo"], ["offset"], name="offsets", pads=[1, 1, 1, 1]),
                  helper.make_node("DeformConv", ["c", "w2", "offset"], ["y"], name="dcn", kernel_shape=[3, 3],
                                   pads=[1, 1, 1, 1])]
    else:
        nodes += [helper.make_node("ReduceMean", ["c", "axes"], ["m"], name="mean", keepdims=1),
                  helper.make_node("Mul", ["c", "m"], ["y"], name="mul")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19 if deform else 18)])


def _files_referenced(script: str) -> set[str]:
    command = next(line for line in script.splitlines() if line.startswith('"$TRTEXEC"'))
    return {arg.split("=", 1)[1] for arg in shlex.split(command)[1:] if arg.split("=")[0] in
            ("--onnx", "--calib")} | set(re.findall(r"^cp (\S+) ", script, re.M))


def _write(tmp_path, model, version, precision, scales=None):
    from featherface_deploy.exporters.onnx2trt_recipe import RecipeOptions, write_recipe

    source = tmp_path / "source.onnx"
    onnx.save(model, str(source))
    return write_recipe(source, tmp_path / "recipe", RecipeOptions(get_version(version), precision),
                        CONTRACT, calibration_scales=scales)


def _check_folder(folder, version):
    script = (folder / "build.sh").read_text()
    subprocess.run(["bash", "-n", str(folder / "build.sh")], check=True)
    assert _files_referenced(script) <= {p.name for p in folder.iterdir()}
    assert check_onnx_file(folder / "model.onnx", get_version(version)) == []
    assert read_sidecar(folder / "model.onnx").extra["tensorrt"]["version"] == version
    return script


def test_fp16_recipe_native_dcn_on_10_3(tmp_path) -> None:
    folder = _write(tmp_path, _model(deform=True), "10.3", "fp16")
    script = _check_folder(folder, "10.3")
    assert "--fp16" in script and "--calib" not in script and "--stronglyTyped" not in script
    assert default_opset(onnx.load(str(folder / "model.onnx"))) == 19
    assert "JetPack 6.x" in (folder / "README.md").read_text()


def test_native_dcn_refused_before_10_1(tmp_path) -> None:
    with pytest.raises(ExportError, match=r"(?s)does not fit TensorRT 8\.6.*DeformConv parses only from"):
        _write(tmp_path, _model(deform=True), "8.6", "fp16")


def test_int8_recipe_8_6_has_cache_and_opset_17(tmp_path) -> None:
    folder = _write(tmp_path, _model(deform=False), "8.6", "int8", scales={"input": 0.5, "c": 0.25})
    script = _check_folder(folder, "8.6")
    assert "--int8" in script and "--calib=calib.cache" in script
    assert read_cache(folder / "calib.cache") == (8600, "EntropyCalibration2", {"input": 0.5, "c": 0.25})
    written = onnx.load(str(folder / "model.onnx"))
    assert default_opset(written) == 17
    mean = next(n for n in written.graph.node if n.op_type == "ReduceMean")
    assert len(mean.input) == 1 and [a.ints for a in mean.attribute if a.name == "axes"] == [[2, 3]]


def test_opset_rewrite_keeps_outputs() -> None:
    import onnxruntime

    model = _model(deform=False)
    sample = RNG.normal(size=(1, 3, 8, 8)).astype(np.float32)
    runs = [onnxruntime.InferenceSession(m.SerializeToString()).run(None, {"input": sample})[0]
            for m in (model, downgrade_opset(model, 17), downgrade_opset(model, 13))]
    assert np.array_equal(runs[0], runs[1]) and np.array_equal(runs[0], runs[2])
    model.graph.node[1].attribute.append(helper.make_attribute("noop_with_empty_axes", 1))
    with pytest.raises(ExportError, match="noop_with_empty_axes"):
        downgrade_opset(model, 17)


def test_recipe_options_refused() -> None:
    from featherface_deploy.exporters.onnx2trt_recipe import RecipeOptions, trtexec_args

    with pytest.raises(ExportError, match="TensorRT 11 removed BuilderFlag.FP16"):
        RecipeOptions(get_version("11.x"), "fp16").validate()
    assert "--stronglyTyped" in trtexec_args(RecipeOptions(get_version("11.x"), "int8"), False)
    assert trtexec_args(RecipeOptions(get_version("10.3"), "int8", dla_core=0), False)[-3:] == \
        ["--int8", "--useDLACore=0", "--allowGPUFallback"]
