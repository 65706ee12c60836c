"""Thresholds and sizes: one validation for the Python API and the CLI (issue 24, class 3), property-tested."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from featherface_deploy.cli.main import cli
from featherface_deploy.detector import FaceDetector
from featherface_deploy.errors import InputError
from featherface_deploy.limits import MAX_EXPORT_PIXELS, image_size
from featherface_deploy.postprocess import PostprocessConfig

PROPERTY = settings(max_examples=200, deadline=None)
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5), st.booleans())


@PROPERTY
@given(field=st.sampled_from(["conf_threshold", "nms_iou"]), value=NUMBERS)
def test_thresholds_are_accepted_exactly_in_0_to_1(field, value):
    valid = not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1
    if valid:
        assert getattr(PostprocessConfig(**{field: value}), field) == value
    else:
        with pytest.raises(InputError, match=field):
            PostprocessConfig(**{field: value})


@PROPERTY
@given(field=st.sampled_from(["top_k", "keep_top_k"]), value=st.one_of(st.integers(-10, 10), st.floats(), st.booleans()))
def test_counts_are_integers_of_at_least_one(field, value):
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        assert getattr(PostprocessConfig(**{field: value}), field) == value
    else:
        with pytest.raises(InputError, match=field):
            PostprocessConfig(**{field: value})


@PROPERTY
@given(value=st.one_of(st.integers(-3, 3000), st.tuples(st.integers(-3, 3000), st.integers(-3, 3000)),
                       st.lists(st.integers(1, 9), max_size=3), st.floats(), st.text(max_size=3)))
def test_sizes_are_n_or_a_pair_of_positive_integers(value):
    pair = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, (tuple, list)) else None
    if pair is not None and len(pair) == 2 and all(isinstance(v, int) and v >= 1 for v in pair):
        assert image_size(value) == pair
    else:
        with pytest.raises(InputError, match="size"):
            image_size(value)


def test_the_detector_takes_an_int_size_and_refuses_zero_or_too_large(tiny_onnx):
    assert FaceDetector.load(tiny_onnx, size=64).size == (64, 64)
    for size, message in (((0, 0), "integers ≥ 1"), (640.0, "integers ≥ 1"), ((9000, 9000), "over the limit")):
        with pytest.raises(InputError, match=message):
            FaceDetector.load(tiny_onnx, size=size)
    assert FaceDetector.load(tiny_onnx, size=(9000, 9000), max_pixels=0).size == (9000, 9000)


@pytest.mark.parametrize("option", ["--conf-threshold", "--nms-iou", "--vis-threshold"])
@pytest.mark.parametrize("value", ["nan", "inf", "-0.1", "1.5"])
def test_cli_thresholds_refuse_nan_and_out_of_range(option, value, tmp_path):
    result = CliRunner().invoke(cli, ["detect", "x.jpg", "--weights", "m.onnx", option, value])
    assert result.exit_code == 2 and "finite number from 0 to 1" in result.output


def test_cli_imgsz_respects_max_pixels_and_export_refuses_huge_sizes(tiny_onnx, tiny_checkpoint, tmp_path):
    detect = CliRunner().invoke(cli, ["detect", "x.jpg", "--weights", str(tiny_onnx), "--imgsz", "4096",
                                      "--max-pixels", "1000000"])
    assert detect.exit_code == 1 and "over the limit of 1,000,000 pixels" in detect.output
    export = CliRunner().invoke(cli, ["export", str(tiny_checkpoint), "--imgsz", "99968", "-o",
                                      str(tmp_path / "x.onnx")])
    assert export.exit_code == 1 and f"limit of {MAX_EXPORT_PIXELS:,} pixels" in export.output
    assert "Traceback" not in export.output and not (tmp_path / "x.onnx").exists()
