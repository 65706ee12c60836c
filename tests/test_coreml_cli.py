"""The command line on a Core ML package: ``export --format coreml`` writes it, and ``detect``, ``evaluate``,
``benchmark`` and ``info`` take the ``.mlpackage`` folder and say which runtime ran (on Linux: the reference
interpreter, never passed off as Core ML)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import requires_backend  # noqa: E402

requires_backend("coreml", "export")

from featherface_deploy.cli.main import cli  # noqa: E402
from featherface_deploy.runtimes.coreml_runtime import INTERPRETER_NAME, coreml_available  # noqa: E402

EXPECTED_RUNTIME = "coreml" if coreml_available() else INTERPRETER_NAME


def _invoke(*args):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def package(tiny_coreml):
    """The tiny checkpoint exported once, at 64×64, through the CLI (shared with the bundle tests)."""
    return tiny_coreml


@pytest.fixture(scope="module")
def photo(calibration_dir):
    return sorted(calibration_dir.glob("*.jpg"))[0]


def _faces(result):
    assert result.exit_code == 0, result.output
    (faces,) = json.loads(result.stdout).values()
    return faces


def test_detect_runs_the_package_and_names_the_runtime(package, tiny_checkpoint, photo):
    text = _invoke("detect", photo, "--model", package, "--vis-threshold", "0")
    assert text.exit_code == 0, text.output
    assert text.stdout.splitlines()[0].startswith(f"runtime: {EXPECTED_RUNTIME}")
    if not coreml_available():
        assert "not Core ML" in text.stdout.splitlines()[0]
    as_json = _invoke("detect", photo, "--model", package, "--json", "--vis-threshold", "0")
    assert f"runtime: {EXPECTED_RUNTIME}" in as_json.stderr
    got = _faces(as_json)
    # The same checkpoint in PyTorch, fitted into the package's 64×64: the same faces.
    want = _faces(_invoke("detect", photo, "--model", tiny_checkpoint, "--imgsz", "64", "--json",
                          "--vis-threshold", "0"))
    # The untrained model scores many boxes alike near 0.5, so which of them survive NMS turns on 1e-6
    # differences; the best face does not.
    assert got and want
    assert got[0]["score"] == pytest.approx(want[0]["score"], abs=1e-4)
    np.testing.assert_allclose(got[0]["box"], want[0]["box"], atol=0.1)
    np.testing.assert_allclose(got[0]["landmarks"], want[0]["landmarks"], atol=0.1)


def _scores(pred_dir):
    """Sorted scores per written prediction file (the official layout: name, count, then x y w h score)."""
    return {path.relative_to(pred_dir): sorted(float(line.split()[4]) for line in path.read_text().splitlines()[2:])
            for path in pred_dir.glob("*/*.txt")}


def test_evaluate_prints_ap_through_the_named_runtime(package, tiny_checkpoint, widerface_root, tmp_path):
    reports, scores = {}, {}
    for name, model in (("package", package), ("torch", tiny_checkpoint)):
        result = _invoke("evaluate", "--model", model, "--imgsz", "64", "--widerface", widerface_root, "--limit", "2",
                         "--json", "--conf-threshold", "0.4", "--pred-dir", tmp_path / name)
        assert result.exit_code == 0, result.output
        reports[name], scores[name] = json.loads(result.stdout), _scores(tmp_path / name)
    assert reports["package"]["runtime"] == EXPECTED_RUNTIME and reports["torch"]["runtime"] == "torch"
    assert reports["package"]["images"] == 2 and len(scores["package"]) == 2
    for setting in ("easy", "medium", "hard"):  # the untrained model's AP is low, but the same
        assert reports["package"][setting] == pytest.approx(reports["torch"][setting], abs=0.01)
    assert scores["package"].keys() == scores["torch"].keys()
    for key, values in scores["torch"].items():
        np.testing.assert_allclose(scores["package"][key], values, atol=1e-3)
    text = _invoke("evaluate", "--model", package, "--widerface", widerface_root, "--limit", "1")
    assert text.exit_code == 0 and f"runtime: {EXPECTED_RUNTIME}" in text.stdout and "AP" in text.stdout


def test_benchmark_times_the_package_and_counts_its_files(package, tmp_path):
    out = tmp_path / "bench.json"
    result = _invoke("benchmark", package, "--warmup", "1", "--iters", "3", "--json", out)
    assert result.exit_code == 0, result.output
    assert EXPECTED_RUNTIME in result.stdout
    written = json.loads(out.read_text())
    (row,) = written["rows"]
    weights = sum(p.stat().st_size for p in package.rglob("*") if p.is_file()) / 1e6
    assert row["runtime"] == written["facts"]["runtime"] == EXPECTED_RUNTIME
    assert row["file_mb"] == pytest.approx(weights, abs=1e-3) and row["p50_ms"] > 0
    assert written["facts"]["imgsz"] == [640, 640]  # the box asked for; the fixed model runs at its own 64×64


def test_info_describes_the_package_and_what_runs_it(package):
    result = _invoke("info", package)
    assert result.exit_code == 0, result.output
    assert "format: coreml" in result.stdout and "(B, 3, 64, 64)" in result.stdout
    assert "runs here: yes" in result.stdout
    if not coreml_available():
        assert "reference interpreter" in result.stdout


def test_a_folder_that_is_not_a_package_is_refused(tmp_path, photo):
    folder = tmp_path / "model.onnx"
    folder.mkdir()
    for args in (("detect", photo, "--model", folder), ("benchmark", folder), ("info", folder)):
        result = _invoke(*args)
        assert result.exit_code == 2 and "is a folder" in result.output and ".mlpackage" in result.output, args


def test_core_ml_options_are_refused_for_other_models(tiny_checkpoint, photo):
    result = _invoke("detect", photo, "--model", tiny_checkpoint, "--coreml-engine", "interpreter")
    assert result.exit_code == 2 and ".mlpackage" in result.output


@pytest.mark.skipif(coreml_available(), reason="Core ML is available here")
def test_asking_for_core_ml_on_linux_is_an_error(package, photo):
    result = _invoke("detect", photo, "--model", package, "--coreml-engine", "coreml")
    assert result.exit_code == 1 and "need macOS" in result.output and "Traceback" not in result.output


@pytest.mark.slow  # three conversions (one shared trace): about 3 minutes on 2 busy cores
def test_compare_adds_the_three_core_ml_rows(tiny_checkpoint, calibration_dir, tmp_path):
    result = _invoke("compare", tiny_checkpoint, "--formats", "torch,coreml,coreml-fp16,coreml-int8w",
                     "--images", calibration_dir, "--limit", "2", "--parity-images", "2", "--imgsz", "64",
                     "--warmup", "0", "--iters", "2", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "compare.json").read_text())
    rows = {row["label"]: row for row in report["rows"]}
    assert list(rows) == ["torch", "coreml", "coreml-fp16", "coreml-int8w"]
    for name in ("coreml", "coreml-fp16", "coreml-int8w"):
        row = rows[name]
        assert row["runtime"] == EXPECTED_RUNTIME and row["parity_pass"] is True and not row.get("error"), row
        assert row["p50_ms"] > 0 and row["file_mb"] > 0.05
    assert rows["coreml"]["max_abs_conf"] < 1e-4
    assert rows["coreml-int8w"]["file_mb"] < rows["coreml"]["file_mb"]
    if not coreml_available():
        assert any("reference interpreter" in note for note in report["notes"])
        assert f"| {INTERPRETER_NAME} |" in result.stdout
