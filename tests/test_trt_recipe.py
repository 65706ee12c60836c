"""The TensorRT build recipe folder: graph per version, opset rewrite, calibration cache, build.sh, README."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

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


def _recording_runner(opened: list, shift: float = 0.0):
    """The pipeline's ``run_onnx``, recording the files it runs and adding ``shift`` to the outputs of later ones."""
    from featherface_deploy.pipeline.builder import run_onnx

    def run(path, feed):
        opened.append(Path(path))
        offset = shift if len(opened) > 1 else 0.0
        return {name: value + offset for name, value in run_onnx(path, feed).items()}

    return run


@pytest.mark.parametrize("shift, refused", [(0.0, False), (1e-3, True)])
def test_an_opset_rewrite_is_run_through_the_given_runner(tmp_path, shift, refused) -> None:
    """8.6 rewrites opset 18 to 17: both files run through ``run_onnx``, and a difference is refused."""
    from featherface_deploy.exporters.onnx2trt_recipe import RecipeOptions, write_recipe

    source = tmp_path / "source.onnx"
    onnx.save(_model(deform=False), str(source))
    opened: list = []

    def write():
        return write_recipe(source, tmp_path / "recipe", RecipeOptions(get_version("8.6"), "fp32"), CONTRACT,
                            run_onnx=_recording_runner(opened, shift))

    if refused:
        with pytest.raises(ExportError, match=r"rewriting the ONNX to opset 17 changed its outputs"):
            write()
    else:
        assert write().is_dir()
    assert opened[0] == source and len(opened) == 2


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


# ``export --format trt-recipe`` through the CLI and the pipeline, on the tiny model: one ONNX export per
# precision (tens of seconds each, hence ``slow``); everything else reuses those two folders.

RECIPE_FILES = {"model.onnx", "model.onnx.json", "build.sh", "README.md"}


def _export_recipe(checkpoint, out, *flags):
    from click.testing import CliRunner

    from featherface_deploy.cli.main import cli

    return CliRunner().invoke(cli, ["export", str(checkpoint), "--format", "trt-recipe", "--imgsz", "64",
                                    "-o", str(out), *flags])


def _check_trt(path, version):
    from click.testing import CliRunner

    from featherface_deploy.cli.main import cli

    return CliRunner().invoke(cli, ["check-trt", str(path), "--trt-version", version])


def _check_exported_folder(folder, version, precision):
    """The recipe's own checks, plus: the sidecar is the contract embedded in model.onnx, ``check-trt`` passes."""
    from featherface_deploy.metadata.onnx import read_contract

    script = _check_folder(folder, version)
    sidecar = read_sidecar(folder / "model.onnx")
    assert sidecar.to_json() == read_contract(folder / "model.onnx").to_json()
    assert sidecar.precision == precision and sidecar.input_size == (64, 64)
    result = _check_trt(folder / "model.onnx", version)
    assert result.exit_code == 0 and f"fits TensorRT {version}'s ONNX parser" in result.output, result.output
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no staging folder left behind
    return script


def _int32_dequantize(model) -> list[str]:
    weights = {init.name: init.data_type for init in model.graph.initializer}
    return [node.name for node in model.graph.node if node.op_type == "DequantizeLinear"
            and weights.get(node.input[0]) == TensorProto.INT32]


@pytest.fixture(scope="module")
def fp16_recipe_10_3(tiny_checkpoint, tmp_path_factory):
    """``export --format trt-recipe --half --trt-version 10.3 --workspace 512M`` of the tiny model."""
    out = tmp_path_factory.mktemp("fp16-10.3") / "recipe"
    result = _export_recipe(tiny_checkpoint, out, "--half", "--trt-version", "10.3", "--workspace", "512M")
    assert result.exit_code == 0, result.output
    assert "parity onnxruntime vs torch" in result.output and "PASS" in result.output
    return out


@pytest.mark.slow
def test_export_fp16_recipe_for_10_3_builds_native_deform_conv(fp16_recipe_10_3) -> None:
    folder = fp16_recipe_10_3
    assert {p.name for p in folder.iterdir()} == RECIPE_FILES
    script = _check_exported_folder(folder, "10.3", "fp16")
    assert "--fp16" in script and "--memPoolSize=workspace:512" in script and "--calib" not in script
    model = onnx.load(str(folder / "model.onnx"))
    assert default_opset(model) == 19 and any(n.op_type == "DeformConv" for n in model.graph.node)
    assert read_sidecar(folder / "model.onnx").extra["tensorrt"]["dcn"] == "native"
    older = _check_trt(folder / "model.onnx", "8.6")  # the native DCN graph is 10.1+ only
    assert older.exit_code == 1 and "DeformConv parses only from TensorRT 10.1" in older.output


