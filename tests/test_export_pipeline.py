"""The export pipeline driven by the format table: rows, option and suffix checks, chains, the parity gate."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from featherface_deploy.cli.main import cli
from featherface_deploy.contract import DecodeContract
from featherface_deploy.errors import ExportError, ParityError
from featherface_deploy.formats import CHECKPOINT, FORMATS, format_for_path, get_format, row_for
from featherface_deploy.pipeline.options import (
    accepted_options,
    build_chain,
    check_suffix,
    default_output,
    split_options,
)
from featherface_deploy.runtimes.base import Runtime
from featherface_deploy.verify.parity import check_parity
from featherface_deploy.verify.photos import default_parity_images
from featherface_deploy.verify.tolerances import Tolerances

PACKAGE = Path(__file__).resolve().parents[1] / "featherface_deploy"


def test_every_row_is_complete_and_its_source_is_a_row():
    names = [row.name for row in FORMATS]
    assert len(names) == len(set(names))
    for row in FORMATS:
        assert row.precision in ("fp32", "fp16", "int8") and row.suffixes and row.extra
        assert row.runtime.count(":") == 1
        if row.exporter is None:
            assert row.source is None and not row.options
            continue
        assert row.exporter.count(":") == 1 and row.options_class.count(":") == 1
        assert row.source == CHECKPOINT or row.source in names


def test_rows_that_export_here_resolve_to_an_exporter_taking_exactly_their_options():
    import dataclasses

    from featherface_deploy.formats import resolve

    checked = 0
    for row in FORMATS:
        if row.exporter is None or not row.exports_here()[0]:
            continue
        fields = {f.name for f in dataclasses.fields(resolve(row.options_class))}
        assert set(row.options) <= fields, row.name
        assert callable(resolve(row.exporter))
        checked += 1
    assert checked >= 6  # onnx, onnx-int8, tflite×3 at least


def test_chains_resolve_through_the_table():
    assert [r.name for r in build_chain(get_format("engine-int8"))] == ["engine-int8", "onnx-int8", "onnx"]
    assert {"dynamic", "calib_dir", "workspace"} <= accepted_options(get_format("engine-int8"))
    split = split_options(get_format("engine-int8"), {"dynamic": True, "calib_dir": "c", "workspace": 512})
    # engine-int8 forces the TensorRT flavour of the Q/DQ graph on its source (no int32 bias DQ, Q/DQ on inputs).
    assert split == {"engine-int8": {"workspace": 512},
                     "onnx-int8": {"calib_dir": "c", "quantize_bias": False, "placement": "inputs"},
                     "onnx": {"dynamic": True, "end2end": False}}  # onnx-int8 quantizes the raw network
    assert row_for("tflite", "int8").name == "tflite-int8" and row_for("coreml", "int8").name == "coreml-int8w"
    assert format_for_path("x.onnx").name == "onnx" and format_for_path("m.mlpackage").family == "coreml"


def test_an_unused_option_names_the_rows_that_take_it():
    with pytest.raises(ExportError, match=r"--calib-method is not used by --format tflite-int8 "
                                          r"\(it applies to: onnx-int8, engine-int8\)"):
        split_options(get_format("tflite-int8"), {"calib_method": "entropy"})
    with pytest.raises(ExportError, match="--float-io is not used by --format tflite .it applies to: tflite-int8"):
        split_options(get_format("tflite"), {"float_io": True})


def test_a_wrong_suffix_is_refused():
    with pytest.raises(ExportError, match=r"--format onnx writes \.onnx files; got 'x\.tflite' \(e\.g\. x\.onnx\)"):
        check_suffix(get_format("onnx"), "x.tflite")
    with pytest.raises(ExportError, match="writes a folder"):
        check_suffix(get_format("trt-recipe"), "recipe.onnx")
    assert check_suffix(get_format("coreml-fp16"), "a/b.mlpackage") == Path("a/b.mlpackage")


def test_default_outputs_name_the_variant():
    assert default_output(get_format("onnx"), "w/v1.pth") == Path("w/v1.onnx")
    assert default_output(get_format("onnx-int8"), "w/v1.pth") == Path("w/v1-int8.onnx")
    assert default_output(get_format("trt-recipe-fp16"), "w/v1.pth") == Path("w/v1-fp16-trt-recipe")


@pytest.mark.parametrize("arguments, message", [
    (["--format", "tflite", "--calib-method", "entropy"], "--calib-method is not used by --format tflite"),
    (["--format", "onnx", "-o", "x.tflite"], "writes .onnx files"),
    (["--format", "onnx", "--half"], "onnx has no fp16 row; it has: fp32, int8"),
    (["--format", "coreml", "--int8", "activations"], "W8A8"),
    (["--format", "tflite", "--int8"], "--calib-dir"),
    (["--format", "onnx", "--int8", "weights"], "--int8 weights applies to --format coreml"),
])
def test_cli_refuses_before_any_work(tmp_path, arguments, message):
    checkpoint = tmp_path / "never-read.pth"
    checkpoint.write_bytes(b"not a checkpoint: the options are refused before it is opened")
    result = CliRunner().invoke(cli, ["export", str(checkpoint), *arguments])
    assert result.exit_code == 1 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_formats_command_lists_every_row_and_what_runs_here():
    result = CliRunner().invoke(cli, ["formats"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for row in FORMATS:
        assert any(line.split()[0] == row.name for line in lines[1:]), row.name
    engine = next(line for line in lines if line.startswith("engine "))
    ok, why = get_format("engine").runs_here()
    assert (why in engine) if not ok else "yes" in engine


def test_exporters_import_no_runtime():
    """Exporters only write files: no module under exporters/ imports a runtime, the parity check or the pipeline.

    (``verify.metrics`` and ``verify.agreement`` are plain numpy arithmetic — the one AP, and the detection
    agreement the INT8 searches use; the TFLite one runs its files through ``ExportContext.open_tflite``.)"""
    forbidden = ("featherface_deploy.runtimes", "featherface_deploy.verify.parity", "featherface_deploy.pipeline")
    offenders = []
    for path in sorted((PACKAGE / "exporters").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {name}" for name in names if name.startswith(forbidden)]
    assert offenders == []


def test_exporters_run_no_model_themselves():
    """No exporter opens an ONNX Runtime session, a LiteRT interpreter or a Core ML model to predict: what an
    exporter measures goes through ``ExportContext.open_onnx`` / ``open_tflite`` / ``run_onnx`` /
    ``onnx_activations`` / ``onnx_integer_share`` (given by the pipeline)."""
    running = ("InferenceSession", "Interpreter", "predict", "MLModel", "collect_activations", "ort_integer_share")
    backends = ("ai_edge_litert", "tflite_runtime")
    found = set()
    for path in sorted((PACKAGE / "exporters").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if called in running:
                    found.add((path.name, called))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                found |= {(path.name, name) for name in names if name.startswith(backends)}
    assert found == set()


class _Fixed(Runtime):
    """A runtime with preset outputs (no faces anywhere)."""

    name = "fixed"

    def __init__(self) -> None:
        super().__init__(DecodeContract(model_name="fixed", input_size=(64, 64), size_divisor=32))

    def _infer(self, batch):
        count = self.contract.priors.count(*batch.shape[2:])
        conf = np.zeros((len(batch), count, 2), np.float32)
        conf[..., 0] = 1.0
        return {"loc": np.zeros((len(batch), count, 4), np.float32), "conf": conf,
                "landmarks": np.zeros((len(batch), count, 10), np.float32)}


def test_a_parity_run_that_finds_no_face_fails():
    with pytest.raises(ParityError, match=r"reference found 0 face\(s\)"):
        check_parity(_Fixed(), _Fixed())
    assert check_parity(_Fixed(), _Fixed(), tolerances=Tolerances(min_reference_faces=0)).passed


def test_the_shipped_photo_is_the_default_and_has_a_face():
    from PIL import Image

    (photo,) = default_parity_images()
    assert photo.is_file() and photo.stat().st_size < 100_000
    with Image.open(photo) as image:
        assert image.size == (512, 512)


def test_v1_finds_the_face_in_the_shipped_photo(v1_weights):
    pytest.importorskip("torch")
    from featherface_deploy.runtimes.torch_runtime import TorchRuntime
    from featherface_deploy.verify.parity import parity_inputs

    runtime = TorchRuntime(v1_weights)
    report = check_parity(runtime, runtime, tolerances=Tolerances())
    assert report.passed and report.reference_detections == 1
    assert len(parity_inputs(runtime.contract)) == 1


@pytest.mark.parametrize("dcn", ["gather", "native"])
def test_compare_builds_int8_through_the_gated_pipeline(tiny_checkpoint, tmp_path, monkeypatch, dcn):
    """compare's INT8 row is exported by export_model (the parity gate), reusing the cached ONNX it is built from
    unless that one has the native DCN (no INT8 kernel): then export_model builds its own plain-op source."""
    import featherface_deploy.pipeline as pipeline
    from featherface_deploy.contract import DecodeContract
    from featherface_deploy.harness.artifacts import BuildSettings, build_all

    calls = []

    def recording_export(source, out, row, options, **kwargs):
        calls.append((row.name, dict(options), {k: Path(v).name for k, v in kwargs["reuse"].items()}))
        Path(out).write_bytes(b"model")
        Path(f"{out}.json").write_text(DecodeContract("featherface-tiny", extra={"dcn": dcn}).to_json())

    monkeypatch.setattr(pipeline, "export_model", recording_export)
    built, failed = build_all(tiny_checkpoint, ["torch", "onnx-int8"], tmp_path,
                              BuildSettings((64, 64), calibration_dir=tmp_path))
    assert not failed and list(built) == ["torch", "onnx-int8"]
    assert [c[0] for c in calls] == ["onnx", "onnx-int8"]
    assert calls[0][1] == {"imgsz": (64, 64)}
    assert calls[1][1] == {"imgsz": (64, 64), "calib_dir": str(tmp_path)}
    if dcn == "native":
        assert calls[1][2] == {}
        return
    reused = calls[1][2]["onnx"]  # the INT8 build starts from the cached FP32 file, not a second export
    assert reused.startswith(f"{tiny_checkpoint.stem}-onnx-") and reused.endswith(".onnx")


@pytest.mark.parametrize("text, mib", [("2G", 2048), ("512M", 512), ("1536", 1536), ("1.5GiB", 1536), ("64mb", 64)])
def test_workspace_takes_units_and_plain_mib(tmp_path, monkeypatch, text, mib):
    import featherface_deploy.pipeline as pipeline

    calls = []

    def recording_export(source, out, row, options, **kwargs):
        calls.append((row.name, options))
        return SimpleNamespace(path=out, timings={})

    monkeypatch.setattr(pipeline, "export_model", recording_export)
    checkpoint = tmp_path / "never-read.pth"
    checkpoint.write_bytes(b"the recording export_model never opens it")
    result = CliRunner().invoke(cli, ["export", str(checkpoint), "--format", "engine", "--half", "--workspace", text])
    assert result.exit_code == 0, result.output
    assert calls == [("engine-fp16", {"workspace": mib})]


@pytest.mark.parametrize("text, message", [("2T", "expected a size like 2G, 512M or 2048 (MiB), got '2T'"),
                                           ("big", "got 'big'"), ("0", "'0' is 0 MiB; give a whole number"),
                                           ("0.5M", "is 0.5 MiB")])
def test_a_bad_workspace_is_refused_with_the_option_named(tmp_path, text, message):
    checkpoint = tmp_path / "never-read.pth"
    checkpoint.write_bytes(b"refused before it is opened")
    result = CliRunner().invoke(cli, ["export", str(checkpoint), "--format", "trt-recipe", "--workspace", text])
    assert result.exit_code == 2 and "Invalid value for '--workspace'" in result.output and message in result.output
    assert "Traceback" not in result.output
