"""The MediaPipe rows: the graph's layout, the task metadata, and the real ObjectDetector task (Python and web).

Fast tests check the in-graph adapter and the metadata without converting.
The slow ones export once per module and run the file through MediaPipe's
task in ``.venv-mediapipe`` (``python -m featherface_deploy.runtimes.mediapipe_env``)
and through ``@mediapipe/tasks-vision`` in headless Chromium
(``clients/web``; ``npm ci`` there), matched one to one against our own
decoding of the same file on the same input tensor with NMS at 0.3. Each
skips with the reason when its environment is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT, shared_path

torch = pytest.importorskip("torch")

from featherface_deploy.contract import PriorConfig  # noqa: E402
from featherface_deploy.detector import FaceDetector  # noqa: E402
from featherface_deploy.errors import BackendNotInstalledError, ExportError  # noqa: E402
from featherface_deploy.exporters.torch2mediapipe import (  # noqa: E402
    MediapipeGraph, MediapipeOptions, task_contract, task_metadata)
from featherface_deploy.formats import format_for_file, get_format  # noqa: E402
from featherface_deploy.models.registry import base_contract, create_untrained_model  # noqa: E402
from featherface_deploy.postprocess import PostprocessConfig, load_image  # noqa: E402
from featherface_deploy.postprocess.decode import decode_boxes, decode_landmarks  # noqa: E402
from featherface_deploy.postprocess.mediapipe_layout import canonical_outputs  # noqa: E402
from featherface_deploy.postprocess.preprocess import resize_bgr  # noqa: E402
from featherface_deploy.postprocess.priors import generate_priors  # noqa: E402
from featherface_deploy.runtimes.mediapipe_env import ENV_VARIABLE, task_python  # noqa: E402
from featherface_deploy.verify.task_match import match_task  # noqa: E402

PHOTO = REPO_ROOT / "featherface_deploy" / "data" / "astronaut.jpg"
CROWD = ("data", "widerface-val-416", "WIDER_val", "images", "2--Demonstration",
         "2_Demonstration_Demonstrators_2_196.jpg")  # 277 faces in the ground truth
WEB_CLIENT = REPO_ROOT / "clients" / "web"
TASK_NMS = 0.3


def _tiny(seed: int = 0):
    return create_untrained_model("featherface-tiny", seed)


def _graph_and_model(box_corners: bool, size=(64, 64)):
    model = _tiny()
    contract = base_contract("featherface-tiny")
    return MediapipeGraph(model, contract, size, box_corners).eval(), model, contract


def _rgb_input(size=(64, 64)) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (1, *size, 3)).astype(np.float32)


def test_graph_outputs_map_back_to_the_model_outputs():
    graph, model, contract = _graph_and_model(box_corners=False)
    image = _rgb_input()
    with torch.no_grad():
        out = graph(torch.from_numpy(image))
        bgr = image[..., ::-1] - np.asarray(contract.mean_bgr, np.float32)
        loc, conf, landmarks = (t.numpy() for t in model(torch.from_numpy(np.ascontiguousarray(
            bgr.transpose(0, 3, 1, 2)))))
    assert out["location"].shape == (1, loc.shape[1], 14) and out["score"].shape == (1, loc.shape[1], 1)
    roles = canonical_outputs(out["location"].numpy(), out["score"].numpy())
    np.testing.assert_allclose(roles["loc"], loc, atol=1e-5)
    np.testing.assert_allclose(roles["landmarks"], landmarks, atol=1e-5)
    np.testing.assert_allclose(roles["conf"][..., 1], conf[..., 1], atol=1e-6)
    # The task's order, not ours: YXHW box deltas, keypoints (y, x).
    np.testing.assert_allclose(out["location"].numpy()[..., 0], loc[..., 1], atol=1e-5)
    np.testing.assert_allclose(out["location"].numpy()[..., 4], landmarks[..., 1], atol=1e-5)


def _task_decode(location: np.ndarray, anchors: np.ndarray, keypoints: int) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's TensorsToDetections decoding (YXHW, exponential size, scales 10/10/5/5) in numpy."""
    cy = location[:, 0] / 10 * anchors[:, 3] + anchors[:, 1]
    cx = location[:, 1] / 10 * anchors[:, 2] + anchors[:, 0]
    h = np.exp(location[:, 2] / 5) * anchors[:, 3]
    w = np.exp(location[:, 3] / 5) * anchors[:, 2]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    points = location[:, 4:4 + 2 * keypoints].reshape(-1, keypoints, 2)
    xy = np.stack([points[..., 1] / 10 * anchors[:, None, 2] + anchors[:, None, 0],
                   points[..., 0] / 10 * anchors[:, None, 3] + anchors[:, None, 1]], axis=-1)
    return boxes, xy


