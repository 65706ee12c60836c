"""Image packs: decoded images, already fitted to a model, in one ``.npz`` file pushed to a device once.

The host decodes and fits the images with the package's own :func:`~featherface_deploy.postprocess.load_image`
and :func:`~featherface_deploy.postprocess.fit_image`; the device reads them back with numpy only (no image
codec, no Pillow) and runs the rest of the shared preprocessing itself. Each entry keeps its original size,
so the device rebuilds exactly the :class:`~featherface_deploy.postprocess.Transform` the host would have.

Layout: arrays ``image_0000``, ``image_0001``… (uint8 H×W×3 BGR) and ``manifest``, the UTF-8 JSON list
``[{"key": [...], "original_size": [h, w]}, ...]`` in the same order.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import List, NamedTuple

import numpy as np

from featherface_deploy.contract import atomic_write_bytes
from featherface_deploy.errors import DatasetError
from featherface_deploy.postprocess import Transform


class PackedImage(NamedTuple):
    """One image of a pack.

    Attributes:
        key: What the image is (e.g. ``[event, name]`` for WIDER FACE, or ``[file name]``).
        image: The fitted uint8 H×W×3 BGR image.
        transform: From original pixels to the fitted image.
    """

    key: list
    image: np.ndarray
    transform: Transform


def pack_digest(entries: List[PackedImage]) -> str:
    """Content hash of a pack (keys, original sizes and pixels), the name it is cached under on a device."""
    digest = hashlib.sha256()
    for entry in entries:
        digest.update(json.dumps([entry.key, list(entry.transform.original_size)]).encode("utf-8"))
        digest.update(str(entry.image.shape).encode("ascii"))
        digest.update(np.ascontiguousarray(entry.image).tobytes())
    return digest.hexdigest()[:16]


def write_pack(entries: List[PackedImage], path: str | Path) -> Path:
    """Writes a pack atomically (zlib-compressed ``.npz``).

    Returns:
        The path written.
    """
    manifest = [{"key": list(entry.key), "original_size": list(entry.transform.original_size)}
                for entry in entries]
    arrays = {f"image_{i:04d}": np.ascontiguousarray(entry.image, dtype=np.uint8) for i, entry in enumerate(entries)}
    arrays["manifest"] = np.frombuffer(json.dumps(manifest).encode("utf-8"), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def read_pack(path: str | Path) -> List[PackedImage]:
    """Reads a pack written by :func:`write_pack`.

    Raises:
        DatasetError: The file is missing or is not an image pack.
    """
    try:
        with np.load(str(path), allow_pickle=False) as data:
            manifest = json.loads(bytes(data["manifest"]).decode("utf-8"))
            entries = []
            for i, item in enumerate(manifest):
                image = data[f"image_{i:04d}"]
                height, width = (int(v) for v in item["original_size"])
                transform = Transform(image.shape[1] / width, image.shape[0] / height, (height, width))
                entries.append(PackedImage(list(item["key"]), image, transform))
    except (OSError, KeyError, ValueError) as error:
        raise DatasetError(f"{path} is not a readable image pack ({error})") from error
    return entries
