"""``compare --end2end``: end-to-end rows run through their own detect (AP, timing), the others are skipped."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import requires_backend  # noqa: E402

requires_backend("onnx", "export")
pytestmark = pytest.mark.slow  # an end-to-end export and a compare run

from featherface_deploy.cli.main import cli  # noqa: E402


def test_compare_end2end_runs_the_graph_and_skips_rows_that_cannot_take_it(tiny_checkpoint, widerface_root,
                                                                            tmp_path):
    result = CliRunner().invoke(cli, ["compare", str(tiny_checkpoint), "--formats", "torch,onnx,engine",
                                      "--widerface", str(widerface_root), "--limit", "2", "--imgsz", "64",
                                      "--iters", "2", "--warmup", "0", "--parity-images", "2", "--end2end",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "compare.json").read_text())
    rows = {row["label"]: row for row in report["rows"]}
    onnx, reference, engine = rows["onnx"], rows["torch"], rows["engine"]
    assert onnx["postprocess"] == "in-graph" and reference["postprocess"] == "numpy"
    assert json.loads((tmp_path / "artifacts" / next(
        p.name for p in (tmp_path / "artifacts").glob("*-onnx-*.onnx.json"))).read_text())["postprocess"] == "in-graph"
    assert onnx["in_graph_pass"] and onnx["in_graph_match_rate"] == 1.0
    assert onnx["parity_pass"] and 0 <= onnx["ap_hard"] <= 100 and onnx["infer_ms"] > 0
    assert engine["skipped"] and "--end2end is not available" in engine["error"] and "onnx-int8" in engine["error"]
    assert any("post-processing ran in the graph" in note for note in report["notes"])
