"""The runtime interface every backend implements.

``Runtime.infer`` validates the input once (name, dtype, shape against the
model's decode contract) and calls the backend's ``_infer``. Input and
outputs are numpy arrays in the canonical layout: input NCHW float32
(BGR − mean), outputs ``loc`` (B, N, 4), ``conf`` (B, N, 2, probabilities) and
``landmarks`` (B, N, 10), float32. Backends convert to and from their own
layouts and quantisation inside ``_infer``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Dict

import numpy as np

from featherface_deploy.contract import OUTPUT_ROLES, DecodeContract
from featherface_deploy.errors import InputError

# typing.Dict, not dict[...]: this module also runs in device bundles on Python 3.8.
RawOutputs = Dict[str, np.ndarray]


class Runtime(ABC):
    """Runs one model file. Subclasses implement ``_infer`` and set ``contract``.

    Attributes:
        contract: The model's decode contract.
        name: Short backend name used in reports (e.g. ``onnxruntime``).
    """

    name = "runtime"

    def __init__(self, contract: DecodeContract) -> None:
        self.contract = contract

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
        """
        array = self._validated(batch)
        outputs = self._infer(array)
        return {role: np.asarray(outputs[role], dtype=np.float32) for role in OUTPUT_ROLES}

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
