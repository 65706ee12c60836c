"""WIDER FACE validation ground truth: the official ``.mat`` files and the image tree.

:func:`load_ground_truth` reads
``eval_tools/ground_truth/wider_{face,easy,medium,hard}_val.mat`` (boxes and
the per-setting keep lists) into a :class:`WiderGroundTruth`;
:func:`list_images` pairs it with the ``WIDER_val/images`` tree and
:func:`subset_ground_truth` restricts it to some images. numpy + scipy only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from featherface_deploy.errors import DatasetError

SETTINGS: tuple[str, str, str] = ("easy", "medium", "hard")
"""The three official difficulty settings, in reporting order."""

ImageKey = tuple[str, str]
"""``(event, image_name)``, e.g. ``("0--Parade", "0_Parade_Parade_0_194")``."""

_GT_SUBDIR = Path("eval_tools") / "ground_truth"
_IMAGES_SUBDIR = Path("WIDER_val") / "images"


@dataclass(frozen=True)
class WiderGroundTruth:
    """The official WIDER FACE validation ground truth.

    Attributes:
        images: Every ``(event, image_name)`` in the official order (events as
            in ``event_list``, images as in ``file_list``).
        boxes: ``(event, image_name)`` -> read-only float64 array ``(G, 4)`` of
            ``x, y, w, h`` face boxes (the official layout).
        keep: Setting name (``"easy"``, ``"medium"``, ``"hard"``) ->
            ``(event, image_name)`` -> read-only int64 array of the 1-based
            indices (into ``boxes``) of the faces that count in that setting.
            The other faces of the image are "ignored" in that setting.
    """

    images: tuple[ImageKey, ...]
    boxes: Mapping[ImageKey, np.ndarray]
    keep: Mapping[str, Mapping[ImageKey, np.ndarray]]

    @property
    def events(self) -> tuple[str, ...]:
        """The event folder names, in the official order."""
        return tuple(dict.fromkeys(event for event, _ in self.images))

    @property
    def num_images(self) -> int:
        """The number of validation images."""
        return len(self.images)

    @property
    def num_faces(self) -> int:
        """The total number of annotated faces (all settings, ignored too)."""
        return sum(len(b) for b in self.boxes.values())

    def num_kept(self, setting: str) -> int:
        """Counts the faces that count in one setting (``count_face``).

        Args:
            setting: ``"easy"``, ``"medium"`` or ``"hard"``.

        Returns:
            The number of kept faces over all images.

        Raises:
            KeyError: If ``setting`` is not one of :data:`SETTINGS`.
        """
        return sum(len(k) for k in self.keep[setting].values())


def _loadmat(path: Path, fields: Iterable[str]) -> dict:
    """Loads a .mat file and checks that it holds the given variables."""
    if not path.is_file():
        raise DatasetError(f"WIDER FACE ground-truth file not found: {path}")
    import scipy.io  # deferred: only evaluation needs scipy, and it is slow to import

    try:
        mat = scipy.io.loadmat(str(path))
    except (OSError, ValueError, TypeError, scipy.io.matlab.MatReadError) as exc:
        raise DatasetError(f"cannot read WIDER FACE ground truth {path}: {exc}") from exc
    missing = [f for f in fields if f not in mat]
    if missing:
        raise DatasetError(f"{path} lacks the variable(s) {', '.join(missing)}")
    return mat


def _cell_str(cell: np.ndarray) -> str:
    """Extracts the string from a MATLAB cell entry loaded by scipy."""
    return str(np.asarray(cell).ravel()[0])


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _read_face_mat(path: Path) -> tuple[tuple[ImageKey, ...], dict]:
    """Reads ``wider_face_val.mat`` into the image order and the boxes."""
    mat = _loadmat(path, ("event_list", "file_list", "face_bbx_list"))
    events, files, bbxs = mat["event_list"], mat["file_list"], mat["face_bbx_list"]
    if not len(events) == len(files) == len(bbxs):
        raise DatasetError(f"{path}: event_list, file_list and face_bbx_list differ in length")
    images: list[ImageKey] = []
    boxes: dict[ImageKey, np.ndarray] = {}
    for i in range(len(events)):
        event = _cell_str(events[i][0])
        names, event_boxes = files[i][0].ravel(), bbxs[i][0].ravel()
        if len(names) != len(event_boxes):
            raise DatasetError(f"{path}: event {event} has {len(names)} files "
                               f"but {len(event_boxes)} box lists")
        for name_cell, box_cell in zip(names, event_boxes):
            key = (event, _cell_str(name_cell))
            box = np.asarray(box_cell, dtype=np.float64)
            if box.size == 0:
                box = np.zeros((0, 4), dtype=np.float64)
            if box.ndim != 2 or box.shape[1] != 4:
                raise DatasetError(f"{path}: boxes of {key} have shape {box.shape}, "
                                   "expected (G, 4)")
            images.append(key)
            boxes[key] = _frozen(np.ascontiguousarray(box))
    return tuple(images), boxes


def _read_keep_mat(path: Path, images: tuple[ImageKey, ...],
                   boxes: Mapping[ImageKey, np.ndarray]) -> dict[ImageKey, np.ndarray]:
    """Reads one ``wider_<setting>_val.mat`` into 1-based keep indices."""
    mat = _loadmat(path, ("event_list", "file_list", "gt_list"))
    keys = [(_cell_str(mat["event_list"][i][0]), _cell_str(name))
            for i in range(len(mat["event_list"]))
            for name in mat["file_list"][i][0].ravel()]
    if tuple(keys) != images:
        raise DatasetError(f"{path}: its event/file lists differ from wider_face_val.mat")
    cells = [cell for i in range(len(mat["gt_list"])) for cell in mat["gt_list"][i][0].ravel()]
    if len(cells) != len(images):
        raise DatasetError(f"{path}: gt_list has {len(cells)} entries for {len(images)} images")
    keep: dict[ImageKey, np.ndarray] = {}
    for key, cell in zip(images, cells):
        idx = np.asarray(cell).astype(np.int64).ravel()  # stored as uint8/uint16
        if idx.size and (idx.min() < 1 or idx.max() > len(boxes[key])):
            raise DatasetError(f"{path}: keep indices of {key} are out of range")
        keep[key] = _frozen(idx)
    return keep


def load_ground_truth(widerface_root: str | os.PathLike) -> WiderGroundTruth:
    """Loads the official WIDER FACE validation ground truth.

    Reads ``<root>/eval_tools/ground_truth/wider_face_val.mat`` (boxes) and
    ``wider_{easy,medium,hard}_val.mat`` (per-setting keep lists).

    Args:
        widerface_root: The dataset folder holding ``eval_tools/`` (and
            ``WIDER_val/`` for :func:`list_images`).

    Returns:
        The ground truth, in the official image order.

    Raises:
        DatasetError: If a file is missing, unreadable or inconsistent; the
            message names the offending path.
    """
    gt_dir = Path(widerface_root) / _GT_SUBDIR
    if not gt_dir.is_dir():
        raise DatasetError(f"WIDER FACE ground-truth folder not found: {gt_dir}")
    images, boxes = _read_face_mat(gt_dir / "wider_face_val.mat")
    keep = {
        setting: MappingProxyType(
            _read_keep_mat(gt_dir / f"wider_{setting}_val.mat", images, boxes))
        for setting in SETTINGS
    }
    return WiderGroundTruth(images=images, boxes=MappingProxyType(boxes),
                            keep=MappingProxyType(keep))


def list_images(widerface_root: str | os.PathLike,
                ground_truth: WiderGroundTruth | None = None) -> list[tuple[str, str, Path]]:
    """Lists every validation image of the ground truth with its file path.

    Args:
        widerface_root: The dataset folder holding ``eval_tools/`` and
            ``WIDER_val/images/``.
        ground_truth: The folder's ground truth if already loaded (read from
            the ``.mat`` files otherwise).

    Returns:
        ``(event, image_name, <root>/WIDER_val/images/<event>/<image_name>.jpg)``
        for every image, in the official (deterministic) order.

    Raises:
        DatasetError: If the ground truth cannot be loaded or an image file is
            missing; the message names the missing path.
    """
    root = Path(widerface_root)
    gt = ground_truth if ground_truth is not None else load_ground_truth(root)
    images_dir = root / _IMAGES_SUBDIR
    if not images_dir.is_dir():
        raise DatasetError(f"WIDER FACE image folder not found: {images_dir}")
    out = []
    for event, name in gt.images:
        path = images_dir / event / f"{name}.jpg"
        if not path.is_file():
            raise DatasetError(f"WIDER FACE image not found: {path}")
        out.append((event, name, path))
    return out



def subset_ground_truth(ground_truth: WiderGroundTruth, keys: set[ImageKey]) -> WiderGroundTruth:
    """Restricts the ground truth to the given (event, image name) keys, in the official order."""
    images = tuple(key for key in ground_truth.images if key in keys)
    return WiderGroundTruth(
        images=images,
        boxes={key: ground_truth.boxes[key] for key in images},
        keep={setting: {key: kept[key] for key in images} for setting, kept in ground_truth.keep.items()},
    )
