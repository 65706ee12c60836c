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
    missing_backend,
)
from featherface_deploy.runtimes.base import Runtime, check_output_shapes, first_line, usable_threads

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

    Raises:
        BackendNotInstalledError: A requested provider is not available.
        ContractError: The model carries no decode contract (no metadata, no sidecar), or its
            real input/output shapes disagree with it (input size, prior count, head widths).
        BackendError: ONNX Runtime cannot load the file (its error is chained).
    """

    name = "onnxruntime"
    thread_safe = True  # InferenceSession.run may be called concurrently

    def __init__(self, path_or_session: str | Path | "onnxruntime.InferenceSession", threads: int | None = None,
                 providers: Sequence[str] | None = None, contract: DecodeContract | None = None,
                 session_options: "onnxruntime.SessionOptions | None" = None,
                 allow_spinning: bool = True) -> None:
        if isinstance(path_or_session, onnxruntime.InferenceSession):
            self.session = path_or_session
            source = "injected session"
            path = None
        else:
            path = Path(path_or_session)
            source = str(path)
            if not path.is_file():
                raise FeatherFaceError(f"ONNX model not found (or not a regular file): {path}")
            self.session = _create_session(path, threads, providers, session_options, allow_spinning)
        super().__init__(contract or contract_from_metadata(self.session.get_modelmeta().custom_metadata_map, path, source))
        self._check_io(source)

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
