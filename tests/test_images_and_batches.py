"""Images and batches (issue 24, class 6): value ranges by dtype and range, multi-frame files, a batch that
goes on past a bad entry, and inputs checked before the work."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from featherface_deploy.calibration.dataset import check_calibration_dir
from featherface_deploy.cli.main import cli
from featherface_deploy.errors import DatasetError, ImageError
from featherface_deploy.postprocess import load_image
from featherface_deploy.postprocess.image_io import ImageFramesWarning, ImageValueRangeWarning


@settings(max_examples=150, deadline=None)
@given(array=hnp.arrays(st.sampled_from([np.int32, np.int64, np.uint32, np.uint64]), (3, 4),
                        elements=st.integers(0, 70000)))
def test_wide_integer_images_are_never_silently_black(array):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImageValueRangeWarning)
        try:
            loaded = load_image(array)
        except ImageError as error:
            assert (255 < array.max() < 4096 and "neither 8-bit" in str(error)) or (
                array.max() > 65535 and "read as black" in str(error))
            return
    assert array.max() <= 255 or array.max() >= 4096
    assert (loaded.max() > 0) == (array.max() > 0)
    if array.max() <= 255:
        np.testing.assert_array_equal(loaded[:, :, 0], array)


def test_an_8_bit_image_with_one_256_in_an_int64_array_is_refused_with_the_fix():
    image = np.full((4, 4), 200, np.int64)
    image[0, 0] = 256
    with pytest.raises(ImageError, match=r"np.clip\(image, 0, 255\)"):
        load_image(image)


@pytest.mark.parametrize("suffix", [".gif", ".tiff"])
def test_multi_frame_files_say_the_first_frame_is_used(tmp_path, suffix):
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue")]
    path = tmp_path / f"two{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.warns(ImageFramesWarning, match="2 frames"):
        assert load_image(path).shape == (8, 8, 3)


def test_a_detect_batch_reports_bad_entries_and_runs_the_rest(tiny_onnx, tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64), "white").save(good)
    folder = tmp_path / "a-folder"
    folder.mkdir()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    result = CliRunner().invoke(cli, ["detect", str(folder), str(good), str(broken), str(tmp_path / "missing.jpg"),
                                      "--weights", str(tiny_onnx), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert f"{good}: 0 face(s)" in result.output or f"{good}: " in result.output
    assert "it is a folder" in result.output and "3 of 4 image(s) failed" in result.output
    assert (tmp_path / "out" / "good.png").is_file()


def test_detect_out_that_cannot_be_written_fails_before_running(tiny_onnx, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    image = tmp_path / "x.png"
    Image.new("RGB", (64, 64)).save(image)
    result = CliRunner().invoke(cli, ["detect", str(image), "--weights", str(tiny_onnx), "--out",
                                      str(blocker / "out")])
    assert result.exit_code == 1 and "runtime:" not in result.output and "not a folder" in result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_detect_out_into_a_read_only_folder_fails_before_running(tiny_onnx, tmp_path):
    image = tmp_path / "x.png"
    Image.new("RGB", (64, 64)).save(image)
    out = tmp_path / "ro"
    out.mkdir(mode=0o500)
    result = CliRunner().invoke(cli, ["detect", str(image), "--weights", str(tiny_onnx), "--out", str(out)])
    assert result.exit_code == 1 and "runtime:" not in result.output


def test_calibration_folders_are_checked_before_the_export(tiny_checkpoint, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["export", str(tiny_checkpoint), "--format", "tflite", "--int8", "--calib-dir",
                                      str(empty), "--imgsz", "64", "-o", str(tmp_path / "m.tflite")])
    assert result.exit_code == 1 and "holds no images" in result.output and "building" not in result.output
    one = tmp_path / "one"
    one.mkdir()
    Image.new("RGB", (8, 8)).save(one / "a.jpg")
    with pytest.warns(UserWarning, match="single photo"):
        assert len(check_calibration_dir(one)) == 1
    with pytest.raises(DatasetError):
        check_calibration_dir(empty)
