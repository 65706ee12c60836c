"""``FaceDetector``: the embeddable API — load any model file, detect faces in images."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Union

import numpy as np

from featherface_deploy.formats import format_for_path, resolve
from featherface_deploy.postprocess import (
    Detections,
    PostprocessConfig,
    decode_image,
    load_image,
    preprocess,
)
from featherface_deploy.runtimes.base import Runtime

# typing.Union, not ``|``: this module also runs in device bundles on Python 3.8.
ImageInput = Union[str, Path, np.ndarray]


class FaceDetector:
    """Runs any supported model file with the shared preprocessing, decoding and NMS.

    Example::

        detector = FaceDetector.load("featherface-v1.onnx")
        faces = detector("group.jpg")
        faces.boxes, faces.scores, faces.landmarks

    Args:
        runtime: The backend runtime holding the model.
        config: Score threshold, NMS IoU and top-k limits.
        size: For any-size models: (height, width) box to resize images into;
            ``None`` runs at native resolution. Fixed-size models always use their size.
    """

    def __init__(self, runtime: Runtime, config: PostprocessConfig = PostprocessConfig(),
                 size: tuple[int, int] | None = None) -> None:
        self.runtime = runtime
        self.config = config
        self.size = size

    @classmethod
    def load(cls, path: str | Path, config: PostprocessConfig = PostprocessConfig(),
             size: tuple[int, int] | None = None, **runtime_options) -> "FaceDetector":
        """Opens a model file with the runtime its suffix calls for.

        Args:
            path: ``.pth``, ``.onnx``, ``.tflite``… (see ``featherface_deploy.formats``).
            config: Detection thresholds.
            size: Resize box for any-size models (see the class docstring).
            **runtime_options: Passed to the runtime (e.g. ``threads=2``).

        Raises:
            FeatherFaceError: Unknown suffix, missing backend, bad file.
        """
        runtime_class = resolve(format_for_path(path).runtime)
        return cls(runtime_class(path, **runtime_options), config, size)

    def __call__(self, image: ImageInput, color: str = "bgr") -> Detections:
        """Detects faces in one image.

        Args:
            image: A path or an array (see :func:`load_image`).
            color: Channel order of an array input (``"bgr"`` or ``"rgb"``).

        Returns:
            The faces in original image pixels.
        """
        return self.detect_batch([image], color=color)[0]

    def detect_batch(self, images: Sequence[ImageInput], color: str = "bgr") -> list[Detections]:
        """Detects faces in several images, batching those that share an input size."""
        prepared = [preprocess(load_image(image, color), self.runtime.contract, self.size) for image in images]
        results: list[Detections | None] = [None] * len(prepared)
        for indices in _group_by_shape([tensor.shape for tensor, _ in prepared], self.runtime.max_batch):
            batch = np.stack([prepared[i][0] for i in indices])
            raw = self.runtime.infer(batch)
            for row, i in enumerate(indices):
                results[i] = decode_image(raw["loc"][row], raw["conf"][row], raw["landmarks"][row],
                                          batch.shape[2:], self.runtime.contract, prepared[i][1], self.config)
        return results


def _group_by_shape(shapes: Iterable[tuple[int, ...]], max_batch: int | None) -> list[list[int]]:
    groups: dict[tuple[int, ...], list[list[int]]] = {}
    for index, shape in enumerate(shapes):
        chunks = groups.setdefault(shape, [[]])
        if max_batch is not None and len(chunks[-1]) >= max_batch:
            chunks.append([])
        chunks[-1].append(index)
    return [chunk for chunks in groups.values() for chunk in chunks]
