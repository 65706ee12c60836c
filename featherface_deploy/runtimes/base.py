"""The runtime interface every backend implements.

``Runtime.infer`` validates the input once (name, dtype, shape against the
model's decode contract) and calls the backend's ``_infer``. Input and
outputs are numpy arrays in the canonical layout: input NCHW float32
(BGR − mean), outputs ``loc`` (B, N, 4), ``conf`` (B, N, 2, probabilities) and
``landmarks`` (B, N, 10), float32. Backends convert to and from their own
layouts and quantisation inside ``_infer``.

Threads: every runtime may be called from several threads at once. A backend
whose engine is not safe to share (LiteRT's interpreter, Core ML's reference
interpreter, a TensorRT execution context) leaves ``thread_safe`` False and
``infer`` runs its ``_infer`` under the runtime's own lock, one call at a
time; ONNX Runtime sessions and PyTorch modules in inference mode are safe to
share and run concurrently.
"""

from __future__ import annotations

import os
import threading
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Dict

import numpy as np

from featherface_deploy.contract import OUTPUT_ROLES, DecodeContract
from featherface_deploy.errors import BackendError, ContractError, FeatherFaceError, InputError, first_line

# typing.Dict, not dict[...]: this module also runs in device bundles on Python 3.8.
RawOutputs = Dict[str, np.ndarray]
# The last dimension of each output role: box deltas, two class scores, five landmark points.
ROLE_WIDTHS = {"loc": 4, "conf": 2, "landmarks": 10}


