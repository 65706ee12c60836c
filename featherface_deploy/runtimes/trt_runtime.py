"""TensorRT runtime: a serialized ``.engine`` with its sidecar contract, on an NVIDIA GPU or Jetson.

Written against the TensorRT 10/11 Python API (name-based I/O:
``engine.num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``,
``get_tensor_profile_shape``, ``context.set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) and cuda-python's runtime API
(``cudaMalloc``, ``cudaMemcpyAsync``, ``cudaStreamCreate``), the pairing of
NVIDIA's own Python samples. Tensors are bound by name, never by index or
shape. **Never run on the project's CI machines** (no TensorRT, no GPU); its
tests carry the ``gpu`` marker and skip with the reason.

The engine's contract is its sidecar ``<model>.engine.json`` (never bytes
prepended to the engine). ``max_batch`` is the profile's largest batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from featherface_deploy.contract import OUTPUT_ROLES, read_sidecar
from featherface_deploy.errors import ContractError, missing_backend
from featherface_deploy.runtimes.base import Runtime

try:
    import tensorrt as trt
except ImportError as error:  # pragma: no cover - depends on the environment
    raise missing_backend("tensorrt", "tensorrt") from error
from featherface_deploy.trt.cuda import check as _cuda  # noqa: E402  (after the tensorrt check)
from featherface_deploy.trt.cuda import cudart  # noqa: E402


class TrtRuntime(Runtime):
    """Runs a TensorRT engine.

    Args:
        model: The ``.engine`` file (its sidecar holds the contract).
        threads: Ignored (GPU); accepted for the common runtime signature.
    """

    name = "tensorrt"

    def __init__(self, model: str | Path, threads: int | None = None) -> None:
        path = Path(model)
        contract = read_sidecar(path)
        logger = trt.Logger(trt.Logger.WARNING)
        self._engine = trt.Runtime(logger).deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise ContractError(f"{path}: TensorRT {trt.__version__} cannot deserialize it (built by another "
                                "TensorRT version or for another GPU? rebuild it on this device)")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        expected = {contract.input_name, *contract.output_names}
        if set(names) != expected:
            raise ContractError(f"{path}: engine tensors {sorted(names)} differ from the contract's {sorted(expected)}")
        if self._engine.get_tensor_mode(contract.input_name) != trt.TensorIOMode.INPUT:
            raise ContractError(f"{path}: '{contract.input_name}' is not the engine's input")
        self._context = self._engine.create_execution_context()
        self._stream = _cuda(cudart.cudaStreamCreate())
        self._device: dict[str, tuple[int, int]] = {}  # name → (pointer, bytes)
        super().__init__(contract)

    @property
    def max_batch(self) -> int | None:
        """The largest batch of optimization profile 0 (a static engine: its batch)."""
        shape = self._engine.get_tensor_shape(self.contract.input_name)
        if shape[0] != -1:
            return int(shape[0])
        _, _, largest = self._engine.get_tensor_profile_shape(self.contract.input_name, 0)
        return int(largest[0])

    def _buffer(self, name: str, nbytes: int) -> int:
        pointer, size = self._device.get(name, (0, 0))
        if size < nbytes:
            if pointer:
                _cuda(cudart.cudaFree(pointer))
            pointer = _cuda(cudart.cudaMalloc(nbytes))
            self._device[name] = (pointer, nbytes)
            self._context.set_tensor_address(name, pointer)
        return pointer

    def _infer(self, batch: np.ndarray) -> Mapping[str, np.ndarray]:
        context, stream = self._context, self._stream
        context.set_input_shape(self.contract.input_name, batch.shape)
        copy_in = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        _cuda(cudart.cudaMemcpyAsync(self._buffer(self.contract.input_name, batch.nbytes), batch.ctypes.data,
                                     batch.nbytes, copy_in, stream))
        outputs = {}
        for role, name in zip(OUTPUT_ROLES, self.contract.output_names):
            dtype = trt.nptype(self._engine.get_tensor_dtype(name))
            outputs[role] = (name, np.empty(tuple(context.get_tensor_shape(name)), dtype=dtype))
            self._buffer(name, outputs[role][1].nbytes)
        if not context.execute_async_v3(int(stream)):
            raise RuntimeError("TensorRT execution failed")
        copy_out = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, host in outputs.values():
            _cuda(cudart.cudaMemcpyAsync(host.ctypes.data, self._device[name][0], host.nbytes, copy_out, stream))
        _cuda(cudart.cudaStreamSynchronize(stream))
        return {role: host.astype(np.float32, copy=False) for role, (_, host) in outputs.items()}

    def __del__(self) -> None:
        for pointer, _ in getattr(self, "_device", {}).values():
            cudart.cudaFree(pointer)
        if getattr(self, "_stream", None) is not None:
            cudart.cudaStreamDestroy(self._stream)
