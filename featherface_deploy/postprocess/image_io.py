"""Image loading into uint8 H×W×3 arrays with an explicit channel order.

Conventions (also in the README):

- **Files** are decoded with Pillow (imported on first use, so device bundles
  that only take arrays run without it) and their EXIF orientation is applied, so
  a phone photo stored sideways is seen upright and boxes come back in the
  upright frame. Only regular files are opened (a named pipe or a device
  would block forever). Files above Pillow's decompression-bomb limit are
  refused with one line.
- **Arrays are taken as they are**: no EXIF, no rotation; the caller says the
  channel order.
- Pixel values are mapped to 8 bits by their dtype, and a value range that
  makes no sense for the dtype is refused or warned about instead of giving
  0 faces without a word: float images must hold 0–255 values (all values
  in 0–1 is refused: multiply by 255). ``uint16`` images are 16-bit. The
  wider integer dtypes (``int32``, ``int64``, ``uint32``, ``uint64``) say
  nothing about the bit depth, so their range decides: only 0–255 values →
  8-bit (with an :class:`ImageValueRangeWarning`); a maximum from 256 to
  4095 is ambiguous (an 8-bit image that overflowed, or 10/12-bit data) and
  refused with the fix; up to 65535 → 16-bit; above, the dtype's
  full range (refused when that would turn every pixel black).
- A file with several frames (animated GIF, multi-page TIFF) is read at its
  first frame, with an :class:`ImageFramesWarning` saying so.
- Grayscale is replicated to three channels; an alpha channel (RGBA, gray +
  alpha files) is dropped.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np

from featherface_deploy.errors import ImageError

CHANNEL_ORDERS = ("bgr", "rgb")
EXIF_ORIENTATION = 0x0112
# The tolerance on 0–255 float images: values rounded from resampling may overshoot a little.
_FLOAT_SLACK = 0.5


# Wider integer images whose maximum is below this are neither 8-bit nor plausibly 16-bit: refused.
_AMBIGUOUS_BELOW = 4096


class ImageValueRangeWarning(UserWarning):
    """An image's values are unusual for its dtype; how they were interpreted is in the message."""


class ImageFramesWarning(UserWarning):
    """An image file holds several frames (animated GIF, multi-page TIFF); only the first is used."""