class Runtime(ABC):
    """Runs one model file. Subclasses implement ``_infer`` and set ``contract``.

    Attributes:
        contract: The model's decode contract.
        name: Short backend name used in reports (e.g. ``onnxruntime``).
        note: Said next to the name in reports when the engine is a stand-in for the real backend
            (Core ML's reference interpreter off macOS); empty otherwise.
        thread_safe: The backend's engine may run several calls at once; when False, calls from several
            threads are serialised by the runtime's lock.
        postprocess: Where decoding and NMS run: ``numpy`` (our shared post-processing of the raw outputs).
    """

    name = "runtime"
    note = ""
    thread_safe = False
    postprocess = "numpy"

    def __init__(self, contract: DecodeContract) -> None:
        self.contract = contract
        self._infer_lock = threading.Lock()

    @classmethod
    def open(cls, path, **options) -> "Runtime | DetectingRuntime":
        """Opens a model file with this backend: the runtime that fits it (an end-to-end file gets a
        :class:`DetectingRuntime` where the backend has one). Every caller that opens a file by its format
        row goes through here."""
        return cls(path, **options)

    @property
    def max_batch(self) -> int | None:
        """Largest batch the model takes, or ``None`` if unbounded."""
        return None

    def infer(self, batch: np.ndarray | Mapping[str, np.ndarray]) -> RawOutputs:
        """Runs the model on a preprocessed batch.

        Args:
            batch: (B, 3, H, W) float32 BGR − mean, or a mapping from the
                contract's input name to it.

        Returns:
            ``{"loc", "conf", "landmarks"}`` float32 arrays.

        Raises:
            InputError: Wrong input name, dtype or shape.
            BackendError: The backend failed (its own exception is chained).
            ContractError: The outputs' shapes disagree with the contract (e.g. its prior count).
        """
        array = self._validated(batch)
        try:
            outputs = engine_call(self, self._infer, array)
        except FeatherFaceError:
            raise
        except Exception as error:  # noqa: BLE001 - each backend raises its own types; all become one, chained
            raise BackendError(f"{self.name} failed to run the model on a {array.shape} input: "
                               f"{first_line(error)}") from error
        outputs = {role: np.asarray(outputs[role], dtype=np.float32) for role in OUTPUT_ROLES}
        check_output_shapes(self.contract, {role: value.shape for role, value in outputs.items()},
                            array.shape, f"{self.name} model")
        return outputs

    def _validated(self, batch: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray:
        if isinstance(batch, Mapping):
            if set(batch) != {self.contract.input_name}:
                raise InputError(f"expected one input named '{self.contract.input_name}', got {sorted(batch)}")
            batch = batch[self.contract.input_name]
        if not isinstance(batch, np.ndarray) or batch.dtype != np.float32:
            kind = batch.dtype if isinstance(batch, np.ndarray) else type(batch).__name__
            raise InputError(f"input must be a float32 numpy array, got {kind}")
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise InputError(f"input must be shaped (B, 3, H, W), got {batch.shape}")
        height, width = batch.shape[2:]
        if self.contract.input_size is not None and (height, width) != tuple(self.contract.input_size):
            raise InputError(f"this model takes {self.contract.input_size[0]}×{self.contract.input_size[1]} "
                             f"inputs, got {height}×{width}")
        divisor = self.contract.size_divisor
        if height % divisor or width % divisor:
            raise InputError(f"input height and width must be multiples of {divisor}, got {height}×{width}")
        if self.max_batch is not None and batch.shape[0] > self.max_batch:
            raise InputError(f"this model takes batches of at most {self.max_batch}, got {batch.shape[0]}")
        return np.ascontiguousarray(batch)

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> Mapping[str, np.ndarray]:
        """Backend inference on a validated NCHW float32 batch; returns the three roles."""


def engine_call(runtime, function, *args):
    """Calls a runtime's engine: directly when ``runtime.thread_safe``, else under the runtime's lock.

    The one place that makes every runtime (raw-output and detecting alike) safe from several threads.
    """
    if runtime.thread_safe:
        return function(*args)
    with runtime._infer_lock:  # the engine is not safe to share: one call at a time
        return function(*args)


def check_output_shapes(contract: DecodeContract, shapes: Mapping[str, tuple], input_shape: tuple,
                        source: str) -> None:
    """Checks output shapes against the contract: (B, N, 4 / 2 / 10) with N its prior count for the input.

    Dimensions that are unknown (``None``, symbolic names, or -1 in a
    backend's static shape) are not compared, so the same check serves a
    model at load time and its outputs after an inference.

    Args:
        contract: The decode contract.
        shapes: Role → shape.
        input_shape: The NCHW input shape the outputs belong to (entries may be unknown).
        source: The model, for the message.

    Raises:
        ContractError: A rank, width, batch or prior count differs; the message names both values.
    """
    batch, height, width = input_shape[0], input_shape[2], input_shape[3]
    known = _known(height) and _known(width)
    priors = contract.priors.count(height, width) if known else None
    for role, shape in shapes.items():
        shape = tuple(shape)
        if len(shape) != 3 or (_known(shape[2]) and shape[2] != ROLE_WIDTHS[role]):
            raise ContractError(f"{source}: output '{role}' has shape {shape}, expected (batch, priors, "
                                f"{ROLE_WIDTHS[role]}); it is not a FeatherFace head output")
        if _known(batch) and _known(shape[0]) and shape[0] != batch:
            raise ContractError(f"{source}: output '{role}' has batch {shape[0]} for an input batch of {batch}")
        if priors is not None and _known(shape[1]) and shape[1] != priors:
            raise ContractError(
                f"{source}: output '{role}' has {shape[1]} rows but the contract's priors (steps "
                f"{list(contract.priors.steps)}, min_sizes {[list(m) for m in contract.priors.min_sizes]}) give "
                f"{priors} for a {height}×{width} input; the contract does not belong to this model")


def _known(dimension) -> bool:
    return isinstance(dimension, (int, np.integer)) and dimension >= 0


def usable_threads(threads: int | None) -> int | None:
    """Caps a requested thread count at the CPU cores this process may use, with a warning.

    More threads than cores only adds contention (measured: 1 s → 95 s for
    999 threads on 2 cores).

    Raises:
        InputError: ``threads`` < 1.
    """
    if threads is None:
        return None
    if threads < 1:
        raise InputError(f"threads must be ≥ 1, got {threads}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if threads > cores:
        warnings.warn(f"{threads} threads requested but this process can use {cores} CPU core(s); using {cores}",
                      RuntimeWarning, stacklevel=3)
        return cores
    return threads


class DetectingRuntime(ABC):
    """Runs a model that returns finished detections: post-processing ran elsewhere than our numpy code.

    End-to-end files (decoding and NMS in the graph) and the MediaPipe task implement it;
    ``FaceDetector``, ``detect``, ``evaluate``, ``benchmark`` and ``compare`` take any of them
    through :meth:`detect`, and every report names :attr:`postprocess`.

    Attributes:
        contract: The model's decode contract.
        name: Short backend name used in reports.
        note: Said next to the name in reports when the engine is a stand-in; empty otherwise.
        postprocess: Where post-processing ran: ``in-graph`` (end-to-end files) or ``mediapipe-task``.
        thread_safe: As for :class:`Runtime`: when False, engine calls go through :func:`engine_call`'s lock.
    """

    name = "runtime"
    note = ""
    postprocess = "in-graph"
    max_batch = None  # images are detected one at a time; callers loop
    thread_safe = False

    def __init__(self, contract: DecodeContract) -> None:
        self.contract = contract
        self._infer_lock = threading.Lock()

    @classmethod
    def open(cls, path, **options) -> "DetectingRuntime":
        """Opens a model file (the same entry point as :meth:`Runtime.open`)."""
        return cls(path, **options)

    def default_config(self):
        """The thresholds this runtime applies when the caller gives none (``PostprocessConfig``)."""
        from featherface_deploy.postprocess import PostprocessConfig

        return PostprocessConfig()

    @abstractmethod
    def detect(self, image: np.ndarray, config=None):
        """Detects faces in one image.

        Args:
            image: H×W×3 uint8 BGR, as :func:`~featherface_deploy.postprocess.load_image` returns.
            config: ``PostprocessConfig`` thresholds, or ``None`` for :meth:`default_config`.

        Returns:
            ``Detections`` in the image's own pixels, best first.
        """

