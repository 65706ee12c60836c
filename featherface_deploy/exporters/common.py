"""Helpers shared by the exporters: loading the source model, sizes, optional imports, step timings.

Imports no backend (torch only when a checkpoint is loaded): the export options use it.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from featherface_deploy.contract import DecodeContract
from featherface_deploy.errors import ExportError, missing_backend
from featherface_deploy.limits import MAX_EXPORT_PIXELS, check_pixels, image_size

if TYPE_CHECKING:
    from torch import nn

Log = Callable[[str], None]


def _quiet(message: str) -> None:
    """Discards a log line."""


@dataclass(frozen=True)
class ExportContext:
    """What an exporter may use besides its options.

    Attributes:
        model_name: The architecture's registered name.
        log: Called with one line per step (e.g. ``click.echo``).
        scratch: Intermediate results exporters share within one run (e.g. the TFLite FP32
            conversion that FP16 and INT8 reuse), keyed by the exporter.
        untrained_seed: The seed of a randomly initialised (untrained) model; ``None`` for trained weights.
        open_tflite: Opens a TFLite flatbuffer (bytes, decode contract) as a runtime, for an exporter that
            measures what it made (the INT8 agreement check). Given by the pipeline, which may import
            runtimes; exporters themselves do not.
        open_onnx: Opens an ONNX file (path, decode contract) as a runtime, likewise (the ONNX INT8 check).
        run_onnx: Runs an ONNX file on one feed (path, ``{input: array}``) and returns every output by name
            (the TensorRT recipe's opset-rewrite check).
        onnx_integer_share: (path, input shape) → the share of an ONNX file's MACs ONNX Runtime's CPU provider
            runs in integer kernels (:func:`~featherface_deploy.harness.int8_kernels.ort_integer_share`; the
            ``onnx-int8`` row's facts).
        onnx_activations: Runs an ONNX file on a calibration set (path, set, input name) and returns
            ``{tensor: [array per input]}`` of its outputs (the ONNX INT8 sensitivity report).
    """

    model_name: str
    log: Log = field(default=_quiet, compare=False)
    scratch: dict = field(default_factory=dict, compare=False)
    untrained_seed: int | None = None
    open_tflite: Callable | None = field(default=None, compare=False)
    open_onnx: Callable | None = field(default=None, compare=False)
    onnx_activations: Callable | None = field(default=None, compare=False)
    run_onnx: Callable | None = field(default=None, compare=False)
    onnx_integer_share: Callable | None = field(default=None, compare=False)

    def opener(self, name: str) -> Callable:
        """The measurement ``name`` (``open_onnx``, ``open_tflite``, ``onnx_activations``, ``onnx_integer_share``).

        Raises:
            ExportError: Not given (an exporter called outside the pipeline); the message says how to run it.
        """
        opener = getattr(self, name)
        if opener is None:
            raise ExportError(f"this export measures the file it made and has no {name}: export through the "
                              "pipeline (featherface_deploy.pipeline), which supplies it")
        return opener

    def stamp(self, contract: DecodeContract) -> DecodeContract:
        """``contract`` flagged untrained (with the seed) when the model is; unchanged for trained weights."""
        return contract if self.untrained_seed is None else contract.replace(untrained_seed=self.untrained_seed)


@dataclass(frozen=True)
class ExportResult:
    """What an exporter wrote.

    Attributes:
        path: The file or folder written.
        contract: The decode contract embedded in it.
        timings: Seconds per step.
        facts: Format-specific facts worth reporting (node counts, layers kept float…).
        parity_sizes: For a model that takes only some sizes (Core ML enumerated or bounded flexible shapes):
            the (height, width) boxes the pipeline fits the parity photos into, each checked; empty: its default box.
    """

    path: Path
    contract: DecodeContract
    timings: dict[str, float] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)
    parity_sizes: tuple[tuple[int, int], ...] = ()


def load_source(checkpoint_or_model: str | Path | nn.Module, architecture: str | None) -> tuple[nn.Module, str]:
    """Returns (model in eval mode, architecture name) from a checkpoint path or an in-memory model."""
    if not isinstance(checkpoint_or_model, (str, os.PathLike)):
        name = getattr(getattr(checkpoint_or_model, "config", None), "name", None) or architecture or "custom"
        return checkpoint_or_model.eval(), name
    from featherface_deploy.models import load_model

    loaded = load_model(checkpoint_or_model, architecture)
    return loaded.model, loaded.architecture


def size_pair(imgsz: int | Sequence[int]) -> tuple[int, int]:
    """Turns one size or a (height, width) pair into a pair, refusing one too large to build.

    Raises:
        InputError: Not one or two integers ≥ 1, or over :data:`~featherface_deploy.limits.MAX_EXPORT_PIXELS`
            (checked with the options, before the model is loaded or anything allocated).
    """
    size = image_size(imgsz, "imgsz")
    check_pixels(size, MAX_EXPORT_PIXELS, "imgsz", "export at a smaller size (an any-size model: --dynamic)")
    return size


def require(module: str, extra: str, package: str | None = None) -> ModuleType:
    """Imports an optional dependency of an exporter.

    Raises:
        BackendNotInstalledError: Missing; the message names the pip extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise missing_backend(package or module, extra) from error


def timed(timings: dict[str, float], step: str, fn: Callable):
    """Runs ``fn`` and records its duration in seconds under ``timings[step]``."""
    started = time.perf_counter()
    try:
        return fn()
    finally:
        timings[step] = time.perf_counter() - started
