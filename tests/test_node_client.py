"""The Node.js client (clients/node) runs the end-to-end ONNX file and finds what the Python runtime finds.

It needs node, and the client's packages installed from its lock file
(``ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci --prefix clients/node``, which ``.ci/run`` does);
without them the tests skip with the reason. The comparison images are binary PPM files
(lossless, so both sides see the same pixels) already at or under the model's input size (so
neither side resizes): the shipped photo, a crop that leaves padding, and a crowd.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from conftest import REPO_ROOT, TINY_E2E_SETTINGS  # noqa: E402

from featherface_deploy.postprocess import load_image  # noqa: E402
from featherface_deploy.verify.photos import default_parity_images  # noqa: E402

CLIENT = REPO_ROOT / "clients" / "node"
INSTALL = "ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci --prefix clients/node"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the Node.js client test needs Node ≥ 18)")
    if not (CLIENT / "node_modules" / "onnxruntime-node").is_dir() or not (CLIENT / "node_modules" / "jpeg-js").is_dir():
        pytest.skip(f"the Node.js client's packages are not installed: run `{INSTALL}`")
    return node


def _write_ppm(path, rgb: np.ndarray) -> None:
    height, width = rgb.shape[:2]
    path.write_bytes(f"P6\n{width} {height}\n255\n".encode() + np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())


def _thumbnail(bgr: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(bgr[:, :, ::-1]).resize((width, height), Image.Resampling.BILINEAR))


@pytest.fixture(scope="module")
def ppm_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ppm")
    photo = load_image(default_parity_images()[0])
    images = {"photo.ppm": _thumbnail(photo, 64, 64),
              "crop.ppm": _thumbnail(photo, 64, 64)[8:56],  # 48×64: the letterbox pads the bottom
              "crowd.ppm": np.tile(_thumbnail(photo, 16, 16), (4, 4, 1))}
    paths = []
    for name, rgb in images.items():
        _write_ppm(folder / name, rgb)
        paths.append(folder / name)
    return paths


def _run(node, model, images) -> list[dict]:
    completed = subprocess.run([node, str(CLIENT / "detect.js"), str(model), *map(str, images)],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_node_client_equals_python_runtime(tiny_e2e_onnx, ppm_images):
    from featherface_deploy.detector import FaceDetector

    node = _node()
    model, _ = tiny_e2e_onnx
    detector = FaceDetector.load(model)
    results = _run(node, model, ppm_images)
    assert [r["image"] for r in results] == [str(p) for p in ppm_images]
    for result, path in zip(results, ppm_images):
        faces = detector(path)
        assert 0 < len(result["faces"]) == len(faces) <= TINY_E2E_SETTINGS["max_det"], path.name
        got = result["faces"]
        np.testing.assert_allclose([f["box"] for f in got], faces.boxes, atol=1e-3)
        np.testing.assert_allclose([f["score"] for f in got], faces.scores, atol=1e-6)
        np.testing.assert_allclose([f["landmarks"] for f in got], faces.landmarks, atol=1e-3)


def test_node_client_reads_a_jpeg(tiny_e2e_onnx):
    """The shipped JPEG through jpeg-js and the client's own resize: a well-formed answer in the photo's pixels."""
    node = _node()
    model, _ = tiny_e2e_onnx
    [result] = _run(node, model, default_parity_images())
    assert (result["width"], result["height"]) == (512, 512)
    assert 0 < len(result["faces"]) <= TINY_E2E_SETTINGS["max_det"]
    assert all(len(face["box"]) == 4 and len(face["landmarks"]) == 5 for face in result["faces"])


RUNNER = """
const fs = require('fs');
const ort = require('onnxruntime-node');
const { detectFaces } = require('./snippet.js');
(async () => {
  const [model, ...images] = process.argv.slice(2);
  const contract = JSON.parse(fs.readFileSync(model + '.json', 'utf8'));
  const session = await ort.InferenceSession.create(model);
  const results = [];
  for (const file of images) {  // binary PPM already within the input size: no resize (step 1 is the identity)
    const text = fs.readFileSync(file);
    const [, width, height] = text.subarray(0, 20).toString('latin1').split(/\\s+/).map(Number);
    const header = `P6\\n${width} ${height}\\n255\\n`.length;
    results.push(await detectFaces(session, contract, text.subarray(header), width, height, width, height));
  }
  process.stdout.write(JSON.stringify(results));
})();
"""


def test_documented_javascript_snippet_equals_python_runtime(tiny_e2e_onnx, ppm_images, tmp_path):
    """The JavaScript block of docs/guides/end-to-end.md, run as written, finds what the Python runtime finds."""
    import os
    import re

    from featherface_deploy.detector import FaceDetector

    node = _node()
    guide = (REPO_ROOT / "docs" / "guides" / "end-to-end.md").read_text()
    [snippet] = re.findall(r"^```javascript\n(.*?)^```", guide, re.DOTALL | re.MULTILINE)
    (tmp_path / "snippet.js").write_text(snippet)
    (tmp_path / "runner.js").write_text(RUNNER)
    model, _ = tiny_e2e_onnx
    images = ppm_images
    completed = subprocess.run([node, str(tmp_path / "runner.js"), str(model), *map(str, images)],
                               capture_output=True, text=True, timeout=120,
                               env={**os.environ, "NODE_PATH": str(CLIENT / "node_modules")})
    assert completed.returncode == 0, completed.stderr
    detector = FaceDetector.load(model)
    for got, path in zip(json.loads(completed.stdout), images):
        faces = detector(path)
        assert 0 < len(got) == len(faces), path.name
        np.testing.assert_allclose([f["box"] for f in got], faces.boxes, atol=1e-3)
        np.testing.assert_allclose([f["landmarks"] for f in got], faces.landmarks, atol=1e-3)
