"""Options and helpers shared by several commands."""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings

import click

from featherface_deploy.detector import DEFAULT_MAX_PIXELS, FaceDetector
from featherface_deploy.errors import FeatherFaceError, InputError
from featherface_deploy.formats import FORMATS, format_for_file, format_for_path
from featherface_deploy.limits import bounded
from featherface_deploy.option_fields import parse_size as size_from_text
from featherface_deploy.postprocess import PostprocessConfig

COREML_ENGINES = ("auto", "coreml", "interpreter")
COMPUTE_UNITS = ("all", "cpu", "cpu-and-ne", "cpu-and-gpu")
RUNTIME_CHOICES = ("auto", "litert")


def parse_size(value: str | None) -> tuple[int, int] | None:
    """Parses ``640`` or ``480x640`` (height × width) into a (height, width) tuple."""
    if value is None:
        return None
    try:
        return size_from_text(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


class Number(click.ParamType):
    """A finite number from ``low`` to ``high``, checked by :func:`~featherface_deploy.limits.bounded`
    (the Python API's own check): NaN and infinities are refused like any out-of-range value."""

    name = "number"

    def __init__(self, low: float, high: float | None = None) -> None:
        self.low, self.high = low, high

    def convert(self, value, param, ctx):
        """Parses and checks the value; a bad one is a usage error naming the option."""
        try:
            return bounded(param.opts[-1] if param else "value", float(value), self.low, self.high)
        except (InputError, ValueError):
            span = f"from {self.low:g} to {self.high:g}" if self.high is not None else f"≥ {self.low:g}"
            self.fail(f"expected a finite number {span}, got {value!r}", param, ctx)


PROBABILITY = Number(0.0, 1.0)


class ModelPath(click.Path):
    """A model file, or a folder where the format is one that its runtime opens (a Core ML ``.mlpackage``).

    Any other folder is refused with a one-line usage error that says which folders are models.
    """

    def __init__(self, exists: bool = False) -> None:
        super().__init__(exists=exists, dir_okay=True)

    def convert(self, value, param, ctx):
        """Checks the path like ``click.Path``, then refuses folders that are not model packages."""
        path = super().convert(value, param, ctx)
        if os.path.isdir(path) and os.path.splitext(str(path).rstrip("/\\"))[1].lower() not in folder_suffixes():
            self.fail(f"{path} is a folder; the only models that are folders are "
                      f"{', '.join(folder_suffixes())} packages (give a model file, or the package)", param, ctx)
        return path


def folder_suffixes() -> tuple[str, ...]:
    """Suffixes of the formats whose file is a folder that the runtime opens as it is (``.mlpackage``)."""
    return tuple(dict.fromkeys(suffix for row in FORMATS if row.directory and not row.verify_entry
                               for suffix in row.suffixes if suffix))


def runtime_line(runtime) -> str:
    """``runtime: NAME`` plus the runtime's note when it is a stand-in (every report says what ran).

    A model with random weights (``export --random-init``) gets a second line saying so, and one whose
    post-processing ran elsewhere than our numpy code (an end-to-end file: ``in-graph``) says where.
    """
    untrained = runtime.contract.weights_note()
    return f"runtime: {runtime.name}" + (f" ({runtime.note})" if runtime.note else "") + (
        f"\npost-processing: {postprocess_line(runtime)}" if runtime.postprocess != "numpy" else "") + (
        f"\n{untrained}" if untrained else "")


def postprocess_line(runtime) -> str:
    """Where decoding and NMS ran, with the baked settings of an end-to-end file (for reports)."""
    spec = runtime.contract.end2end
    if spec is None:
        return runtime.postprocess
    return (f"{runtime.postprocess} (conf ≥ {spec.conf:g}, NMS IoU {spec.nms_iou:g}, pre-NMS top-k "
            f"{spec.pre_nms_top_k}, max {spec.max_det} faces)")


def model_options(command):
    """Adds the options that choose a model, its engine and its detection thresholds."""
    decorators = [
        click.option("--weights", "--model", "model", required=True, type=ModelPath(),
                     help="Checkpoint (.pth), exported model (.onnx, .tflite, …) or Core ML package (.mlpackage)."),
        click.option("--coreml-engine", default="auto", show_default=True, type=click.Choice(COREML_ENGINES),
                     help=".mlpackage only: Core ML (macOS), the numpy reference interpreter, or auto "
                          "(Core ML where it exists, else the interpreter; the output says which ran)."),
        click.option("--compute-units", default="all", show_default=True, type=click.Choice(COMPUTE_UNITS),
                     help=".mlpackage with Core ML only: the processors Core ML may use."),
        click.option("--runtime", "runtime_choice", default="auto", show_default=True,
                     type=click.Choice(RUNTIME_CHOICES),
                     help="A MediaPipe-task .tflite: auto = through MediaPipe's ObjectDetector task, litert = its raw "
                          "outputs through LiteRT with our decoding and NMS."),
        click.option("--conf-threshold", default=None, type=PROBABILITY,
                     help=f"Minimum face probability [{PostprocessConfig.conf_threshold}; an end-to-end model: "
                          "the one it was exported with, which may only be raised]."),
        click.option("--nms-iou", default=None, type=PROBABILITY,
                     help=f"NMS IoU threshold [{PostprocessConfig.nms_iou}; an end-to-end model: the one it was "
                          "exported with, which cannot change]."),
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


def exist_ok_option(command):
    """Adds ``--exist-ok``: the one switch that lets a command replace an existing output (see :mod:`featherface_deploy.outputs`)."""
    return click.option("--exist-ok", is_flag=True,
                        help="Replace an existing output (atomically, at the end); never an input.")(command)


def random_init_options(command):
    """Adds ``--architecture``, ``--random-init`` and ``--seed`` (an untrained model instead of a checkpoint)."""
    decorators = [
        click.option("--architecture", default=None, help="Architecture name (detected from the keys if omitted)."),
        click.option("--random-init", is_flag=True,
                     help="No checkpoint: --architecture NAME with random weights (an UNTRAINED model, flagged so "
                          "in every contract and report), to measure what the architecture costs before training."),
        click.option("--seed", default=None, type=click.IntRange(0), help="--random-init: the weights' seed [0]."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def untrained_seed(checkpoint: str | None, architecture: str | None, random_init: bool,
                   seed: int | None) -> int | None:
    """The seed of the untrained model ``--random-init`` asks for, or ``None`` for ``checkpoint``.

    Raises:
        click.UsageError: ``--random-init`` with a checkpoint or without ``--architecture``, ``--seed``
            without ``--random-init``, or neither a checkpoint nor ``--random-init``.
    """
    if random_init:
        if checkpoint is not None:
            raise click.UsageError(f"--random-init exports an untrained model, not {checkpoint}: give a CHECKPOINT "
                                   "or --architecture NAME --random-init, not both")
        if architecture is None:
            raise click.UsageError("--random-init needs --architecture NAME (which model to initialise; "
                                   "`featherface-deploy info --architecture NAME` shows its parameters)")
        return 0 if seed is None else seed
    if seed is not None:
        raise click.UsageError("--seed applies to --random-init only (a checkpoint's weights are fixed)")
    if checkpoint is None:
        raise click.UsageError("give a CHECKPOINT (.pth), or --architecture NAME --random-init for an untrained model")
    return None


def build_detector(model: str, conf_threshold: float | None, nms_iou: float | None, imgsz: str | None,
                   threads: int | None, max_pixels: int, coreml_engine: str = "auto",
                   compute_units: str = "all", runtime_choice: str = "auto") -> FaceDetector:
    """Opens a model with the CLI's thresholds (and, for a Core ML package, its engine and compute units).

    A threshold left out (``None``) is the runtime's default: ours for raw-output models, the baked one for
    an end-to-end file (which refuses, at the first image, a lower confidence or another NMS IoU).

    Raises:
        click.UsageError: ``--coreml-engine`` or ``--compute-units`` given for a model that is not Core ML.
    """
    options = {} if threads is None else {"threads": threads}
    if format_for_path(model).family == "coreml":
        options.update(engine=coreml_engine, compute_units=compute_units)
    elif (coreml_engine, compute_units) != ("auto", "all"):
        raise click.UsageError("--coreml-engine and --compute-units apply to Core ML packages (.mlpackage) only")
    if runtime_choice == "litert":
        if format_for_file(model).raw_runtime is None:
            raise click.UsageError("--runtime litert applies to MediaPipe-task files (export --format mediapipe) only")
        options["raw"] = True
    detector = FaceDetector.load(model, size=parse_size(imgsz), max_pixels=max_pixels, **options)
    given = {name: value for name, value in (("conf_threshold", conf_threshold), ("nms_iou", nms_iou))
             if value is not None}
    if given:
        detector.config = dataclasses.replace(detector.config, **given)
    return detector


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