def _float_to_uint8(array: np.ndarray, source: str) -> np.ndarray:
    if not np.all(np.isfinite(array)):
        raise ImageError(f"{source}: image has NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low < -_FLOAT_SLACK or high > 255 + _FLOAT_SLACK:
        raise ImageError(f"{source}: float image values span [{low:.4g}, {high:.4g}]; expected 0–255 pixel values "
                         "(pass the image itself, not a mean-subtracted or normalised tensor)")
    if 0 < high <= 1:
        raise ImageError(f"{source}: float image values are all in 0–1; this API takes 0–255 values: "
                         "pass image * 255")
    # Float images are taken as 0–255 values, the convention of cv2 and the reference code.
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def _int_to_uint8(array: np.ndarray, source: str) -> np.ndarray:
    low, high = int(array.min()), int(array.max())
    if low < 0:
        raise ImageError(f"{source}: {array.dtype} image has negative values (min {low}); expected pixel values")
    if high <= 255:
        if high > 0:
            warnings.warn(f"{source}: {array.dtype} image holds only 0–255 values; taken as 8-bit values (scale it "
                          f"to the full {array.dtype} range if it really is that dark)", ImageValueRangeWarning,
                          stacklevel=4)
        return array.astype(np.uint8)
    if array.dtype == np.uint16:
        full = 65535
    elif high < _AMBIGUOUS_BELOW:
        raise ImageError(f"{source}: {array.dtype} image values span {low}–{high}: neither 8-bit (0–255) nor a "
                         "16-bit range; pass np.clip(image, 0, 255).astype(np.uint8) for an 8-bit image, or "
                         "image.astype(np.uint16) scaled to 0–65535 for deeper data")
    elif high <= 65535:
        full = 65535
    else:
        full = int(np.iinfo(array.dtype).max)
        if high * 255 // full == 0:
            raise ImageError(f"{source}: {array.dtype} image values span {low}–{high}: beyond 16-bit yet far below "
                             f"the {array.dtype} range, so they would all read as black; scale them to 0–255 "
                             "(uint8) or 0–65535 (uint16)")
    return (array.astype(np.uint64) * 255 // full).astype(np.uint8)


def _to_uint8(array: np.ndarray, source: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        return _float_to_uint8(array, source)
    if array.dtype in (np.uint16, np.uint32, np.int32, np.int64, np.uint64):
        return _int_to_uint8(array, source)
    raise ImageError(f"{source}: unsupported image dtype {array.dtype} (use uint8, uint16, uint32/int32 or float)")


def _to_three_channels(array: np.ndarray, source: str) -> np.ndarray:
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim == 3 and array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return array[:, :, :3]
    raise ImageError(f"{source}: expected an H×W, H×W×1, H×W×3 or H×W×4 image, got shape {array.shape}")


def _check_regular_file(path: Path) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as error:
        raise ImageError(f"image not found: {path}") from error
    except OSError as error:
        raise ImageError(f"cannot read image {path}: {error.strerror}") from error
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a named pipe" if stat.S_ISFIFO(mode) else "not a regular file"
        raise ImageError(f"cannot read image {path}: it is {kind}; give an image file")


def _decoded_array(image: Image.Image) -> np.ndarray:
    """The pixels of a loaded, upright Pillow image, keeping 16/32-bit depth."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image).astype(np.uint16)
    if image.mode == "I":
        return np.asarray(image, dtype=np.int32)
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    if image.mode in ("LA", "La", "PA"):
        image = image.convert("LA").getchannel("L")
    elif image.mode not in ("RGB", "RGBA", "L"):
        image = image.convert("RGB")
    return np.asarray(image)


def _read_file(path: Path) -> np.ndarray:
    """Decodes an image file to an RGB(-ordered) array, upright by its EXIF orientation."""
    _check_regular_file(path)
    try:  # Pillow is imported here so device bundles, which decode no files, run without it
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError as error:
        raise ImageError(f"cannot read image {path}: decoding image files needs Pillow (`pip install pillow`); "
                         "pass a decoded array instead") from error
    try:
        with Image.open(path) as image:
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                warnings.warn(f"{path}: the file holds {frames} frames (animated or multi-page); the first is used",
                              ImageFramesWarning, stacklevel=3)
            image.load()
            if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
                image = ImageOps.exif_transpose(image)
            return _decoded_array(image)
    except Image.DecompressionBombError as error:
        raise ImageError(f"refusing to decode {path}: {error} (raise PIL.Image.MAX_IMAGE_PIXELS only for files "
                         "you trust, or downscale it first)") from error
    except FileNotFoundError as error:
        raise ImageError(f"image not found: {path}") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError) as error:
        raise ImageError(f"cannot read image {path}: {error}") from error


def check_pixel_count(height: int, width: int, max_pixels: int | None, source: str, hint: str) -> None:
    """Refuses an image larger than ``max_pixels`` (``None`` or 0: no limit).

    Args:
        height: Image height.
        width: Image width.
        max_pixels: The limit.
        source: The image, for the message.
        hint: How to get under the limit (API or CLI wording).

    Raises:
        ImageError: Over the limit; the message names both sizes and ``hint``.
    """
    if max_pixels and height * width > max_pixels:
        raise ImageError(f"{source}: {width}×{height} image ({height * width / 1e6:.1f} MP) is over the "
                         f"{max_pixels / 1e6:g} MP limit at native resolution; {hint}")


def load_image(image: str | Path | np.ndarray, color: str = "bgr") -> np.ndarray:
    """Loads an image as a contiguous uint8 H×W×3 BGR array.

    Args:
        image: A file path (decoded with its EXIF orientation applied), or an
            array taken as it is (H×W, H×W×1, H×W×3 or H×W×4; uint8; uint16,
            uint32/int32 scaled from their range; float holding 0–255 values).
        color: Channel order of an *array* input, ``"bgr"`` (cv2) or ``"rgb"``
            (Pillow, skimage). Files are always decoded correctly.

    Returns:
        The image in BGR order.

    Raises:
        ImageError: The file cannot be read, is not a regular file, or the
            array has an unsupported layout or a value range that makes no
            sense for its dtype.
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
