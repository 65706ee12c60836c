"""FeatherFace V1 (trained) exported end to end: the in-graph detections equal numpy post-processing (FP32 limits)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import export_row, requires_backend, shared_path  # noqa: E402

requires_backend("onnx", "export")

from featherface_deploy.postprocess import load_image  # noqa: E402
from featherface_deploy.runtimes.in_graph import letterbox  # noqa: E402
from featherface_deploy.runtimes.ort_runtime import OrtRuntime  # noqa: E402
from featherface_deploy.verify.in_graph import check_in_graph_parity, default_in_graph_images  # noqa: E402
from featherface_deploy.verify.photos import default_parity_images  # noqa: E402


@pytest.fixture(scope="module")
def v1_e2e(v1_weights, tmp_path_factory):
    path = tmp_path_factory.mktemp("v1-e2e") / "v1-e2e.onnx"
    outcome = export_row(v1_weights, path, "onnx", end2end=True)
    return path, outcome


def test_v1_in_graph_matches_numpy_at_fp32_limits(v1_e2e):
    _, outcome = v1_e2e
    report = outcome.in_graph
    assert report.passed, report.format()
    assert report.numpy >= 20  # the astronaut and a 5×5 crowd of her: the NMS had work to do
    assert report.match_rate == 1.0 and report.min_iou >= 0.999
    assert report.max_score_diff <= 1e-4 and report.max_landmark_px <= 0.01


def test_v1_wider_crowds_match_numpy(v1_e2e):
    """Real crowds from the WIDER FACE subset (the images with the most faces) through the same comparison."""
    from featherface_deploy.pipeline.raw_views import raw_view

    path, outcome = v1_e2e
    root = shared_path("data", "widerface-val-416")
    crowds = sorted((root / "WIDER_val" / "images").glob("*Parade*/*.jpg"))[:3]
    if not crowds:
        pytest.skip(f"no Parade (crowd) images in {root}")
    runtime = OrtRuntime.open(path)
    report = check_in_graph_parity(runtime, raw_view("onnx", path, outcome.contract), crowds)
    assert report.passed and report.numpy > 0, report.format()


def test_v1_astronaut_and_an_empty_photo(v1_e2e):
    path, _ = v1_e2e
    runtime = OrtRuntime.open(path)
    faces = runtime.detect(load_image(default_parity_images()[0]))
    assert len(faces) == 1 and faces.scores[0] > 0.99
    np.testing.assert_allclose(faces.boxes[0], [180, 60, 271, 178], atol=3)
    grey = np.full((480, 640, 3), 128, np.uint8)
    rows, count = runtime._run(letterbox(grey, runtime.contract)[0])
    assert count.tolist() == [0] and not rows.any()
    assert len(runtime.detect(grey)) == 0


def test_v1_crowd_respects_max_det(v1_e2e):
    path, _ = v1_e2e
    crowd = default_in_graph_images()[-1]
    faces = OrtRuntime.open(path).detect(crowd)
    assert 20 <= len(faces) <= 300
