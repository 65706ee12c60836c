"""ONNX Runtime backend: runs an exported ``.onnx`` file (numpy + onnxruntime only, never torch)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from featherface_deploy.contract import OUTPUT_ROLES, DecodeContract
from featherface_deploy.metadata.onnx import contract_from_metadata
from featherface_deploy.errors import (
    BackendError,
    BackendNotInstalledError,
    ContractError,
    FeatherFaceError,
    first_line,
    missing_backend,
)
from featherface_deploy.runtimes.base import Runtime, check_output_shapes, usable_threads
from featherface_deploy.runtimes.in_graph import InGraphRuntime

try:
    import onnxruntime
except ImportError as error:  # pragma: no cover - depends on the environment
    raise missing_backend("onnxruntime", "onnx") from error

# Every exception class ONNX Runtime's bindings define (InvalidArgument for a 0-byte file, Fail, InvalidGraph…).
_ORT_ERRORS = tuple(value for value in vars(onnxruntime.capi.onnxruntime_pybind11_state).values()
                    if isinstance(value, type) and issubclass(value, Exception)) + (RuntimeError, ValueError)

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
SPINNING_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")
_PROVIDER_EXTRA = {
    "CUDAExecutionProvider": "`pip install onnxruntime-gpu` (and a CUDA-capable GPU)",
    "TensorrtExecutionProvider": "`pip install onnxruntime-gpu` with TensorRT libraries",
}


class OrtRuntime(Runtime):
    """Runs an ONNX model with ONNX Runtime.

    Args:
        path_or_session: A ``.onnx`` path, or an ``onnxruntime.InferenceSession`` (injected).
        threads: Intra-op threads (``None`` = ONNX Runtime's default).
        providers: Execution providers, by full name or alias (``cpu``, ``cuda``,
            ``tensorrt``), in priority order; default CPU only. ``CPUExecutionProvider``
            is appended as a fallback for unsupported nodes.
        contract: A contract to use for an injected session without metadata.
        session_options: Extra ``onnxruntime.SessionOptions`` (threads override theirs).
        allow_spinning: Let idle intra- and inter-op threads spin after a run (ONNX Runtime's
            default). Turn it off when several sessions share the cores, e.g. when timing
            models interleaved: an idle session's spinning threads steal the cores from the
            one being timed.
        source: How messages name an injected session (default ``injected session``; :meth:`open`
            passes the file it created the session from).

    Raises:
        BackendNotInstalledError: A requested provider is not available.
        ContractError: The model carries no decode contract (no metadata, no sidecar), or its
            real input/output shapes disagree with it (input size, prior count, head widths), or it
            is an end-to-end file (open those with :meth:`open`, which returns an :class:`OrtEnd2EndRuntime`).
        BackendError: ONNX Runtime cannot load the file (its error is chained).
    """

    name = "onnxruntime"
    thread_safe = True  # InferenceSession.run may be called concurrently

    def __init__(self, path_or_session: str | Path | "onnxruntime.InferenceSession", threads: int | None = None,
                 providers: Sequence[str] | None = None, contract: DecodeContract | None = None,
                 session_options: "onnxruntime.SessionOptions | None" = None,
                 allow_spinning: bool = True, source: str | None = None) -> None:
        self.session, contract, source = open_session(path_or_session, threads, providers, contract,
                                                      session_options, allow_spinning, source)
        if contract.in_graph:
            raise ContractError(f"{source} is an end-to-end model (post-processing in the graph): open it with "
                                "OrtRuntime.open or FaceDetector.load, which return its detecting runtime")
        super().__init__(contract)
        self._check_io(source)

    @classmethod
    def open(cls, path_or_session: str | Path | "onnxruntime.InferenceSession", threads: int | None = None,
             providers: Sequence[str] | None = None, contract: DecodeContract | None = None,
             session_options: "onnxruntime.SessionOptions | None" = None,
             allow_spinning: bool = True) -> "OrtRuntime | OrtEnd2EndRuntime":
        """Opens any ONNX file: raw outputs → :class:`OrtRuntime`; an end-to-end file → :class:`OrtEnd2EndRuntime`.

        Takes the same arguments as the constructor (one session is created).
        """
        session, contract, source = open_session(path_or_session, threads, providers, contract, session_options,
                                                 allow_spinning)
        return (OrtEnd2EndRuntime if contract.in_graph else cls)(session, contract=contract, source=source)

    @property
    def providers(self) -> list[str]:
        """The session's execution providers, in priority order."""
        return self.session.get_providers()

    @property
    def max_batch(self) -> int | None:
        batch = self.session.get_inputs()[0].shape[0]
        return batch if isinstance(batch, int) else None

    def _check_io(self, source: str) -> None:
        """Checks the graph's real input and output names and shapes against the contract, before any inference."""
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        if inputs != [self.contract.input_name] or not set(self.contract.output_names) <= set(outputs):
            raise ContractError(f"{source}: graph inputs {inputs} / outputs {sorted(outputs)} do not match the "
                                f"contract ({self.contract.input_name} → {list(self.contract.output_names)})")
        shape = tuple(self.session.get_inputs()[0].shape)
        spatial = shape[2:4] if len(shape) == 4 else ()
        if len(shape) != 4 or shape[1] != 3:
            raise ContractError(f"{source}: graph input shape {list(shape)} is not a (batch, 3, height, width) image")
        if self.contract.input_layout != "NCHW":
            raise ContractError(f"{source}: the graph input {list(shape)} is NCHW but the contract says "
                                f"input_layout {self.contract.input_layout}")
        if all(isinstance(v, int) for v in spatial) and self.contract.input_size is not None \
                and spatial != tuple(self.contract.input_size):
            raise ContractError(f"{source}: the graph takes {spatial[0]}×{spatial[1]} inputs but the contract says "
                                f"input_size {self.contract.input_size[0]}×{self.contract.input_size[1]}")
        if self.contract.input_size is None and all(isinstance(v, int) for v in spatial):
            raise ContractError(f"{source}: the graph has a fixed {spatial[0]}×{spatial[1]} input but the contract "
                                "says it takes any size (input_size null)")
        roles = dict(zip(OUTPUT_ROLES, self.contract.output_names))
        check_output_shapes(self.contract, {role: outputs[name] for role, name in roles.items()}, shape, source)

    def _infer(self, batch: np.ndarray) -> Mapping[str, np.ndarray]:
        names = list(self.contract.output_names)
        values = self.session.run(names, {self.contract.input_name: batch})
        return dict(zip(OUTPUT_ROLES, values))


class OrtEnd2EndRuntime(InGraphRuntime):
    """Runs an end-to-end ONNX file (decoding and NMS in the graph) and returns detections in image pixels.

    Args:
        path_or_session: A ``.onnx`` path, or an ``onnxruntime.InferenceSession``.
        threads, providers, session_options, allow_spinning, source: As for :class:`OrtRuntime`.
        contract: A contract for an injected session without metadata.

    Raises:
        ContractError: No contract, a contract that is not end-to-end, or graph inputs/outputs that do not
            match it (names, NCHW input size, ``detections`` (1, max_det, 15), ``num_detections`` (1,)).
    """

    name = "onnxruntime"
    thread_safe = True  # InferenceSession.run may be called concurrently

    def __init__(self, path_or_session: str | Path | "onnxruntime.InferenceSession", threads: int | None = None,
                 providers: Sequence[str] | None = None, contract: DecodeContract | None = None,
                 session_options: "onnxruntime.SessionOptions | None" = None,
                 allow_spinning: bool = True, source: str | None = None) -> None:
        self.session, contract, source = open_session(path_or_session, threads, providers, contract,
                                                      session_options, allow_spinning, source)
        self.check_contract(contract, source)
        super().__init__(contract)
        self._check_io(source)

    def _check_io(self, source: str) -> None:
        spec = self.contract.end2end
        inputs = {i.name: tuple(i.shape) for i in self.session.get_inputs()}
        outputs = {o.name: tuple(o.shape) for o in self.session.get_outputs()}
        height, width = self.contract.input_size
        expected_in = {self.contract.input_name: (1, 3, height, width) if self.contract.input_layout == "NCHW"
                       else (1, height, width, 3)}
        expected_out = {spec.outputs[0]: (1, spec.max_det, 15), spec.outputs[1]: (1,)}
        if inputs != expected_in or outputs != expected_out:
            raise ContractError(f"{source}: graph inputs {inputs} / outputs {outputs} do not match its end-to-end "
                                f"contract ({expected_in} → {expected_out})")

    def _run(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return tuple(self.session.run(list(self.contract.end2end.outputs), {self.contract.input_name: tensor}))


def open_session(path_or_session, threads: int | None, providers: Sequence[str] | None,
                 contract: DecodeContract | None, session_options, allow_spinning: bool, source: str | None = None
                 ) -> tuple["onnxruntime.InferenceSession", DecodeContract, str]:
    """(session, contract, source name) for a path or an injected session; the contract from metadata or sidecar.

    ``source`` names an injected session in messages (``open`` passes the file it created the session from).

    Raises:
        FeatherFaceError: The path is not a regular file.
        ContractError: No contract (and none given).
        BackendError: ONNX Runtime cannot load the file.
    """
    if isinstance(path_or_session, onnxruntime.InferenceSession):
        session, path, source = path_or_session, None, source or "injected session"
    else:
        path = Path(path_or_session)
        source = str(path)
        if not path.is_file():
            raise FeatherFaceError(f"ONNX model not found (or not a regular file): {path}")
        session = _create_session(path, threads, providers, session_options, allow_spinning)
    contract = contract or contract_from_metadata(session.get_modelmeta().custom_metadata_map, path, source)
    return session, contract, source


def resolve_providers(providers: Sequence[str] | None) -> list[str]:
    """Maps aliases to provider names and checks they are available.

    Raises:
        BackendNotInstalledError: A provider is not in ``onnxruntime.get_available_providers()``.
    """
    available = onnxruntime.get_available_providers()
    chosen = [PROVIDER_ALIASES.get(p.lower(), p) for p in (providers or ["cpu"])]
    for provider in chosen:
        if provider not in available:
            hint = _PROVIDER_EXTRA.get(provider, "an onnxruntime build that includes it")
            raise BackendNotInstalledError(
                f"ONNX Runtime execution provider '{provider}' is not available (available: "
                f"{', '.join(available)}); install {hint}, or use providers=['cpu']")
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _create_session(path: Path, threads: int | None, providers: Sequence[str] | None,
                    options: "onnxruntime.SessionOptions | None",
                    allow_spinning: bool = True) -> "onnxruntime.InferenceSession":
    chosen = resolve_providers(providers)
    options = options or onnxruntime.SessionOptions()
    threads = usable_threads(threads)
    if not allow_spinning:
        for key in SPINNING_KEYS:
            options.add_session_config_entry(key, "0")
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=chosen)
    except _ORT_ERRORS as error:
        raise BackendError(f"ONNX Runtime cannot load {path}: {first_line(error)}") from error
