"""The photo parity checks use by default: one public-domain portrait shipped inside the package.

``astronaut.jpg`` is NASA's portrait of astronaut Eileen Collins (public domain,
NASA image S94-34384), the copy scikit-image distributes as ``skimage.data.astronaut()``,
re-encoded as JPEG. A synthetic image finds no face, so a detection-level
check on it would compare nothing; this photo has one clear face.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PHOTO_NAMES = ("astronaut.jpg",)


def default_parity_images() -> list[Path]:
    """Paths of the shipped parity photos."""
    folder = resources.files("featherface_deploy") / "data"
    return [Path(str(folder / name)) for name in PHOTO_NAMES]
