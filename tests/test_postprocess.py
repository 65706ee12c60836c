"""Shared numpy pre/post-processing: decode, NMS, priors, preprocessing, image loading."""

import importlib

import numpy as np
import pytest
from PIL import Image

from featherface_deploy.contract import DecodeContract, PriorConfig
from featherface_deploy.errors import ImageError
from featherface_deploy.postprocess import (
    Detections,
    PostprocessConfig,
    Transform,
    decode_boxes,
    decode_image,
    decode_landmarks,
    generate_priors,
    load_image,
    nms,
    preprocess,
)

VARIANCE = (0.1, 0.2)


def test_decode_boxes_hand_computed():
    priors = np.array([[0.5, 0.5, 0.2, 0.1]], np.float32)
    loc = np.array([[1.0, -2.0, np.log(2) / 0.2, 0.0]], np.float32)
    # cx = 0.5 + 1·0.1·0.2 = 0.52; cy = 0.5 − 2·0.1·0.1 = 0.48; w = 0.2·2 = 0.4; h = 0.1
    np.testing.assert_allclose(decode_boxes(loc, priors, VARIANCE), [[0.32, 0.43, 0.72, 0.53]], atol=1e-6)


def test_decode_landmarks_hand_computed():
    priors = np.array([[0.5, 0.25, 0.2, 0.4]], np.float32)
    deltas = np.array([[1, 1, -1, 0, 0, 2, 5, -5, 0, 0]], np.float32)
    expected = [[[0.52, 0.29], [0.48, 0.25], [0.5, 0.33], [0.6, 0.05], [0.5, 0.25]]]
    np.testing.assert_allclose(decode_landmarks(deltas, priors, VARIANCE), expected, atol=1e-6)


def test_priors_order_and_count():
    priors = generate_priors(PriorConfig(), 64, 96)
    assert priors.shape == (2 * (8 * 12 + 4 * 6 + 2 * 3), 4)
    # First level, row 0, column 0, both sizes; then column 1.
    np.testing.assert_allclose(priors[0], [4 / 96, 4 / 64, 16 / 96, 16 / 64])
    np.testing.assert_allclose(priors[1], [4 / 96, 4 / 64, 32 / 96, 32 / 64])
    np.testing.assert_allclose(priors[2, :2], [12 / 96, 4 / 64])
    assert not priors.flags.writeable
    assert generate_priors(PriorConfig(), 64, 96) is priors  # cached per size


def test_priors_use_ceil_feature_sizes():
    assert len(generate_priors(PriorConfig(), 405, 491)) == 2 * (51 * 62 + 26 * 31 + 13 * 16)


def _brute_force_nms(boxes, scores, threshold):
    def iou(a, b):
        inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union

    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        if all(iou(boxes[i], boxes[k]) <= threshold for k in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed,count", [(0, 300), (1, 300), (2, 700), (3, 5), (4, 257)])
def test_nms_matches_brute_force(seed, count):
    # Counts above the block size exercise suppression across blocks.
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (count, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (count, 2))], axis=1)
    scores = rng.permutation(count) / count  # distinct scores: a unique answer
    for threshold in (0.3, 0.4, 0.7):
        assert nms(boxes, scores, threshold).tolist() == _brute_force_nms(boxes, scores, threshold)


def test_nms_of_nothing():
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.4).shape == (0,)


def test_decode_image_maps_back_to_original_pixels():
    contract = DecodeContract(model_name="test")
    priors = generate_priors(contract.priors, 32, 32)
    loc = np.zeros((len(priors), 4), np.float32)
    conf = np.zeros((len(priors), 2), np.float32)
    conf[:, 0] = 1
    conf[0] = [0.1, 0.9]  # the first prior: centre (4, 4), size 16 in the 32×32 input
    faces = decode_image(loc, conf, np.zeros((len(priors), 10), np.float32), (32, 32), contract,
                         Transform(0.5, 0.25, (128, 64)))
    assert len(faces) == 1
    np.testing.assert_allclose(faces.boxes[0], [-8, -16, 24, 48], atol=1e-5)  # x / 0.5, y / 0.25
    np.testing.assert_allclose(faces.landmarks[0], [[8, 16]] * 5, atol=1e-5)


def test_no_face_gives_correctly_shaped_empty_arrays():
    contract = DecodeContract(model_name="test")
    count = len(generate_priors(contract.priors, 32, 32))
    conf = np.tile([[1.0, 0.0]], (count, 1)).astype(np.float32)
    faces = decode_image(np.zeros((count, 4), np.float32), conf, np.zeros((count, 10), np.float32), (32, 32),
                         contract, Transform(1, 1, (32, 32)), PostprocessConfig())
    assert len(faces) == 0
    assert faces.boxes.shape == (0, 4) and faces.scores.shape == (0,) and faces.landmarks.shape == (0, 5, 2)
    assert Detections.empty().to_list() == []


