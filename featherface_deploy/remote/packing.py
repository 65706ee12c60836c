"""Image packs, host side: decode and fit images for one model, exactly as a local run would; and the model's
contract, which the device's runner reads too (to size its synthetic images)."""

from __future__ import annotations

from pathlib import Path

from featherface_deploy.contract import DecodeContract
from featherface_deploy.postprocess import fit_image, load_image
from featherface_deploy.remote.image_pack import PackedImage


def model_contract(model: str | Path) -> DecodeContract:
    """The decode contract of a model file (:func:`~featherface_deploy.metadata.read_model_contract`: its own
    metadata and its sidecar, which must agree).

    Raises:
        FeatherFaceError: No contract, or the runtime needed to read it is not installed.
    """
    from featherface_deploy.metadata import read_model_contract

    return read_model_contract(model)


def pack_images(keyed_paths: list[tuple[list, str | Path]], contract: DecodeContract,
                size: tuple[int, int] | None = None) -> list[PackedImage]:
    """Loads and fits images for a model, as :class:`~featherface_deploy.FaceDetector` would before inference.

    Args:
        keyed_paths: ``(key, image path)`` pairs; the key names the image in the device's results.
        contract: The model's contract (input size, mean).
        size: Resize box for any-size models (``--imgsz``); ``None``: native resolution.

    Raises:
        ImageError: An image cannot be read.
    """
    entries = []
    for key, path in keyed_paths:
        fitted, transform = fit_image(load_image(path), contract, size)
        entries.append(PackedImage(list(key), fitted, transform))
    return entries
