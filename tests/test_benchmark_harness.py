"""The benchmark harness: latency statistics, reports, detection matching, compare/benchmark CLIs, budgets."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featherface_deploy.harness import compare as compare_module
from featherface_deploy.harness.compare import Budgets, CompareResult, MemoRuntime
from featherface_deploy.harness.latency import LatencyConfig, LatencyStats, Pipeline, measure_interleaved, \
    measure_peak_memory
from docs_tools.sections import update_readme
from featherface_deploy.harness.report import Column, markdown_table, write_report
from featherface_deploy.cli.main import cli
from featherface_deploy.contract import DecodeContract
from featherface_deploy.verify.parity import check_parity
from featherface_deploy.verify.tolerances import Tolerances
from featherface_deploy.postprocess import generate_priors
from featherface_deploy.runtimes.base import Runtime
from featherface_deploy.runtimes.torch_runtime import TorchRuntime

SIZE = 128


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (96, 120, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


class FixedRuntime(Runtime):
    """Returns the same outputs whatever the input: faces at known priors, optionally shifted."""

    name = "fixed"

    def __init__(self, faces: dict[int, float], shift: float = 0.0) -> None:
        super().__init__(DecodeContract(model_name="fixed"))
        self.faces, self.shift, self.calls = faces, shift, 0

    def _infer(self, batch):
        self.calls += 1
        count = len(generate_priors(self.contract.priors, *batch.shape[2:]))
        conf = np.zeros((1, count, 2), np.float32)
        conf[..., 0] = 1.0
        loc = np.zeros((1, count, 4), np.float32)
        for index, score in self.faces.items():
            conf[0, index] = (1 - score, score)
            loc[0, index, :2] = self.shift
        return {"loc": loc, "conf": conf, "landmarks": np.zeros((1, count, 10), np.float32)}


def _parity(candidate, reference):
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    return check_parity(candidate, reference, [image], Tolerances.int8(), raise_on_failure=False,
                        size=(SIZE, SIZE))


def test_detection_matcher_identical_outputs_match_fully():
    report = _parity(FixedRuntime({100: 0.9, 600: 0.8}), FixedRuntime({100: 0.9, 600: 0.8}))
    assert report.matched == 2 and report.match_rate == 1.0 and report.max_score_diff == 0.0


def test_detection_matcher_counts_missing_and_moved_detections():
    missing = _parity(FixedRuntime({100: 0.9}), FixedRuntime({100: 0.9, 600: 0.8}))
    assert missing.matched == 1 and missing.match_rate == pytest.approx(0.5)
    moved = _parity(FixedRuntime({100: 0.9}, shift=3.0), FixedRuntime({100: 0.9}))
    assert moved.matched == 0 and moved.match_rate == 0.0 and not moved.passed


def test_memo_reference_runs_each_input_once():
    inner = FixedRuntime({100: 0.9})
    memo = MemoRuntime(inner)
    batch = np.zeros((1, 3, SIZE, SIZE), np.float32)
    first, second = memo.infer(batch), memo.infer(batch.copy())
    assert inner.calls == 1 and np.array_equal(first["conf"], second["conf"])


def test_latency_stats_percentiles_and_split():
    samples = np.array([[0.001, 0.010, 0.002]] * 98 + [[0.001, 0.100, 0.002]] * 2)
    stats = LatencyStats.from_samples(samples, batch=2)
    assert stats.p50_ms == pytest.approx(13.0) and stats.p99_ms > 13.0
    assert (stats.pre_ms, stats.infer_ms, stats.post_ms) == pytest.approx((1.0, 10.0, 2.0))
    assert stats.throughput == pytest.approx(2000.0 / stats.mean_ms) and stats.iterations == 100


def test_pipeline_times_every_stage_and_measures_memory(tiny_checkpoint):
    images = [np.zeros((96, 120, 3), np.uint8), np.full((64, 64, 3), 128, np.uint8)]
    pipeline = Pipeline(TorchRuntime(tiny_checkpoint, threads=1), images, LatencyConfig((SIZE, SIZE), batch=1))
    stats = measure_interleaved({"tiny": pipeline}, warmup=1, iters=3)["tiny"]
    assert stats.iterations == 3 and min(stats.pre_ms, stats.infer_ms, stats.post_ms) > 0
    memory = measure_peak_memory(pipeline, steps=1)
    assert memory["peak_rss_mb"] > 0 and memory["method"]


def test_report_files_and_readme_section(tmp_path):
    rows = [{"label": "a|b", "p50_ms": 3.0, "ap_easy": 90.0, "ap_medium": 80.0, "ap_hard": 50.0, "ok": False}]
    columns = [Column("label", "Artifact"), Column("p50_ms", "p50 ms", 1), Column("ok", "ok"), Column("x", "x")]
    assert markdown_table(rows, columns).splitlines()[2] == "| a\\|b | 3.0 | NO | — |"
    paths = write_report(tmp_path, "demo", rows, columns, {"date": "today", "cpu": "cpu", "threads": 1})
    assert set(paths) == {"markdown", "csv", "json", "png"} and all(p.stat().st_size for p in paths.values())
    readme = tmp_path / "README.md"
    readme.write_text("top\n<!-- generated:demo begin -->\nold\n<!-- generated:demo end -->\nbottom\n")
    update_readme(readme, "demo", "new table")
    assert readme.read_text() == "top\n<!-- generated:demo begin -->\nnew table\n<!-- generated:demo end -->\nbottom\n"


def test_compare_torch_only_writes_the_report(tiny_checkpoint, image_dir, tmp_path):
    result = CliRunner().invoke(cli, ["compare", str(tiny_checkpoint), "--formats", "torch", "--images",
                                      str(image_dir), "--imgsz", str(SIZE), "--iters", "3", "--warmup", "1",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "| torch | fp32 | torch |" in result.stdout
    payload = json.loads((tmp_path / "compare.json").read_text())
    assert payload["facts"]["threads"] == 1 and "numpy" in payload["facts"]["versions"] and payload["facts"]["cpu"]
    row = payload["rows"][0]
    assert row["label"] == "torch" and row["p50_ms"] > 0 and row["file_mb"] > 0
    assert (tmp_path / "compare.csv").read_text().startswith("label,")


def test_compare_budget_breaks_exit_status(tiny_checkpoint, image_dir, tmp_path, monkeypatch):
    rows = [{"label": "torch", "precision": "fp32"},
            {"label": "onnx-int8", "precision": "int8", "match_rate": 0.5, "ap_drop": 4.0, "parity_pass": False,
             "parity_failures": ["match rate"]}]
    monkeypatch.setattr(compare_module, "run_compare", lambda *args, **kwargs: CompareResult(rows, {}, []))
    arguments = ["compare", str(tiny_checkpoint), "--formats", "torch", "--images", str(image_dir),
                 "--out", str(tmp_path), "--exist-ok"]  # each run rewrites the same report
    assert CliRunner().invoke(cli, arguments).exit_code == 0
    broken = CliRunner().invoke(cli, [*arguments, "--min-match-rate", "0.9"])
    assert broken.exit_code == 3 and "match rate 0.500 < 0.9" in broken.output
    assert CliRunner().invoke(cli, [*arguments, "--max-ap-drop", "5"]).exit_code == 0
    assert CliRunner().invoke(cli, [*arguments, "--max-ap-drop", "1"]).exit_code == 3


def test_budgets_list_every_broken_limit():
    rows = [{"label": "x", "match_rate": 0.9, "ap_drop": 2.0, "parity_pass": False, "parity_failures": ["raw"]}]
    assert len(Budgets(0.95, 1.0, True).broken(rows)) == 3
    assert Budgets(0.8, 3.0, False).broken(rows) == []


def _benchmark(checkpoint, image_dir, out_dir, *options: str):
    """Runs the benchmark command on the tiny model; returns its output and the rows of its JSON report."""
    out = out_dir / "bench.json"
    result = CliRunner().invoke(cli, ["benchmark", str(checkpoint), "--imgsz", str(SIZE), *options,
                                      "--images", str(image_dir), "--json", str(out)])
    assert result.exit_code == 0, result.output
    return result.output, json.loads(out.read_text())["rows"]


def test_benchmark_command_times_each_configuration(tiny_checkpoint, image_dir, tmp_path):
    _, rows = _benchmark(tiny_checkpoint, image_dir, tmp_path, "--batch", "1,2", "--iters", "3", "--warmup", "1")
    assert [(r["threads"], r["batch"]) for r in rows] == [(1, 1), (1, 2)]
    assert rows[1]["throughput"] > 0 and rows[1]["file_mb"] > 0


def test_compare_with_widerface_reports_accuracy(tiny_checkpoint, widerface_root, tmp_path):
    result = CliRunner().invoke(cli, ["compare", str(tiny_checkpoint), "--formats", "torch", "--widerface",
                                      str(widerface_root), "--limit", "2", "--imgsz", str(SIZE), "--iters", "2",
                                      "--warmup", "0", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "compare.json").read_text())["rows"][0]
    assert 0 <= row["ap_hard"] <= 100 and row["ap_drop"] == 0


def test_claims_rows_put_measured_values_beside_claims():
    from benchmarks.claims import CLAIMS, claims_rows

    rows = claims_rows({"params_v1": 489_015, "ap_delta_hard": -3.07}, {"params": "PyTorch"})
    assert len(rows) == len(CLAIMS)
    first = rows[0]
    assert first["claimed"] == "489,178" and first["measured"] == "489,015" and first["how"] == "PyTorch"
    assert next(r for r in rows if r["quantity"] == "ap_delta_hard")["measured"] == "-3.07"
    assert next(r for r in rows if r["quantity"] == "params_v2")["measured"] is None


@pytest.mark.parametrize("peer", ["yunet", "ultralight"])
def test_peer_adapters_return_detections_in_original_pixels(peer, widerface_root):
    from conftest import shared_path

    from featherface_deploy.harness.peers import UltralightDetector, YuNetDetector
    from featherface_deploy.evaluation import list_images

    if peer == "yunet":
        pytest.importorskip("cv2", reason="YuNet needs opencv-python-headless")
        detector = YuNetDetector(shared_path("peers", "yunet", "face_detection_yunet_2023mar.onnx"))
    else:
        detector = UltralightDetector(shared_path("peers", "ultralight", "version-RFB-320.onnx"))
    _, _, path = list_images(widerface_root)[0]
    faces = detector(path)
    assert len(faces) > 0 and faces.landmarks.shape == (len(faces), 5, 2)
    assert np.all(np.diff(faces.scores) <= 0) and faces.boxes[:, :2].min() > -50 and faces.boxes.max() < 466


def test_a_failed_build_is_reported_and_does_not_stop_the_others(tiny_checkpoint, tmp_path):
    from featherface_deploy.harness.artifacts import BuildSettings, build_all

    built, failed = build_all(tiny_checkpoint, ["torch", "tflite-int8"], tmp_path, BuildSettings())
    assert list(built) == ["torch"] and built["torch"].path == tiny_checkpoint
    assert "calib" in failed["tflite-int8"]
    assert Budgets().broken([{"label": "tflite-int8", "error": failed["tflite-int8"]}])


def test_harness_modules_import_no_backend():
    import subprocess
    import sys

    probe = ("import sys, featherface_deploy.harness.latency, featherface_deploy.harness.report, "
             "featherface_deploy.harness.compare, featherface_deploy.harness.peers, "
             "featherface_deploy.cli.main\n"
             "print(' '.join(m for m in ('torch', 'onnxruntime', 'cv2', 'matplotlib', 'ai_edge_litert') "
             "if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == ""


def test_benchmark_rows_say_how_many_threads_ran(tiny_checkpoint, image_dir, tmp_path, monkeypatch):
    # `--threads 4` on a 2-core machine runs 2 threads (capped): the row must say 2, not 4.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    output, rows = _benchmark(tiny_checkpoint, image_dir, tmp_path, "--threads", "1,4", "--iters", "2", "--warmup", "0")
    assert [(r["threads"], r["threads_requested"]) for r in rows] == [(1, 1), (2, 4)]
    assert "Warning: 4 threads requested but this process can use 2 CPU core(s); using 2" in output
    header = next(line for line in output.splitlines() if line.startswith("| Runtime | Threads"))
    assert header.startswith("| Runtime | Threads | asked |")  # the runtime that ran, then what ran vs what was asked
    assert any(line.startswith("| ") and " | 2 | 4 | " in line for line in output.splitlines())
