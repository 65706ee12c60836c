"""Core ML export of the tiny variant: parity through the reference interpreter, metadata, flexible and
enumerated shapes, FP16 and 8-bit weights, error cases; and (macOS only) the interpreter against Core ML."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from conftest import requires_backend  # noqa: E402

requires_backend("coreml", "export")
import coremltools as ct  # noqa: E402
import torch  # noqa: E402

from conftest import export_row  # noqa: E402
from featherface_deploy.contract import METADATA_KEY, DecodeContract, sidecar_path  # noqa: E402
from featherface_deploy.errors import BackendNotInstalledError, ExportError, InputError  # noqa: E402
from featherface_deploy.export_options import CoremlOptions  # noqa: E402
from featherface_deploy.models.registry import create_untrained_model  # noqa: E402
from featherface_deploy.runtimes.coreml_runtime import INTERPRETER_NAME, CoremlRuntime, coreml_available  # noqa: E402

SIZE = (64, 64)


@pytest.fixture(scope="module")
def tiny():
    model = create_untrained_model("featherface-tiny", 0)
    draw = torch.Generator().manual_seed(0)
    for module in model.modules():  # non-trivial statistics, so that a wrong BN shows
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5, generator=draw)
            module.running_var.uniform_(0.5, 2.0, generator=draw)
    return model


@pytest.fixture(scope="module")
def fp32_package(tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp("coreml") / "tiny.mlpackage"
    result = export_row(tiny, path, "coreml", imgsz=SIZE)
    return path, result, result.parity


def _input(size, seed=1):
    image = np.random.default_rng(seed).integers(0, 256, (1, 3, *size)).astype(np.float32)
    return image - np.array([104, 117, 123], np.float32)[:, None, None]


def _max_diff(runtime, model, batch):
    got = runtime.infer(batch)
    with torch.no_grad():
        want = model(torch.from_numpy(batch))
    return {role: float(np.abs(got[role] - w.numpy()).max()) for role, w in zip(("loc", "conf", "landmarks"), want)}


def test_fp32_export_passes_parity_through_the_labelled_interpreter(fp32_package, tiny):
    path, result, report = fp32_package
    assert report.passed and report.max_abs["conf"] <= 1e-5
    runtime = CoremlRuntime(path)
    if not coreml_available():
        assert runtime.name == INTERPRETER_NAME == report.candidate and runtime.engine == "interpreter"
    assert max(_max_diff(runtime, tiny, _input(SIZE)).values()) < 1e-5
    counts = result.facts["op_counts"]
    assert counts["conv"] > 0 and counts["gather"] > 0 and "const" not in counts


def test_contract_round_trips_through_metadata_and_sidecar(fp32_package):
    path, result, _ = fp32_package
    model = ct.models.MLModel(str(path), skip_model_load=True)
    embedded = DecodeContract.from_json(model.user_defined_metadata[METADATA_KEY])
    assert embedded == result.contract == DecodeContract.from_json(sidecar_path(path).read_text())
    assert embedded.input_size == SIZE and embedded.source_format == "coreml" and embedded.precision == "fp32"
    spec = model.get_spec()
    assert [o.name for o in spec.description.output] == ["loc", "conf", "landmarks"]
    assert spec.description.input[0].type.multiArrayType.dataType == ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    assert json.loads(sidecar_path(path).read_text())["extra"]["target"] == "iOS16"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_unknown_and_too_old_targets_are_refused():
    row = type("Row", (), {"precision": "fp32"})()
    with pytest.raises(ExportError, match="unknown or unsupported Core ML target 'iOS99'.*iOS16"):
        CoremlOptions(target="iOS99").validate(row)
    with pytest.raises(ExportError, match="unsupported Core ML target 'iOS14'"):
        CoremlOptions(target="iOS14").validate(row)


def test_w8a8_is_refused_with_the_reason(tiny, tmp_path):
    with pytest.raises(ExportError, match="W8A8.*needs macOS"):
        export_row(tiny, tmp_path / "x.mlpackage", "coreml-int8w", int8_mode="activations")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("options, message", [
    (CoremlOptions(imgsz=(60, 64)), "multiples of 32"),
    (CoremlOptions(flexible="320"), "LO-HI"),
    (CoremlOptions(flexible="640-320"), "lower bound is above"),
    (CoremlOptions(io_dtype="fp16"), "FP16 input/outputs need FP16 compute"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(ExportError, match=message):
        options.validate(type("Row", (), {"precision": "fp32"})())


def test_missing_coremltools_names_the_extra(monkeypatch):
    from featherface_deploy.export_options import resolve_target

    monkeypatch.setitem(sys.modules, "coremltools", None)
    with pytest.raises(BackendNotInstalledError, match=r"featherface-deploy\[coreml\]"):
        resolve_target("iOS16")


@pytest.mark.skipif(coreml_available(), reason="Core ML is available here")
def test_core_ml_engine_is_refused_without_core_ml(fp32_package):
    with pytest.raises(BackendNotInstalledError, match="need macOS.*engine='interpreter'"):
        CoremlRuntime(fp32_package[0], engine="coreml")


@pytest.mark.macos
@pytest.mark.skipif(not coreml_available(), reason="needs macOS with Core ML (MLModel.predict)")
@pytest.mark.parametrize("compute_units", ["cpu", "all"])
def test_interpreter_matches_core_ml_predict(fp32_package, compute_units):
    path = fp32_package[0]
    batch = _input(SIZE)
    core_ml = CoremlRuntime(path, compute_units=compute_units, engine="coreml").infer(batch)
    reference = CoremlRuntime(path, engine="interpreter").infer(batch)
    for role in ("loc", "conf", "landmarks"):
        np.testing.assert_allclose(core_ml[role], reference[role], atol=1e-2 if compute_units == "all" else 1e-4)


def _assert_matches_pytorch(runtime, model, size, atol=1e-4):
    diffs = _max_diff(runtime, model, _input(size))
    assert max(diffs.values()) < atol, (size, diffs)


@pytest.mark.slow  # one conversion (about 60 s on 2 busy cores)
def test_flexible_shapes_run_at_two_sizes_and_match_pytorch(tiny, tmp_path):
    result = export_row(tiny, tmp_path / "flexible.mlpackage", "coreml", imgsz=SIZE, flexible="64-128")
    assert result.parity.passed and result.contract.input_size is None
    runtime = CoremlRuntime(result.path)
    for size in ((64, 64), (96, 128)):
        _assert_matches_pytorch(runtime, tiny, size)
    with pytest.raises(InputError, match="sides from 64 to 128"):
        runtime.infer(_input((160, 64)))


@pytest.mark.slow  # one conversion (about 60 s on 2 busy cores)
def test_enumerated_shapes_run_at_each_size_and_match_pytorch(tiny, tmp_path):
    sizes = ((64, 64), (64, 96))
    result = export_row(tiny, tmp_path / "sizes.mlpackage", "coreml", imgsz=SIZE, sizes=sizes)
    assert result.parity.passed and result.contract.extra["sizes"] == [list(s) for s in sizes]
    runtime = CoremlRuntime(result.path)
    for size in sizes:
        _assert_matches_pytorch(runtime, tiny, size)
    with pytest.raises(InputError, match="takes the sizes 64×64, 64×96"):
        runtime.infer(_input((96, 96)))


@pytest.mark.slow  # two conversions at 640 (about 3 minutes on 2 busy cores)
def test_fp16_keeps_the_dcn_sample_positions_fp32_at_640(tiny, tmp_path):
    """FP16 has 11 bits of mantissa: positions of 64-128 px would be rounded to 1/16 px. The exporter keeps the
    DCN's coordinate subgraph FP32 (keeps_fp32): the positions must be FP32 values, not FP16 roundings."""
    from featherface_deploy.runtimes.mil import MilInterpreter

    size = (640, 640)
    scratch: dict = {}
    half = export_row(tiny, tmp_path / "fp16.mlpackage", "coreml-fp16", imgsz=size, scratch=scratch)
    full = export_row(tiny, tmp_path / "fp32.mlpackage", "coreml", imgsz=size, scratch=scratch)
    assert half.parity.passed and half.facts["op_counts"]["cast"] > full.facts["op_counts"]["cast"]
    programs = {name: MilInterpreter(result.path) for name, result in (("fp16", half), ("fp32", full))}
    positions = {name: program.values_of("floor", "x") for name, program in programs.items()}
    assert len(positions["fp16"]) == len(positions["fp32"]) == 2 * 15  # y and x of each of the 15 DCNs
    assert {spec.dtype for spec in positions["fp16"] + programs["fp16"].values_of("floor")} == {np.dtype("float32")}
    batch = _input(size)
    values = {name: program.run({"input": batch}, keep=[spec.name for spec in positions[name]])
              for name, program in programs.items()}
    far = np.concatenate([values["fp16"][spec.name].ravel() for spec in positions["fp16"]])
    far = far[(far >= 64) & (far < 128)]
    assert far.size > 1000  # the stride-8 level reaches these positions at 640
    sixteenths = far * 16
    assert np.mean(sixteenths != np.round(sixteenths)) > 0.5  # finer than FP16 could hold there
    for spec16, spec32 in zip(positions["fp16"], positions["fp32"]):
        # The offsets themselves come from FP16 convolutions; the positions built from them stay close.
        np.testing.assert_allclose(values["fp16"][spec16.name], values["fp32"][spec32.name], atol=0.25)