def test_preprocess_subtracts_bgr_mean_and_pads_to_divisor():
    contract = DecodeContract(model_name="test", size_divisor=32)
    image = np.full((40, 50, 3), (104, 117, 123), np.uint8)
    image[0, 0] = (105, 119, 126)
    tensor, transform = preprocess(image, contract)
    assert tensor.shape == (3, 64, 64) and tensor.dtype == np.float32
    np.testing.assert_array_equal(tensor[:, 0, 0], [1, 2, 3])
    assert np.count_nonzero(tensor) == 3  # padding is zero after mean subtraction
    assert transform == Transform(1.0, 1.0, (40, 50))


def test_preprocess_fixed_size_keeps_aspect_ratio():
    contract = DecodeContract(model_name="test", input_size=(64, 64))
    tensor, transform = preprocess(np.zeros((50, 100, 3), np.uint8), contract)
    assert tensor.shape == (3, 64, 64)
    assert transform.scale_x == pytest.approx(0.64) and transform.scale_y == pytest.approx(0.64)
    assert np.all(tensor[:, 32:, :] == 0) and np.all(tensor[:, :32, :] != 0)


def test_resize_with_and_without_opencv_agree(monkeypatch):
    """OpenCV (when installed) and Pillow resize alike; the AP check on WIDER FACE is in the README."""
    pytest.importorskip("cv2")
    preprocess_module = importlib.import_module("featherface_deploy.postprocess.preprocess")

    rng = np.random.default_rng(3)
    # A smooth image (as photos are): the two bilinear kernels round differently, by a level or two.
    image = np.clip(rng.normal(128, 20, (9, 12, 3)), 0, 255).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    image = np.asarray(Image.fromarray(image).resize((96, 72), Image.Resampling.BILINEAR))
    fast = {size: preprocess_module.resize_bgr(image, *size) for size in ((111, 148), (36, 48))}
    monkeypatch.setattr(preprocess_module, "_opencv", lambda: None)
    differences = {}
    for size, resized in fast.items():
        pillow = preprocess_module.resize_bgr(image, *size)
        assert resized.shape == pillow.shape == (*size, 3) and resized.dtype == np.uint8
        differences[size] = np.abs(resized.astype(int) - pillow.astype(int))
    enlarged, shrunk = differences[(111, 148)], differences[(36, 48)]
    assert enlarged.max() <= 3 and enlarged.mean() < 1.0  # both bilinear
    assert shrunk.mean() < 3.0  # area average against Pillow's antialiased bilinear: close, not equal


def test_preprocess_pads_the_right_and_bottom_only_with_zero():
    contract = DecodeContract(model_name="test", input_size=(8, 8), mean_bgr=(1.0, 2.0, 3.0))
    tensor, _ = preprocess(np.full((4, 8, 3), 10, np.uint8), contract)
    np.testing.assert_array_equal(tensor[:, :4], np.array([9.0, 8.0, 7.0], np.float32).reshape(3, 1, 1) + np.zeros((3, 4, 8)))
    assert not tensor[:, 4:].any()
    tall, _ = preprocess(np.full((8, 4, 3), 10, np.uint8), contract)
    assert tall[:, :, :4].min() == 7.0 and not tall[:, :, 4:].any()


def test_load_image_formats(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (6, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(load_image(tmp_path / "rgb.png"), rgb[:, :, ::-1])
    np.testing.assert_array_equal(load_image(rgb, color="rgb"), rgb[:, :, ::-1])
    np.testing.assert_array_equal(load_image(rgb, color="bgr"), rgb)

    Image.fromarray(np.dstack([rgb, np.zeros((6, 7), np.uint8)]), "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png"), rgb[:, :, ::-1])

    gray = rgb[:, :, 0]
    Image.fromarray(gray).save(tmp_path / "gray.png")
    assert load_image(tmp_path / "gray.png").shape == (6, 7, 3)
    np.testing.assert_array_equal(load_image(gray)[:, :, 2], gray)

    deep = (gray.astype(np.uint16) * 257)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    np.testing.assert_array_equal(load_image(tmp_path / "deep.png")[:, :, 1], gray)
    np.testing.assert_array_equal(load_image(np.dstack([deep] * 3))[:, :, 0], gray)


def test_unreadable_images_name_the_file(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageError, match="broken.jpg"):
        load_image(broken)
    with pytest.raises(ImageError, match="missing.jpg"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageError, match="dtype"):
        load_image(np.zeros((4, 4, 3), np.int8))
    with pytest.raises(ImageError, match="color"):
        load_image(np.zeros((4, 4, 3), np.uint8), color="yuv")
