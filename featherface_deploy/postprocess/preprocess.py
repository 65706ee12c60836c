"""FeatherFace preprocessing: optional resize, BGR − mean, padding, NCHW float32.

The :class:`Transform` records how an image was scaled, so detections can be
mapped back to original pixels. The two halves are separate functions
(:func:`fit_image` resizes, :func:`to_tensor` subtracts the mean and pads) so
a host can fit images and a device bundle without Pillow can do the rest;
the resizer (OpenCV if installed, else Pillow) is imported only when an image
actually needs resizing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from featherface_deploy.contract import DecodeContract
from featherface_deploy.errors import BackendNotInstalledError


@dataclass(frozen=True)
class Transform:
    """How original pixels map to network-input pixels: ``net = orig · scale``.

    Attributes:
        scale_x: Horizontal scale.
        scale_y: Vertical scale.
        original_size: (height, width) of the original image.
    """

    scale_x: float
    scale_y: float
    original_size: tuple[int, int]


def resize_bgr(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resizes a uint8 H×W×3 image (an image already that size is returned as is).

    OpenCV's ``cv2.resize`` where OpenCV is installed (optional: the ``peers``
    extra), else Pillow's: bilinear (``INTER_LINEAR`` / ``BILINEAR``) when
    enlarging, where the two agree to ±2 levels, and area averaging
    (``INTER_AREA``) or Pillow's antialiased bilinear when shrinking. OpenCV
    is several times faster, and Pillow's resize is most of the
    preprocessing cost; on the WIDER FACE subset at 640 the two give AP
    within 0.1 of each other (README, "Post-processing").
    """
    if image.shape[:2] == (height, width):
        return image
    cv2 = _opencv()
    if cv2 is not None:
        enlarging = height >= image.shape[0] and width >= image.shape[1]
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR if enlarging else cv2.INTER_AREA)
    try:
        from PIL import Image
    except ImportError as error:  # only in device bundles, which carry no Pillow
        raise BackendNotInstalledError(
            "resizing an image needs Pillow, which this Python lacks: `pip install pillow`, or pass images "
            "already fitted to the model (the remote runners do)") from error
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


@lru_cache(maxsize=1)
def _opencv():
    """The ``cv2`` module if OpenCV is installed, else ``None`` (imported on the first resize, not at import)."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def fit_size(image_size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """Largest size with the image's aspect ratio that fits in ``target``."""
    height, width = image_size
    scale = min(target[0] / height, target[1] / width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _round_up(value: int, divisor: int) -> int:
    return -(-value // divisor) * divisor


def fit_image(image: np.ndarray, contract: DecodeContract,
              size: tuple[int, int] | None = None) -> tuple[np.ndarray, Transform]:
    """Resizes one BGR uint8 image the way :func:`preprocess` does (aspect ratio kept), without padding.

    Returns:
        The resized image and the :class:`Transform` from original pixels to it.
    """
    height, width = image.shape[:2]
    target = contract.input_size or size
    resized_size = fit_size((height, width), target) if target else (height, width)
    resized = resize_bgr(image, *resized_size)
    return resized, Transform(resized_size[1] / width, resized_size[0] / height, (height, width))


def to_tensor(resized: np.ndarray, contract: DecodeContract) -> np.ndarray:
    """Subtracts the mean from an already fitted image and pads it to the model's input (3, H', W') float32."""
    if contract.input_size:
        canvas_size = contract.input_size
    else:
        divisor = contract.size_divisor
        canvas_size = (_round_up(resized.shape[0], divisor), _round_up(resized.shape[1], divisor))
    out = np.empty((3, *canvas_size), dtype=np.float32)
    height, width = resized.shape[:2]
    image = out[:, :height, :width]
    # uint8 HWC → float32 CHW in one copy, then the mean subtracted in place; the padding is 0 (the mean colour).
    np.copyto(image, resized.transpose(2, 0, 1))
    image -= np.asarray(contract.mean_bgr, dtype=np.float32).reshape(3, 1, 1)
    out[:, height:] = 0
    out[:, :height, width:] = 0
    return out


def preprocess(image: np.ndarray, contract: DecodeContract, size: tuple[int, int] | None = None) -> tuple[np.ndarray, Transform]:
    """Turns one BGR uint8 image into a network input.

    A model with a fixed input size gets the image resized to fit (aspect ratio
    kept) and padded at the bottom and right. Otherwise the image is used at
    native resolution, or resized to fit ``size`` if given, and padded up to
    the model's size divisor. Padding is zero *after* mean subtraction (mean colour).

    Args:
        image: uint8 H×W×3 BGR.
        contract: The model's decode contract (mean, input size, divisor).
        size: Optional (height, width) box to resize into, for any-size models.

    Returns:
        The (3, H', W') float32 input and its :class:`Transform`.
    """
    resized, transform = fit_image(image, contract, size)
    return to_tensor(resized, contract), transform