def test_task_decoding_of_the_graph_gives_our_boxes_landmarks_and_exact_corners():
    graph, model, contract = _graph_and_model(box_corners=True)
    with torch.no_grad():
        out = graph(torch.from_numpy(_rgb_input()))
    location = out["location"].numpy()[0].astype(np.float64)
    anchors = generate_priors(contract.priors, 64, 64).astype(np.float64)
    boxes, points = _task_decode(location, anchors, keypoints=7)
    roles = canonical_outputs(out["location"].numpy(), out["score"].numpy())
    ours_boxes = decode_boxes(roles["loc"][0], anchors, contract.priors.variance)
    ours_points = decode_landmarks(roles["landmarks"][0], anchors, contract.priors.variance)
    np.testing.assert_allclose(boxes, ours_boxes, atol=1e-5)
    np.testing.assert_allclose(points[:, :5], ours_points, atol=1e-5)
    np.testing.assert_allclose(points[:, 5:].reshape(-1, 4), ours_boxes, atol=1e-5)  # the corner keypoints


def test_options_the_task_cannot_take_are_refused():
    from featherface_deploy.pipeline.options import split_options

    row = get_format("mediapipe")
    for option in ({"input_layout": "NCHW"}, {"float_io": False}, {"end2end": True}):  # NHWC, float I/O, task NMS
        with pytest.raises(ExportError):
            split_options(row, option)
    with pytest.raises(ExportError, match="--calib-dir"):
        MediapipeOptions().validate(get_format("mediapipe-int8"))
    contract = task_contract("featherface-tiny", MediapipeOptions(imgsz=64), "fp32")
    clipped = contract.replace(priors=PriorConfig(clip=True))
    with pytest.raises(ExportError, match="clip"):
        task_metadata(clipped, MediapipeOptions(imgsz=64))


def _require_task_python() -> Path:
    python = task_python()
    if python is None:
        pytest.skip("no MediaPipe environment: python -m featherface_deploy.runtimes.mediapipe_env")
    return python


_READ_BACK = """
import sys
from mediapipe.tasks.metadata import metadata_schema_py_generated as m
from mediapipe.tasks.metadata import object_detector_metadata_schema_py_generated as o
data = open(sys.argv[1], 'rb').read()
meta = m.ModelMetadata.GetRootAs(data, 0)
sub = meta.SubgraphMetadata(0)
inp = sub.InputTensorMetadata(0)
norm = m.NormalizationOptions(); norm.Init(inp.ProcessUnits(0).Options().Bytes, inp.ProcessUnits(0).Options().Pos)
outs = [sub.OutputTensorMetadata(i).Name().decode() for i in range(sub.OutputTensorMetadataLength())]
custom = sub.CustomMetadata(0)
det = o.ObjectDetectorOptions.GetRootAs(bytes(custom.DataAsNumpy()), 0)
dec = det.TensorsDecodingOptions()
anchors = det.SsdAnchorsOptions().FixedAnchorsSchema()
a = anchors.Anchors(1)
print(outs, norm.Mean(0), norm.Std(0), custom.Name().decode(), dec.NumBoxes(), dec.NumCoords(), dec.NumKeypoints(),
      dec.XScale(), dec.WScale(), dec.ApplyExponentialOnBoxSize(), dec.SigmoidScore(), anchors.AnchorsLength(),
      round(a.XCenter(), 6), round(a.YCenter(), 6), round(a.Width(), 6), round(a.Height(), 6))
"""


