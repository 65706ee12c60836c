"""Image loading that is never silently wrong: EXIF, value ranges, odd but valid files, non-files, size limits."""

from __future__ import annotations

import os
import struct
import threading
import warnings
import zlib

import numpy as np
import pytest
import skimage.data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from featherface_deploy.errors import ImageError
from featherface_deploy.postprocess import load_image
from featherface_deploy.postprocess.image_io import EXIF_ORIENTATION, ImageValueRangeWarning

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _save_with_orientation(array: np.ndarray, path, orientation: int, **options) -> None:
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[EXIF_ORIENTATION] = orientation
    image.save(path, exif=exif, **options)


def test_exif_orientation_is_applied_to_files(tmp_path):
    upright = np.random.default_rng(0).integers(0, 255, (5, 8, 3), dtype=np.uint8)
    # Orientation 6 = "rotate 90° clockwise to view": the file stores the upright image turned counter-clockwise.
    _save_with_orientation(np.rot90(upright, k=1).copy(), tmp_path / "phone.png", 6)
    np.testing.assert_array_equal(load_image(tmp_path / "phone.png"), upright[:, :, ::-1])


def test_sideways_phone_photo_gives_boxes_in_the_upright_frame(tmp_path, v1_weights):
    from featherface_deploy import FaceDetector

    upright = skimage.data.astronaut()
    _save_with_orientation(np.rot90(upright, k=1).copy(), tmp_path / "phone.jpg", 6, quality=95)
    Image.fromarray(upright).save(tmp_path / "upright.jpg", quality=95)
    detector = FaceDetector.load(v1_weights, size=(320, 320))
    sideways, straight = detector(tmp_path / "phone.jpg"), detector(tmp_path / "upright.jpg")
    assert len(sideways) == len(straight) == 1
    np.testing.assert_allclose(sideways.boxes, straight.boxes, atol=4)


def test_float_images_in_0_1_are_refused_with_the_fix():
    with pytest.raises(ImageError, match=r"0–1.*image \* 255"):
        load_image(np.full((8, 8, 3), 0.5, np.float32))
    with pytest.raises(ImageError, match="mean-subtracted"):
        load_image(np.full((8, 8, 3), -104.0, np.float32))
    np.testing.assert_array_equal(load_image(np.full((2, 2, 3), 200.0, np.float32)), 200)


def test_uint16_holding_8_bit_values_warns_and_is_read_as_8_bit():
    values = np.random.default_rng(1).integers(1, 256, (6, 6, 3)).astype(np.uint16)
    with pytest.warns(ImageValueRangeWarning, match="only 0–255 values"):
        loaded = load_image(values)
    np.testing.assert_array_equal(loaded, values.astype(np.uint8))


def test_32_bit_integer_tiff_is_read_by_its_value_range(tmp_path):
    gray = np.random.default_rng(2).integers(1, 256, (5, 7)).astype(np.int32)
    Image.fromarray(gray).save(tmp_path / "i32.tif")
    with pytest.warns(ImageValueRangeWarning):
        loaded = load_image(tmp_path / "i32.tif")
    np.testing.assert_array_equal(loaded[:, :, 0], gray)
    Image.fromarray(gray * 257).save(tmp_path / "i32-16bit-values.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(load_image(tmp_path / "i32-16bit-values.tif")[:, :, 1], gray)


def test_gray_alpha_png_is_accepted(tmp_path):
    gray = np.random.default_rng(3).integers(0, 256, (5, 6), dtype=np.uint8)
    Image.fromarray(np.dstack([gray, np.full_like(gray, 128)]), "LA").save(tmp_path / "la.png")
    loaded = load_image(tmp_path / "la.png")
    assert loaded.shape == (5, 6, 3)
    np.testing.assert_array_equal(loaded[:, :, 2], gray)


def test_named_pipe_is_refused_instead_of_hanging(tmp_path):
    pipe = tmp_path / "camera.jpg"
    os.mkfifo(pipe)
    outcome = []

    def read():
        try:
            load_image(pipe)
        except ImageError as error:
            outcome.append(str(error))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=5)
    assert outcome and "named pipe" in outcome[0]
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG that claims ``width`` × ``height`` pixels (Pillow reads the size before any pixel)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_decompression_bomb_is_one_line_error(tmp_path):
    _png_header_only(tmp_path / "bomb.png", 20_000, 20_000)
    with pytest.raises(ImageError, match=r"refusing to decode .*bomb.png.*MAX_IMAGE_PIXELS"):
        load_image(tmp_path / "bomb.png")


def test_native_resolution_size_limit(tiny_checkpoint):
    from featherface_deploy import FaceDetector

    image = np.zeros((64, 96, 3), np.uint8)
    with pytest.raises(ImageError, match=r"96×64 image .* over the 0.001 MP limit.*size=\(H, W\)"):
        FaceDetector.load(tiny_checkpoint, max_pixels=1000)(image)
    assert len(FaceDetector.load(tiny_checkpoint, max_pixels=1000, size=(30, 30))(image).scores) >= 0
    assert FaceDetector.load(tiny_checkpoint, max_pixels=0)(image).boxes.shape[1] == 4


_ARRAYS = st.one_of(
    hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.int32]), hnp.array_shapes(min_dims=2, max_dims=2,
                                                                                min_side=1, max_side=12)),
    hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.float32, np.float64]),
               st.tuples(st.integers(1, 12), st.integers(1, 12), st.sampled_from([1, 2, 3, 4, 5]))),
)


@PROPERTY
@given(array=_ARRAYS, color=st.sampled_from(["bgr", "rgb"]))
def test_property_arrays_load_or_are_refused_cleanly(array, color):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImageValueRangeWarning)
        try:
            loaded = load_image(array, color=color)
        except ImageError:
            return
    assert loaded.dtype == np.uint8 and loaded.shape == (*array.shape[:2], 3) and loaded.flags.c_contiguous
    if array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] >= 3:
        expected = array[:, :, :3] if color == "bgr" else array[:, :, 2::-1]
        np.testing.assert_array_equal(loaded, expected)


@PROPERTY
@given(pixels=hnp.arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9), st.sampled_from([1, 3, 4]))),
       orientation=st.integers(1, 8))
def test_property_files_are_upright_by_exif(tmp_path, pixels, orientation):
    array = pixels[:, :, 0] if pixels.shape[2] == 1 else pixels
    path = tmp_path / "image.png"
    _save_with_orientation(array, path, orientation)
    loaded = load_image(path)
    height, width = pixels.shape[:2]
    assert loaded.shape == ((width, height, 3) if orientation >= 5 else (height, width, 3))
    if orientation == 1:
        rgb = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels[:, :, :3]
        np.testing.assert_array_equal(loaded, rgb[:, :, ::-1])
