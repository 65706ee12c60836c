"""The sanity results of the shared checkpoints' documentation, through the public API."""

import numpy as np
import pytest
import skimage.data

from featherface_deploy import FaceDetector

EXPECTED = {
    "featherface-v1": ([180, 60, 271, 178], 0.9996),
    "featherface-v2-ca": ([178, 60, 271, 176], 0.9994),
}
V1_LANDMARKS = [[203, 100], [248, 102], [224, 128], [202, 138], [246, 139]]


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def detector(request):
    from conftest import shared_path

    return request.param, FaceDetector.load(shared_path("weights", f"{request.param}.pth"))


def test_astronaut_has_exactly_one_face(detector):
    name, model = detector
    faces = model(skimage.data.astronaut(), color="rgb")
    box, score = EXPECTED[name]
    assert len(faces) == 1
    np.testing.assert_allclose(faces.boxes[0], box, atol=1.5)
    assert faces.scores[0] == pytest.approx(score, abs=2e-4)
    if name == "featherface-v1":
        np.testing.assert_allclose(faces.landmarks[0], V1_LANDMARKS, atol=1.5)


@pytest.mark.parametrize("image", ["coffee", "chelsea", "rocket"])
def test_face_free_images_have_no_confident_anchor(detector, image):
    _, model = detector
    faces = model(getattr(skimage.data, image)(), color="rgb")
    assert faces.scores.max(initial=0.0) < 0.5


def test_same_image_as_bgr_path_and_rgb_array(detector, tmp_path):
    from PIL import Image

    _, model = detector
    rgb = skimage.data.astronaut()
    Image.fromarray(rgb).save(tmp_path / "astronaut.png")
    from_file = model(tmp_path / "astronaut.png")
    from_array = model(rgb[:, :, ::-1])  # BGR array, the default
    np.testing.assert_allclose(from_file.boxes, from_array.boxes)