@pytest.mark.slow
def test_a_recipe_that_fails_verification_leaves_no_folder(fp16_recipe_10_3, tiny_checkpoint, tmp_path,
                                                           monkeypatch) -> None:
    """An ONNX that no longer matches the model (weights scaled) fails the parity gate: nothing is written."""
    import featherface_deploy.exporters.torch2trt_recipe as recipe_exporter
    from featherface_deploy.exporters.common import ExportResult
    from featherface_deploy.metadata.onnx import read_contract

    def drifted_export(model, out_path, row, options, context):
        graph = onnx.load(str(fp16_recipe_10_3 / "model.onnx"))
        for init in graph.graph.initializer:
            if init.data_type == TensorProto.FLOAT:
                init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
        onnx.save(graph, str(out_path))
        return ExportResult(out_path, read_contract(fp16_recipe_10_3 / "model.onnx"))

    monkeypatch.setattr(recipe_exporter, "export_onnx", drifted_export)
    out = tmp_path / "recipe"
    result = _export_recipe(tiny_checkpoint, out, "--half", "--trt-version", "10.3")
    assert result.exit_code == 1 and "Error: parity onnxruntime vs torch on 1 image(s): FAIL" in result.output
    assert "the exported model was not written" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its staging copy


@pytest.mark.slow
def test_export_int8_recipe_for_8_6_and_its_qdq_flavour_for_10_3(tiny_checkpoint, calibration_dir,
                                                                  tmp_path) -> None:
    from featherface_deploy.calibration import CalibrationConfig, build_calibration_set
    from featherface_deploy.exporters.onnx_quantize import Int8Options, quantize_onnx
    from featherface_deploy.exporters.onnx2trt_int8 import activation_scales, tensorrt_int8_options
    from featherface_deploy.exporters.onnx2trt_recipe import RecipeOptions, write_recipe
    from featherface_deploy.metadata.onnx import read_contract

    folder = tmp_path / "int8-8.6" / "recipe"
    result = _export_recipe(tiny_checkpoint, folder, "--int8", "--calib-dir", str(calibration_dir),
                            "--calib-images", "4", "--trt-version", "8.6", "--workspace", "1G")
    assert result.exit_code == 0, result.output
    assert {p.name for p in folder.iterdir()} == RECIPE_FILES | {"calib.cache"}
    script = _check_exported_folder(folder, "8.6", "int8")
    assert "--int8 --calib=calib.cache" in script and "--memPoolSize=workspace:1024" in script
    model = onnx.load(str(folder / "model.onnx"))  # 8.x: the float graph; TensorRT quantizes it from the cache
    assert default_opset(model) == 17 and _int32_dequantize(model) == []
    assert not {"DeformConv", "QuantizeLinear", "DequantizeLinear"} & {n.op_type for n in model.graph.node}
    assert (folder / "calib.cache").read_text().splitlines()[0] == "TRT-8600-EntropyCalibration2"
    code, calibrator, scales = read_cache(folder / "calib.cache")
    tensors = {name for node in model.graph.node for name in node.output} | {i.name for i in model.graph.input}
    assert (code, calibrator) == (8600, "EntropyCalibration2") and scales and set(scales) <= tensors
    assert all(np.isfinite(s) and s > 0 for s in scales.values())

    # The same graph quantized in the TensorRT flavour (what the recipe builds on 10.x) has exactly the
    # cache's scales, no int32 bias DQ, and fits 10.3; ONNX Runtime's default flavour does not.
    contract = read_contract(folder / "model.onnx")
    calib = build_calibration_set(calibration_dir, contract, CalibrationConfig(num_images=4, input_size=(64, 64)))
    qdq = quantize_onnx(folder / "model.onnx", tmp_path / "qdq.onnx", calib, tensorrt_int8_options()).path
    qdq_model = onnx.load(str(qdq))
    assert activation_scales(qdq_model) == pytest.approx(scales, rel=1e-6)
    assert _int32_dequantize(qdq_model) == [] and check_onnx_file(qdq, get_version("10.3")) == []
    default = quantize_onnx(folder / "model.onnx", tmp_path / "default.onnx", calib, Int8Options()).path
    assert _int32_dequantize(onnx.load(str(default)))
    assert {p.rule for p in check_onnx_file(default, get_version("10.3"))} == {"qdq-bias"}
    recipe_10 = write_recipe(qdq, tmp_path / "int8-10.3" / "recipe", RecipeOptions(get_version("10.3"), "int8"),
                             read_contract(qdq))
    script_10 = _check_exported_folder(recipe_10, "10.3", "int8")
    assert "--int8" in script_10 and "--calib" not in script_10 and not (recipe_10 / "calib.cache").exists()
