"""Image loading into uint8 H×W×3 arrays with an explicit channel order.

Paths are decoded with Pillow (imported on first use); arrays are taken as they are. Grayscale is
replicated to three channels, an alpha channel is dropped, and 16-bit images
are scaled to 8 bits, so every backend sees the same pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from featherface_deploy.errors import ImageError

CHANNEL_ORDERS = ("bgr", "rgb")


def _to_uint8(array: np.ndarray, source: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ImageError(f"{source}: image has NaN or infinite values")
        # Float images are taken as 0–255 values, the convention of cv2 and the reference code.
        return np.clip(np.rint(array), 0, 255).astype(np.uint8)
    raise ImageError(f"{source}: unsupported image dtype {array.dtype} (use uint8, uint16 or float)")


def _to_three_channels(array: np.ndarray, source: str) -> np.ndarray:
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim == 3 and array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return array[:, :, :3]
    raise ImageError(f"{source}: expected an H×W, H×W×1, H×W×3 or H×W×4 image, got shape {array.shape}")


def _read_file(path: Path) -> np.ndarray:
    """Decodes an image file to an RGB(-ordered) array, keeping 16-bit depth."""
    try:  # Pillow is imported here so device bundles, which decode no files, run without it
        from PIL import Image, UnidentifiedImageError
    except ImportError as error:
        raise ImageError(f"cannot read image {path}: decoding image files needs Pillow (`pip install pillow`); "
                         "pass a decoded array instead") from error
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image, dtype=np.int64)
                return np.clip(array, 0, 65535).astype(np.uint16)
            if image.mode not in ("RGB", "RGBA", "L", "LA"):
                image = image.convert("RGB")
            return np.asarray(image)
    except FileNotFoundError as error:
        raise ImageError(f"image not found: {path}") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"cannot read image {path}: {error}") from error


def load_image(image: str | Path | np.ndarray, color: str = "bgr") -> np.ndarray:
    """Loads an image as a contiguous uint8 H×W×3 BGR array.

    Args:
        image: A file path, or an array (H×W, H×W×1, H×W×3 or H×W×4; uint8,
            uint16, or float in 0–255).
        color: Channel order of an *array* input, ``"bgr"`` (cv2) or ``"rgb"``
            (Pillow, skimage). Files are always decoded correctly.

    Returns:
        The image in BGR order.

    Raises:
        ImageError: The file cannot be read or the array has an unsupported layout.
    """
    if color not in CHANNEL_ORDERS:
        raise ImageError(f"color must be one of {CHANNEL_ORDERS}, got {color!r}")
    if isinstance(image, (str, Path)):
        source, array, color = str(image), _read_file(Path(image)), "rgb"
    elif isinstance(image, np.ndarray):
        source, array = "array input", image
    else:
        raise ImageError(f"expected a path or a numpy array, got {type(image).__name__}")
    if array.size == 0:
        raise ImageError(f"{source}: image is empty (shape {array.shape})")
    array = _to_three_channels(_to_uint8(array, source), source)
    if color == "rgb":
        array = array[:, :, ::-1]
    return np.ascontiguousarray(array)
