"""FeatherFace V1 (the trained checkpoint) through Core ML: export at 320×320, then WIDER FACE through the
converted program (on Linux the reference interpreter) against PyTorch on the same images."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import export_row, requires_backend

requires_backend("coreml", "export")

from featherface_deploy import FaceDetector  # noqa: E402
from featherface_deploy.evaluation import evaluate_widerface  # noqa: E402
from featherface_deploy.models import load_model  # noqa: E402
from featherface_deploy.runtimes.coreml_runtime import INTERPRETER_NAME, CoremlRuntime, coreml_available  # noqa: E402
from featherface_deploy.runtimes.torch_runtime import TorchRuntime  # noqa: E402

SIZE = (320, 320)
IMAGES = 6


@pytest.mark.slow  # one V1 conversion (about 60-90 s on 2 busy cores) and 12 inferences at 320
def test_v1_package_evaluates_like_pytorch(v1_weights, widerface_root, calibration_dir, tmp_path):
    photos = sorted(calibration_dir.glob("*.jpg"))[:2]
    result = export_row(v1_weights, tmp_path / "v1.mlpackage", "coreml", parity_images=photos, imgsz=SIZE)
    assert result.parity.passed and result.parity.reference_detections > 0 and result.parity.match_rate == 1.0
    runtime = CoremlRuntime(result.path)
    assert runtime.name == ("coreml" if coreml_available() else INTERPRETER_NAME)
    model = load_model(v1_weights).model
    got = evaluate_widerface(FaceDetector(runtime), widerface_root, limit=IMAGES)
    want = evaluate_widerface(FaceDetector(TorchRuntime(model), size=SIZE), widerface_root, limit=IMAGES)
    assert got.images == want.images == IMAGES
    for setting, value in want.ap.percentages.items():
        assert got.ap.percentages[setting] == pytest.approx(value, abs=0.1), setting
    assert want.ap.percentages["easy"] > 10  # the trained model finds faces at 320
    for key, faces in want.predictions.items():
        found = got.predictions[key]
        assert len(found) == len(faces), key
        np.testing.assert_allclose(found, faces, atol=0.05)
