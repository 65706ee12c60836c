"""ONNX Runtime adapter: a :class:`CalibrationSet` as a ``CalibrationDataReader``."""

from __future__ import annotations

import numpy as np

from featherface_deploy.calibration.dataset import CalibrationSet
from featherface_deploy.errors import missing_backend

try:
    from onnxruntime.quantization import CalibrationDataReader
except ImportError as error:  # pragma: no cover - depends on the environment
    raise missing_backend("onnxruntime", "onnx") from error


class OrtCalibrationReader(CalibrationDataReader):
    """Feeds a calibration set to ONNX Runtime's calibrators, batch by batch.

    Follows ORT's contract: :meth:`get_next` returns ``{input_name: batch}``
    until the set is exhausted, then ``None``; :meth:`rewind` starts over.

    Args:
        calibration: The preprocessed calibration set.
        input_name: The model's input tensor name.
        batch_size: Images per feed.
    """

    def __init__(self, calibration: CalibrationSet, input_name: str = "input", batch_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.calibration = calibration
        self.input_name = input_name
        self.batch_size = batch_size
        self._iterator = None
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        """Returns the next feed, or ``None`` when every batch has been given."""
        batch = next(self._iterator, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self) -> None:
        """Restarts from the first batch."""
        self._iterator = iter(self.calibration.batches(self.batch_size))

    def __len__(self) -> int:
        return -(-len(self.calibration) // self.batch_size)
