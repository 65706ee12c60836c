"""ONNX Runtime backend: runs an exported ``.onnx`` file (numpy + onnxruntime only, never torch)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from featherface_deploy.contract import METADATA_KEY, DecodeContract, read_sidecar
from featherface_deploy.errors import BackendNotInstalledError, ContractError, FeatherFaceError, missing_backend
from featherface_deploy.runtimes.base import Runtime

try:
    import onnxruntime
except ImportError as error:  # pragma: no cover - depends on the environment
    raise missing_backend("onnxruntime", "onnx") from error

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
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

    Raises:
        BackendNotInstalledError: A requested provider is not available.
        ContractError: The model carries no decode contract (no metadata, no sidecar).
        FeatherFaceError: The file cannot be loaded.
    """

    name = "onnxruntime"

    def __init__(self, path_or_session: str | Path | "onnxruntime.InferenceSession", threads: int | None = None,
                 providers: Sequence[str] | None = None, contract: DecodeContract | None = None,
                 session_options: "onnxruntime.SessionOptions | None" = None) -> None:
        if isinstance(path_or_session, onnxruntime.InferenceSession):
            self.session = path_or_session
            source = "injected session"
            path = None
        else:
            path = Path(path_or_session)
            source = str(path)
            if not path.is_file():
                raise FeatherFaceError(f"ONNX model not found: {path}")
            self.session = _create_session(path, threads, providers, session_options)
        super().__init__(contract or _read_contract(self.session, path, source))
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
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = {o.name for o in self.session.get_outputs()}
        if inputs != [self.contract.input_name] or not set(self.contract.output_names) <= outputs:
            raise ContractError(f"{source}: graph inputs {inputs} / outputs {sorted(outputs)} do not match the "
                                f"contract ({self.contract.input_name} → {list(self.contract.output_names)})")

    def _infer(self, batch: np.ndarray) -> Mapping[str, np.ndarray]:
        names = list(self.contract.output_names)
        values = self.session.run(names, {self.contract.input_name: batch})
        return dict(zip(("loc", "conf", "landmarks"), values))


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
                    options: "onnxruntime.SessionOptions | None") -> "onnxruntime.InferenceSession":
    chosen = resolve_providers(providers)
    options = options or onnxruntime.SessionOptions()
    if threads is not None:
        if threads < 1:
            raise FeatherFaceError(f"threads must be ≥ 1, got {threads}")
        options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=chosen)
    except (onnxruntime.capi.onnxruntime_pybind11_state.Fail,
            onnxruntime.capi.onnxruntime_pybind11_state.InvalidGraph,
            onnxruntime.capi.onnxruntime_pybind11_state.InvalidProtobuf,
            onnxruntime.capi.onnxruntime_pybind11_state.NoSuchFile) as error:
        raise FeatherFaceError(f"ONNX Runtime cannot load {path}: {error}") from error


def _read_contract(session: "onnxruntime.InferenceSession", path: Path | None, source: str) -> DecodeContract:
    metadata = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY in metadata:
        return DecodeContract.from_json(metadata[METADATA_KEY], source=f"{source} (metadata)")
    if path is not None:
        return read_sidecar(path)
    raise ContractError(f"{source}: the ONNX model has no '{METADATA_KEY}' metadata; pass contract=… "
                        "or export it with `featherface-deploy export`")
