"""Calibration sets for INT8 quantization: images preprocessed exactly as the runtime does.

A :class:`CalibrationSet` is built from a folder of images: the file list is
sorted, ``N`` files are drawn with a seeded generator, and each image goes
through :func:`~featherface_deploy.postprocess.load_image` and
:func:`~featherface_deploy.postprocess.preprocess` with the model's
:class:`~featherface_deploy.contract.DecodeContract` at a fixed input size (so
the tensors stack into one batch). The result is cached as ``.npz`` under a
key that hashes the chosen images' bytes *and* the preprocessing parameters,
so a changed folder or a changed mean/size/layout never reuses stale data.

numpy only: nothing here imports torch or onnxruntime.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featherface_deploy.contract import DecodeContract
from featherface_deploy.file_writing import atomic_write_bytes
from featherface_deploy.errors import DatasetError, ImageError
from featherface_deploy.postprocess import load_image, preprocess

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
CACHE_ENV = "FEATHERFACE_CACHE"
_CACHE_FORMAT = 1  # bump when the cached content or its preprocessing code changes meaning


@dataclass(frozen=True)
class CalibrationConfig:
    """How a calibration set is sampled and preprocessed.

    Attributes:
        num_images: Images drawn from the folder (all of them if the folder has fewer).
        seed: Seed of the draw.
        input_size: (height, width) every image is fitted (aspect kept) and padded into.
            A model with a fixed input size always uses its own size instead.
    """

    num_images: int = 100
    seed: int = 0
    input_size: tuple[int, int] = (640, 640)


@dataclass(frozen=True)
class CalibrationSet:
    """Preprocessed calibration inputs and where they came from.

    Attributes:
        inputs: (N, 3, H, W) (or (N, H, W, 3) for NHWC models) float32 network inputs.
        files: Names (relative to the folder) of the images used, in order.
        digest: Content hash of images + preprocessing (the cache key).
        params: The preprocessing parameters that went into the hash.
        cache_path: The ``.npz`` the set was read from or written to (``None`` if not cached).
    """

    inputs: np.ndarray
    files: tuple[str, ...]
    digest: str
    params: dict
    cache_path: Path | None = None

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def batches(self, batch_size: int = 1):
        """Yields consecutive float32 batches of at most ``batch_size`` inputs."""
        for start in range(0, len(self), batch_size):
            yield self.inputs[start:start + batch_size]

    def describe(self) -> dict:
        """A JSON-ready summary (for the decode contract's ``extra``)."""
        return {"digest": self.digest, "images": len(self), "files": list(self.files), **self.params}


def default_cache_dir() -> Path:
    """Returns ``$FEATHERFACE_CACHE/calibration``, else ``~/.cache/featherface_deploy/calibration``."""
    root = os.environ.get(CACHE_ENV, "").strip()
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "featherface_deploy"
    return base / "calibration"


def list_image_files(folder: str | Path) -> list[Path]:
    """Returns the image files directly inside ``folder``, sorted by name.

    Raises:
        DatasetError: The folder does not exist or holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"calibration folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(
            f"calibration folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
            "point --calib-dir at a folder of representative photos"
        )
    return files


def check_calibration_dir(folder: str | Path) -> list[Path]:
    """Checks a calibration folder before any export work: it must hold images; one alone is warned about.

    Raises:
        DatasetError: The folder does not exist or holds no image file.
    """
    files = list_image_files(folder)
    if len(files) == 1:
        warnings.warn(f"calibration folder {folder} holds a single photo ({files[0].name}): INT8 scales taken from "
                      "one image fit that image, not your inputs; give about 100 representative photos",
                      UserWarning, stacklevel=2)
    return files


def choose_files(files: list[Path], num_images: int, seed: int) -> list[Path]:
    """Deterministic draw of ``num_images`` files (sorted order kept), or all if fewer."""
    if num_images < 1:
        raise DatasetError(f"num_images must be at least 1, got {num_images}")
    if num_images >= len(files):
        return list(files)
    picked = np.random.default_rng(seed).choice(len(files), size=num_images, replace=False)
    return [files[i] for i in sorted(picked.tolist())]


def preprocessing_params(contract: DecodeContract, config: CalibrationConfig) -> dict:
    """The parameters that decide the tensors' content, as hashed into the cache key."""
    size = contract.input_size or config.input_size
    return {
        "input_size": [int(size[0]), int(size[1])],
        "mean_bgr": [float(v) for v in contract.mean_bgr],
        "channel_order": contract.channel_order,
        "input_layout": contract.input_layout,
        "num_images": int(config.num_images),
        "seed": int(config.seed),
        "cache_format": _CACHE_FORMAT,
    }


def content_digest(files: list[Path], params: dict) -> str:
    """SHA-256 over the chosen files' names and bytes and the preprocessing parameters."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode("utf-8"))
    for path in files:
        digest.update(path.name.encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def build_calibration_set(folder: str | Path, contract: DecodeContract,
                          config: CalibrationConfig = CalibrationConfig(),
                          cache_dir: str | Path | None = None, use_cache: bool = True) -> CalibrationSet:
    """Builds (or reads from cache) the calibration set of a folder for one model.

    Args:
        folder: Folder of images (not searched recursively).
        contract: The model's decode contract (mean, layout, fixed input size).
        config: Sample size, seed and input size.
        cache_dir: Where ``<digest>.npz`` files live (default :func:`default_cache_dir`).
        use_cache: Read and write the cache.

    Returns:
        The calibration set.

    Raises:
        DatasetError: Missing folder, no image file, or no readable image.
    """
    folder = Path(folder)
    chosen = choose_files(list_image_files(folder), config.num_images, config.seed)
    params = preprocessing_params(contract, config)
    digest = content_digest(chosen, params)
    cache_path = Path(cache_dir or default_cache_dir()) / f"{digest}.npz"
    if use_cache:
        cached = _read_cache(cache_path, digest, params)
        if cached is not None:
            return cached
    inputs, used = _preprocess_files(folder, chosen, contract, tuple(params["input_size"]))
    result = CalibrationSet(inputs, tuple(used), digest, params, cache_path if use_cache else None)
    if use_cache:
        _write_cache(result)
    return result


def _preprocess_files(folder: Path, files: list[Path], contract: DecodeContract,
                      size: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    # A fixed canvas: each image is fitted (aspect kept) and padded with the mean colour,
    # exactly what the runtime does for a fixed-size model.
    fixed = contract.replace(input_size=size)
    tensors, used = [], []
    for path in files:
        try:
            tensor, _ = preprocess(load_image(path), fixed)
        except ImageError as error:
            warnings.warn(f"skipping unreadable calibration image: {error}", stacklevel=3)
            continue
        tensors.append(tensor.transpose(1, 2, 0) if contract.input_layout == "NHWC" else tensor)
        used.append(path.name)
    if not tensors:
        raise DatasetError(f"calibration folder {folder} has no readable image (all {len(files)} failed to decode)")
    return np.ascontiguousarray(np.stack(tensors), dtype=np.float32), used


def _read_cache(path: Path, digest: str, params: dict) -> CalibrationSet | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            inputs = np.ascontiguousarray(data["inputs"], dtype=np.float32)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as error:
        warnings.warn(f"ignoring unreadable calibration cache {path}: {error}", stacklevel=3)
        return None
    if meta.get("digest") != digest or meta.get("params") != params:
        return None
    return CalibrationSet(inputs, tuple(meta["files"]), digest, params, path)


def _write_cache(calibration: CalibrationSet) -> None:
    meta = {"digest": calibration.digest, "params": calibration.params, "files": list(calibration.files)}
    buffer = io.BytesIO()
    np.savez(buffer, inputs=calibration.inputs, meta=np.array(json.dumps(meta, sort_keys=True)))
    atomic_write_bytes(calibration.cache_path, buffer.getvalue())
