"""End-to-end TFLite and Core ML files on the tiny model, through the export pipeline.

The pipeline writes a file only after its raw view passed the parity gate and its
in-graph detections matched our numpy post-processing of the same graph's raw
outputs (FP32: one-to-one) on the parity photos and a crowd. The tiny model's face
probability is about 0.5 everywhere whatever the image, so ``conf=0.02`` fills all
``max_det`` rows (the crowd case) and ``conf=0.9`` leaves none (the no-face case:
``num_detections`` 0, empty detections).
"""

from __future__ import annotations

import numpy as np
import pytest

from featherface_deploy.detector import FaceDetector
from featherface_deploy.postprocess import load_image
from featherface_deploy.runtimes.in_graph import letterbox
from featherface_deploy.verify.in_graph import crowd_photo
from featherface_deploy.verify.photos import default_parity_images

SIZE = (96, 128)
MAX_DET = 20
FORMATS = {"tflite": "tiny-e2e.tflite", "coreml": "tiny-e2e.mlpackage"}

pytestmark = pytest.mark.slow


def _export(checkpoint, folder, fmt: str, conf: float):
    pytest.importorskip("litert_torch" if fmt == "tflite" else "coremltools")
    from featherface_deploy.pipeline import export_model

    return export_model(checkpoint, folder / FORMATS[fmt], fmt,
                        {"end2end": True, "imgsz": SIZE, "max_det": MAX_DET, "conf": conf})


@pytest.fixture(scope="module", params=sorted(FORMATS))
def crowded(request, tiny_checkpoint, tmp_path_factory):
    return _export(tiny_checkpoint, tmp_path_factory.mktemp(request.param), request.param, 0.02)


def test_in_graph_parity_passed_and_contract_says_in_graph(crowded):
    assert crowded.in_graph is not None and crowded.in_graph.passed
    assert crowded.in_graph.matched == crowded.in_graph.numpy == crowded.in_graph.in_graph > 0
    assert crowded.contract.postprocess == "in-graph"
    assert crowded.contract.end2end.max_det == MAX_DET


def test_crowd_gives_at_most_max_det(crowded):
    detector = FaceDetector.load(crowded.path)
    assert detector.runtime.postprocess == "in-graph"
    faces = detector(crowd_photo(load_image(default_parity_images()[0])))
    assert len(faces) == MAX_DET  # every candidate clears conf=0.02: the rows are full, never more
    assert np.all(np.diff(faces.scores) <= 0)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_no_face_gives_zero_detections(fmt, tiny_checkpoint, tmp_path):
    outcome = _export(tiny_checkpoint, tmp_path, fmt, 0.9)
    detector = FaceDetector.load(outcome.path)
    image = load_image(default_parity_images()[0])
    tensor, _ = letterbox(image, detector.runtime.contract)
    rows, count = detector.runtime._run(tensor)
    assert int(np.asarray(count).reshape(-1)[0]) == 0 and not np.asarray(rows).any()
    assert len(detector(image)) == 0


def test_tflite_end2end_ops_are_builtin(crowded):
    if crowded.row.family != "tflite":
        pytest.skip("TFLite op list")
    from featherface_deploy.exporters.tflite_graph import op_census

    census = op_census(crowded.path.read_bytes())
    assert not [name for name in census if name.startswith("CUSTOM")], census
    assert census["NON_MAX_SUPPRESSION_V5:INT32"] == 1


def test_raw_runtime_refuses_an_end2end_file(crowded):
    from featherface_deploy.errors import ContractError
    from featherface_deploy.formats import get_format, resolve

    runtime_class = resolve(get_format(crowded.row.name).runtime)
    with pytest.raises(ContractError, match="end-to-end"):
        runtime_class(crowded.path)
