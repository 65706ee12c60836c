"""Options and helpers shared by several commands."""

from __future__ import annotations

import functools
import warnings

import click

from featherface_deploy.detector import DEFAULT_MAX_PIXELS, FaceDetector
from featherface_deploy.errors import FeatherFaceError
from featherface_deploy.postprocess import PostprocessConfig


def parse_size(value: str | None) -> tuple[int, int] | None:
    """Parses ``640`` or ``480x640`` (height × width) into a (height, width) tuple."""
    if value is None:
        return None
    parts = value.lower().split("x")
    try:
        sizes = [int(part) for part in parts]
    except ValueError:
        raise click.BadParameter(f"expected N or HxW, got {value!r}") from None
    if len(sizes) not in (1, 2) or min(sizes) <= 0:
        raise click.BadParameter(f"expected N or HxW with positive sizes, got {value!r}")
    return (sizes[0], sizes[-1])


def model_options(command):
    """Adds the options that choose a model and its detection thresholds."""
    decorators = [
        click.option("--weights", "--model", "model", required=True, type=click.Path(dir_okay=False),
                     help="Checkpoint (.pth) or exported model (.onnx, .tflite, …)."),
        click.option("--conf-threshold", default=PostprocessConfig.conf_threshold, show_default=True,
                     type=click.FloatRange(0, 1), help="Minimum face probability."),
        click.option("--nms-iou", default=PostprocessConfig.nms_iou, show_default=True,
                     type=click.FloatRange(0, 1), help="NMS IoU threshold."),
        click.option("--imgsz", default=None, help="Resize images to fit N or HxW (any-size models only); "
                     "default: native resolution."),
        click.option("--threads", default=None, type=click.IntRange(1),
                     help="Inference threads (capped at the usable CPU cores, with a warning)."),
        click.option("--max-pixels", default=DEFAULT_MAX_PIXELS, show_default=True, type=click.IntRange(0),
                     help="Refuse images larger than this (height × width) at native resolution; 0 = no limit."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def build_detector(model: str, conf_threshold: float, nms_iou: float, imgsz: str | None,
                   threads: int | None, max_pixels: int) -> FaceDetector:
    """Opens a model with the CLI's thresholds."""
    config = PostprocessConfig(conf_threshold=conf_threshold, nms_iou=nms_iou)
    options = {} if threads is None else {"threads": threads}
    return FaceDetector.load(model, config=config, size=parse_size(imgsz), max_pixels=max_pixels, **options)


def friendly_errors(command):
    """Turns project errors into a one-line CLI error (exit status 1) instead of a traceback.

    Warnings (a capped thread count, an odd image value range) are printed as
    one ``Warning:`` line on stderr.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.showwarning = _echo_warning
            try:
                return command(*args, **kwargs)
            except FeatherFaceError as error:
                raise click.ClickException(str(error)) from error

    return wrapper


def _echo_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"Warning: {message}", err=True)
