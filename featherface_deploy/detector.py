"""``FaceDetector``: the embeddable API — load any model file, detect faces in images."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Union

import numpy as np

from featherface_deploy.errors import BackendNotInstalledError, InputError
from featherface_deploy.formats import format_for_path, resolve
from featherface_deploy.limits import check_pixels, image_size
from featherface_deploy.postprocess import (
    Detections,
    PostprocessConfig,
    decode_image,
    load_image,
    preprocess,
)
from featherface_deploy.postprocess.image_io import check_pixel_count
from featherface_deploy.runtimes.base import DetectingRuntime, Runtime

# typing.Union, not ``|``: this module also runs in device bundles on Python 3.8.
ImageInput = Union[str, Path, np.ndarray]
# 40 MP: a 48 MP phone photo must be resized; 8K video frames (33 MP) run natively.
DEFAULT_MAX_PIXELS = 40_000_000


class FaceDetector:
    """Runs any supported model file with the shared preprocessing, decoding and NMS.

    A runtime that returns finished detections (a :class:`DetectingRuntime`: an end-to-end file,
    whose decoding and NMS ran in the graph) is called through its own ``detect``; the result is
    the same :class:`Detections` in original image pixels.

    Example::

        detector = FaceDetector.load("featherface-v1.onnx")
        faces = detector("group.jpg")
        faces.boxes, faces.scores, faces.landmarks

    Args:
        runtime: The backend runtime holding the model.
        config: Score threshold, NMS IoU and top-k limits; ``None``: the defaults (for an end-to-end
            file, the settings baked into it, which a given config may only tighten).
        size: For any-size models: (height, width) box to resize images into (an int N: N×N);
            ``None`` runs at native resolution. Fixed-size models always use
            their own size; asking one for another size is an error.
        max_pixels: Largest image run at native resolution, and largest
            ``size`` (height × width; ``None`` or 0: no limit). A larger one is
            refused with a message saying how to resize it, so a huge photo
            cannot take minutes and gigabytes by accident.

    Raises:
        InputError: ``size`` is not N or (height, width) with integers ≥ 1, is over ``max_pixels``, or is
            given for a model with a different fixed input size.
    """

    def __init__(self, runtime: Runtime | DetectingRuntime, config: PostprocessConfig | None = None,
                 size: tuple[int, int] | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        size = _checked_size(size, max_pixels)
        fixed = runtime.contract.input_size
        if size is not None and fixed is not None and tuple(size) != tuple(fixed):
            raise InputError(f"this model has a fixed {fixed[0]}×{fixed[1]} input, so a {size[0]}×{size[1]} size "
                             "cannot apply; leave it out (images are fitted into the model's size), or export an "
                             "any-size model (--dynamic)")
        self.runtime = runtime
        self.config = runtime.default_config() if config is None and isinstance(runtime, DetectingRuntime) \
            else config or PostprocessConfig()
        self.size = size
        self.max_pixels = max_pixels

    @classmethod
    def load(cls, path: str | Path, config: PostprocessConfig | None = None,
             size: tuple[int, int] | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
             **runtime_options) -> "FaceDetector":
        """Opens a model file with the runtime its suffix calls for.

        Args:
            path: ``.pth``, ``.onnx``, ``.tflite``… (see ``featherface_deploy.formats``).
            config: Detection thresholds (``None``: the defaults, see the class docstring).
            size: Resize box for any-size models (see the class docstring).
            max_pixels: Native-resolution limit (see the class docstring).
            **runtime_options: Passed to the runtime (e.g. ``threads=2``).

        Raises:
            FeatherFaceError: Unknown suffix, missing backend, bad file.
        """
        size = _checked_size(size, max_pixels)  # before the model is opened
        try:
            runtime_class = resolve(format_for_path(path).runtime)
        except BackendNotInstalledError as error:  # e.g. an .engine without TensorRT: say which file needs it
            raise BackendNotInstalledError(f"cannot open {path}: {error}") from error
        return cls(runtime_class.open(path, **runtime_options), config, size, max_pixels)

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
        """Detects faces in several images, batching those that share an input size.

        Raises:
            ImageError: An image is unreadable, or over ``max_pixels`` at native resolution.
        """
        if isinstance(self.runtime, DetectingRuntime):
            return [self.runtime.detect(self._loaded(image, color), self.config) for image in images]
        prepared = [preprocess(self._loaded(image, color), self.runtime.contract, self.size) for image in images]
        results: list[Detections | None] = [None] * len(prepared)
        for indices in _group_by_shape([tensor.shape for tensor, _ in prepared], self.runtime.max_batch):
            batch = np.stack([prepared[i][0] for i in indices])
            raw = self.runtime.infer(batch)
            for row, i in enumerate(indices):
                results[i] = decode_image(raw["loc"][row], raw["conf"][row], raw["landmarks"][row],
                                          batch.shape[2:], self.runtime.contract, prepared[i][1], self.config)
        return results

    def _loaded(self, image: ImageInput, color: str) -> np.ndarray:
        array = load_image(image, color)
        if self.size is None and self.runtime.contract.input_size is None:
            source = str(image) if isinstance(image, (str, Path)) else "array input"
            check_pixel_count(*array.shape[:2], self.max_pixels, source,
                              "resize it with size=(H, W) (CLI: --imgsz), or raise max_pixels (CLI: --max-pixels)")
        return array


def _checked_size(size, max_pixels: int | None) -> tuple[int, int] | None:
    """``size`` as (height, width), refused when malformed or over ``max_pixels`` (:mod:`featherface_deploy.limits`)."""
    size = image_size(size)
    if size is not None:
        check_pixels(size, max_pixels, "size", "give a smaller one (CLI: --imgsz), or raise max_pixels "
                     "(CLI: --max-pixels)")
    return size


def _group_by_shape(shapes: Iterable[tuple[int, ...]], max_batch: int | None) -> list[list[int]]:
    groups: dict[tuple[int, ...], list[list[int]]] = {}
    for index, shape in enumerate(shapes):
        chunks = groups.setdefault(shape, [[]])
        if max_batch is not None and len(chunks[-1]) >= max_batch:
            chunks.append([])
        chunks[-1].append(index)
    return [chunk for chunks in groups.values() for chunk in chunks]