def test_metadata_reads_back_with_mediapipes_own_schema_classes(tmp_path):
    python = _require_task_python()
    options = MediapipeOptions(imgsz=64)
    metadata = task_metadata(task_contract("featherface-tiny", options, "fp32"), options)
    (tmp_path / "meta.bin").write_bytes(metadata)
    out = subprocess.run([str(python), "-c", _READ_BACK, str(tmp_path / "meta.bin")], capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    anchors = generate_priors(base_contract("featherface-tiny").priors, 64, 64)
    assert out[:2] == ["['location',", "'score']"]
    assert [float(v) for v in out[2:4]] == [0.0, 1.0] and out[4] == "DETECTOR_METADATA"
    assert [int(v) for v in out[5:8]] == [len(anchors), 14, 5]
    assert [float(v) for v in out[8:10]] == [10.0, 5.0] and out[10:12] == ["True", "False"]
    assert int(out[12]) == len(anchors)
    np.testing.assert_allclose([float(v) for v in out[13:17]], anchors[1], atol=1e-6)  # our order: row, col, size


def test_a_missing_environment_is_found_missing(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VARIABLE, str(tmp_path / "no-python"))
    assert task_python() is None


# --- through the real task (slow: one export per module) ----------------------------------------


@pytest.fixture(scope="module")
def tiny_task_file(tmp_path_factory) -> Path:
    """The tiny model exported to a 64×64 MediaPipe file with the box corners as keypoints."""
    from featherface_deploy.pipeline import export_model

    path = tmp_path_factory.mktemp("mediapipe-tiny") / "tiny.tflite"
    export_model(_tiny(), path, "mediapipe", {"imgsz": (64, 64), "box_corners": True}, require_faces=False)
    return path


def _same_tensor_pair(path: Path, image: np.ndarray, threshold: float):
    """(ours, task) on an image already at the model size: the same input tensor on both paths."""
    config = PostprocessConfig(conf_threshold=threshold, nms_iou=TASK_NMS, top_k=100_000, keep_top_k=100_000)
    ours = FaceDetector.load(path, config=config, raw=True)(image)
    task = FaceDetector.load(path, config=config)
    found = task(image)
    task.runtime.close()
    return ours, found


@pytest.mark.slow
def test_tiny_file_opens_with_the_task_and_raw_and_the_cli_names_the_runtime(tiny_task_file, monkeypatch):
    from click.testing import CliRunner

    from featherface_deploy.cli.main import cli
    from featherface_deploy.runtimes.mediapipe_runtime import MediapipeRuntime

    assert format_for_file(tiny_task_file).name == "mediapipe"
    assert FaceDetector.load(tiny_task_file, raw=True).runtime.name == "litert"
    _require_task_python()
    image = resize_bgr(load_image(PHOTO), 64, 64)
    ours, task = _same_tensor_pair(tiny_task_file, image, 0.3)
    match = match_task(ours, task)
    # Random weights give many frame-filling boxes; the task clamps each box's origin to the frame and merges
    # detections whose integer boxes coincide (one detection, several categories), so it may return fewer.
    # Every one it returns is one of ours, exactly (the corners are float keypoints).
    assert match.task > 0 and match.matched == match.task and match.ours - match.task <= 0.1 * match.ours, match
    assert match.max_box_px <= 0.01 and match.max_landmark_px <= 0.01, match
    result = CliRunner().invoke(cli, ["detect", str(PHOTO), "--model", str(tiny_task_file), "--nms-iou", "0.3"])
    assert result.exit_code == 0, result.output
    assert "runtime: mediapipe-task" in result.output and "post-processing: mediapipe-task" in result.output
    raw = CliRunner().invoke(cli, ["detect", str(PHOTO), "--model", str(tiny_task_file), "--runtime", "litert"])
    assert raw.exit_code == 0 and "runtime: litert" in raw.output, raw.output
    monkeypatch.setenv(ENV_VARIABLE, "/nonexistent/python")
    with pytest.raises(BackendNotInstalledError, match="featherface_deploy.runtimes.mediapipe_env") as error:
        MediapipeRuntime(tiny_task_file)
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def v1_task_file(v1_weights, tmp_path_factory) -> Path:
    """Trained V1 at 640×640 as a MediaPipe file (integer boxes, as apps get by default)."""
    from featherface_deploy.pipeline import export_model

    path = tmp_path_factory.mktemp("mediapipe-v1") / "v1.tflite"
    export_model(v1_weights, path, "mediapipe", {})
    return path


def _photos() -> list[tuple[str, np.ndarray]]:
    return [("shipped photo", resize_bgr(load_image(PHOTO), 640, 640)),
            ("crowd photo", resize_bgr(load_image(shared_path(*CROWD)), 640, 640))]


@pytest.mark.slow
def test_v1_int8_file_runs_in_the_task_like_our_decoding_of_it(v1_weights, calibration_dir, tmp_path):
    """The INT8 file (int8 LEAKY_RELU and int8 row lookups, exporters/tflite_graph.py) runs in MediaPipe's own
    TFLite, and the task finds the faces our decoding of the same file's outputs finds."""
    from featherface_deploy.exporters.tflite_graph import op_census
    from featherface_deploy.pipeline import export_model

    _require_task_python()
    path = tmp_path / "v1-int8.tflite"
    export_model(v1_weights, path, "mediapipe-int8", {"box_corners": True, "calib_dir": calibration_dir,
                                                      "calib_images": 24, "search": False})
    census = op_census(path.read_bytes())
    assert census["LEAKY_RELU:INT8"] > 0 and census["EMBEDDING_LOOKUP:INT8"] > 0
    for name, image in _photos():
        ours, task = _same_tensor_pair(path, image, 0.1)
        match = match_task(ours, task)
        # Two TFLite builds run the int8 kernels (LiteRT's XNNPACK for ours, MediaPipe's own in the task) and may
        # round a few steps apart; a step of the int8 location outputs is pixels at 640×640. Measured at 0.1:
        # shipped photo 1/1 matched, crowd 74 of 76/75; boxes ≤ 3.2 px, landmarks ≤ 2.8 px, scores ≤ 4/256.
        assert match.task > 0 and match.rate >= 0.9, (name, match)
        assert match.max_box_px <= 5.0 and match.max_landmark_px <= 5.0 and match.max_score_diff <= 0.03, (name, match)


# The WIDER protocol's threshold: on the crowd photo, hundreds of candidates go through both NMSes.
THRESHOLD = 0.02


@pytest.mark.slow
def test_v1_python_task_matches_our_decoding_one_to_one(v1_task_file):
    _require_task_python()
    for label, image in _photos():
        ours, task = _same_tensor_pair(v1_task_file, image, THRESHOLD)
        match = match_task(ours, task)
        assert match.ours > 0, label
        assert match.rate >= 0.99, (label, match)
        assert match.max_landmark_px <= 0.5 and match.max_score_diff <= 1e-4, (label, match)
        # The task truncates the box origin and size to integer pixels: each corner moves by less than 2 px.
        assert match.max_box_px < 2.0, (label, match)


def _web_task(model: Path, image_bgr: np.ndarray, threshold: float, tmp_path: Path) -> list:
    node, chromium = shutil.which("node"), shutil.which("chromium") or "/usr/bin/chromium"
    if node is None or not Path(chromium).exists():
        pytest.skip("the web check needs node and Debian's chromium (apt-get install -y chromium)")
    if not (WEB_CLIENT / "node_modules" / "@mediapipe" / "tasks-vision").is_dir():
        pytest.skip("the web check needs `npm ci` in clients/web (@mediapipe/tasks-vision, playwright-core)")
    pixels = tmp_path / "pixels.rgb"
    pixels.write_bytes(np.ascontiguousarray(image_bgr[..., ::-1]).tobytes())
    out = subprocess.run([node, str(WEB_CLIENT / "detect.mjs"), str(model), str(pixels), str(image_bgr.shape[1]),
                          str(image_bgr.shape[0]), str(threshold)], capture_output=True, text=True, timeout=300,
                         env={"CHROMIUM": chromium, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:] + out.stdout[-2000:]
    return json.loads(out.stdout)["detections"]


@pytest.mark.slow
def test_v1_web_task_gives_the_python_tasks_detections(v1_task_file, tmp_path):
    from featherface_deploy.runtimes.mediapipe_runtime import detections_from_task

    _require_task_python()
    task = FaceDetector.load(v1_task_file, config=PostprocessConfig(conf_threshold=THRESHOLD, nms_iou=TASK_NMS,
                                                                    keep_top_k=100_000))
    for label, image in _photos():
        rows = _web_task(v1_task_file, image, THRESHOLD, tmp_path)
        web = detections_from_task(rows, image.shape[:2], 5, box_corners=False)
        match = match_task(task(image), web)
        assert match.ours > 0 and match.rate >= 0.99, (label, match)
        assert match.max_box_px <= 1.0 and match.max_landmark_px <= 0.5 and match.max_score_diff <= 1e-4, (
            label, match)
