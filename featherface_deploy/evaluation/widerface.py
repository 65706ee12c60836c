"""WIDER FACE validation protocol: ground truth, submission files and AP.

This module owns everything needed to score face detections on WIDER FACE
the way the official MATLAB eval tools do (as ported to Python in the
well-known ``widerface_evaluate/evaluation.py``), in numpy + scipy only:

* :func:`load_ground_truth` / :func:`list_images` read the official
  ``eval_tools/ground_truth/wider_{face,easy,medium,hard}_val.mat`` files and
  the ``WIDER_val/images`` tree.
* :func:`evaluate` computes the Easy / Medium / Hard average precision with
  the official procedure: global score normalisation, 1000 score thresholds,
  greedy per-detection IoU matching with the "+1" pixel convention, faces
  outside a setting's keep list ignored, and the VOC all-point AP.
* :func:`write_predictions` / :func:`read_predictions` write and read the
  official submission layout ``<dir>/<event>/<image>.txt``.

Predictions are always ``{(event, image_name): array (N, 5)}`` with rows
``[x1, y1, x2, y2, score]`` in image pixels; the conversion to the official
``x, y, w, h`` layout happens inside this module.

Deliberate differences from the Python port, none of which changes the
result for a well-formed submission:

* Detections are sorted by descending score (stable) before matching, as the
  MATLAB ``read_pred.m`` does; the Python port assumes files are sorted.
  With sorted input the result is identical to the port's.
* If every score is identical the official normalisation divides 0 by 0; here
  all normalised scores become 1.0 instead (every detection counts at every
  threshold).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from featherface_deploy.errors import DatasetError
from featherface_deploy.file_writing import atomic_write_text

SETTINGS: tuple[str, str, str] = ("easy", "medium", "hard")
"""The three official difficulty settings, in reporting order."""

THRESH_NUM = 1000
"""Number of score thresholds of the official PR curve (``thresh_num``)."""

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


@dataclass(frozen=True)
class WiderFaceAP:
    """Average precision on the three WIDER FACE settings, each in [0, 1].

    A setting whose ground truth has no face at all gets NaN.

    Attributes:
        easy: AP on the Easy setting.
        medium: AP on the Medium setting.
        hard: AP on the Hard setting.
    """

    easy: float
    medium: float
    hard: float

    @property
    def percentages(self) -> dict[str, float]:
        """The three APs in percent, keyed by setting name."""
        return {name: 100.0 * getattr(self, name) for name in SETTINGS}

    def format(self, digits: int = 2) -> str:
        """Formats the APs as percentages on one line.

        Args:
            digits: Decimal places of each percentage.

        Returns:
            For example ``"Easy 92.70% | Medium 90.12% | Hard 78.00%"``.
        """
        return " | ".join(
            f"{name.capitalize()} {value:.{digits}f}%"
            for name, value in self.percentages.items()
        )

    def __str__(self) -> str:
        return self.format()


# --------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def _validated(key: ImageKey, pred: np.ndarray) -> np.ndarray:
    """Checks one image's ``[x1, y1, x2, y2, s]`` rows; returns them as float64 ``(N, 5)``."""
    arr = np.asarray(pred, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 5), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise ValueError(f"predictions for {key} have shape {arr.shape}, expected (N, 5)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"predictions for {key} contain NaN or infinite values")
    return arr


def _official_layout(key: ImageKey, pred: np.ndarray) -> np.ndarray:
    """Validates ``[x1, y1, x2, y2, s]`` rows and converts them to ``[x, y, w, h, s]``."""
    out = _validated(key, pred).copy()
    out[:, 2] = out[:, 2] - out[:, 0]
    out[:, 3] = out[:, 3] - out[:, 1]
    return out


def _normalise_scores(preds: Mapping[ImageKey, np.ndarray]) -> None:
    """Official ``norm_score``, in place: (s - min) / (max - min) over all images.

    As in the official port the running max starts at 0 and the min at 1.
    """
    non_empty = [p for p in preds.values() if len(p)]
    max_score = max([0.0] + [float(p[:, 4].max()) for p in non_empty])
    min_score = min([1.0] + [float(p[:, 4].min()) for p in non_empty])
    diff = max_score - min_score
    for p in non_empty:
        if diff == 0:  # official code would produce NaN here
            p[:, 4] = 1.0
        else:
            p[:, 4] = (p[:, 4] - min_score) / diff


def _bbox_overlaps(boxes: np.ndarray, query_boxes: np.ndarray) -> np.ndarray:
    """IoU matrix (N, K) of corner boxes with the official "+1" pixel convention.

    Mirrors the official ``bbox_overlaps`` (Cython) operation by operation.
    """
    b, q = boxes[:, None, :], query_boxes[None, :, :]
    iw = np.minimum(b[..., 2], q[..., 2]) - np.maximum(b[..., 0], q[..., 0]) + 1
    ih = np.minimum(b[..., 3], q[..., 3]) - np.maximum(b[..., 1], q[..., 1]) + 1
    box_area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    query_area = (query_boxes[:, 2] - query_boxes[:, 0] + 1) * (
        query_boxes[:, 3] - query_boxes[:, 1] + 1)
    inter = iw * ih
    valid = (iw > 0) & (ih > 0)
    ua = box_area[:, None] + query_area[None, :] - inter
    out = np.zeros(inter.shape, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(inter, ua, out=out, where=valid)
    return out


def _match(pred: np.ndarray, gt: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Best gt (argmax IoU) of each detection and whether it clears the threshold.

    Args:
        pred: ``(N, 5)`` ``[x, y, w, h, s]`` detections, N >= 1.
        gt: ``(G, 4)`` ``[x, y, w, h]`` faces, G >= 1.
        iou_threshold: Minimum IoU of a match.

    Returns:
        ``(best_gt, matched)``: int array ``(N,)`` and bool array ``(N,)``.
    """
    p = pred[:, :4].copy()
    g = gt.copy()
    p[:, 2] = p[:, 2] + p[:, 0]
    p[:, 3] = p[:, 3] + p[:, 1]
    g[:, 2] = g[:, 2] + g[:, 0]
    g[:, 3] = g[:, 3] + g[:, 1]
    overlaps = _bbox_overlaps(p, g)
    best = overlaps.argmax(axis=1)
    best_overlap = overlaps[np.arange(len(p)), best]
    return best, best_overlap >= iou_threshold


def _image_pr_info(scores: np.ndarray, best: np.ndarray, matched: np.ndarray,
                   keep_mask: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Vectorised official ``image_eval`` + ``img_pr_info`` for one image.

    Args:
        scores: ``(N,)`` normalised scores, sorted descending.
        best: ``(N,)`` index of each detection's best-IoU gt face.
        matched: ``(N,)`` whether that IoU clears the threshold.
        keep_mask: ``(G,)`` True for faces that count in the setting.
        thresholds: ``(T,)`` the official score thresholds.

    Returns:
        ``(T, 2)`` array: [number of proposals, number of recalled faces]
        at each threshold, counting only detections with score >= threshold.
    """
    n = len(scores)
    hits_kept = matched & keep_mask[best]
    # proposal_list: -1 for a detection matched to an ignored face, else 1.
    proposal_ok = ~(matched & ~keep_mask[best])
    # pred_recall[h]: distinct kept faces recalled by detections 0..h.
    hit_idx = np.flatnonzero(hits_kept)
    _, first = np.unique(best[hit_idx], return_index=True)
    pred_recall = np.cumsum(np.bincount(hit_idx[first], minlength=n))
    proposals = np.cumsum(proposal_ok)
    # r_index = last detection with score >= thresh (scores sorted descending).
    count = n - np.searchsorted(scores[::-1], thresholds, side="left")
    r_index = np.maximum(count - 1, 0)
    info = np.stack([proposals[r_index], pred_recall[r_index]], axis=1).astype(np.float64)
    info[count == 0] = 0.0
    return info


def _voc_ap(rec: np.ndarray, prec: np.ndarray) -> float:
    """VOC all-point interpolated AP under the precision envelope (official ``voc_ap``)."""
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # NaN propagates as in the loop
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _prepare(predictions: Mapping[ImageKey, np.ndarray]) -> dict[ImageKey, np.ndarray]:
    """Converts, normalises and sorts (descending score, stable) all detections."""
    preds = {key: _official_layout(key, value) for key, value in predictions.items()}
    _normalise_scores(preds)
    for key, p in preds.items():
        preds[key] = p[np.argsort(-p[:, 4], kind="stable")]
    return preds


def evaluate(predictions: Mapping[ImageKey, np.ndarray], ground_truth: WiderGroundTruth,
             iou_threshold: float = 0.5) -> WiderFaceAP:
    """Scores detections with the official WIDER FACE protocol.

    Args:
        predictions: ``(event, image_name)`` -> float array ``(N, 5)`` of
            ``[x1, y1, x2, y2, score]`` rows in image pixels. Ground-truth
            images that are absent count as having no detections. Extra keys
            take part in the (global) score normalisation only, as in the
            official code.
        ground_truth: From :func:`load_ground_truth`.
        iou_threshold: Minimum IoU (official "+1" convention) of a match.

    Returns:
        The Easy / Medium / Hard average precision; NaN for a setting without
        any kept face in ``ground_truth`` (possible on a small subset).

    Raises:
        ValueError: If a prediction array is not ``(N, 5)`` or holds NaN/inf.
    """
    preds = _prepare(predictions)
    thresholds = 1 - (np.arange(THRESH_NUM) + 1) / THRESH_NUM
    curves = {s: np.zeros((THRESH_NUM, 2)) for s in SETTINGS}
    for key in ground_truth.images:
        pred, gt = preds.get(key), ground_truth.boxes[key]
        if pred is None or len(pred) == 0 or len(gt) == 0:
            continue
        best, matched = _match(pred, gt, iou_threshold)
        for setting in SETTINGS:
            keep_mask = np.zeros(len(gt), dtype=bool)
            keep_mask[ground_truth.keep[setting][key] - 1] = True
            curves[setting] += _image_pr_info(pred[:, 4], best, matched, keep_mask, thresholds)
    aps = []
    for setting in SETTINGS:
        count_face = ground_truth.num_kept(setting)
        if count_face == 0:  # e.g. a tiny subset: AP is undefined
            aps.append(float("nan"))
            continue
        curve = curves[setting]
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = curve[:, 1] / curve[:, 0]  # 0/0 -> NaN, as official
        aps.append(_voc_ap(curve[:, 1] / count_face, precision))
    return WiderFaceAP(*aps)


# --------------------------------------------------------------------------
# Submission layout
# --------------------------------------------------------------------------


def _format_file(name: str, pred: np.ndarray) -> str:
    """Renders one submission file (name, count, ``x y w h score`` lines)."""
    lines = [name, str(len(pred))]
    for x1, y1, x2, y2, score in pred.tolist():
        lines.append(" ".join(repr(float(v)) for v in (x1, y1, x2 - x1, y2 - y1, score)))
    return "\n".join(lines) + "\n"


def write_predictions(predictions: Mapping[ImageKey, np.ndarray],
                      out_dir: str | os.PathLike) -> list[Path]:
    """Writes detections in the official submission layout.

    One file ``<out_dir>/<event>/<image_name>.txt`` per image: line 1 the
    image name (no ``.jpg``), line 2 the number of faces, then one
    ``x y w h score`` line per face (``w = x2 - x1``, ``h = y2 - y1``, floats
    written with round-trip precision). Each file is written atomically.

    Args:
        predictions: ``(event, image_name)`` -> float array ``(N, 5)`` of
            ``[x1, y1, x2, y2, score]`` rows.
        out_dir: The submission folder; created if needed.

    Returns:
        The paths written, in the iteration order of ``predictions``.

    Raises:
        ValueError: If a prediction array is not ``(N, 5)`` or holds NaN/inf,
            or an event/image name is not a plain file name.
    """
    root = Path(out_dir)
    written = []
    for (event, name), value in predictions.items():
        for part in (event, name):
            if not part or part in (".", "..") or "/" in part or os.sep in part:
                raise ValueError(f"invalid event or image name in key {(event, name)!r}")
        pred = _validated((event, name), value)
        path = root / event / f"{name}.txt"
        atomic_write_text(path, _format_file(name, pred))
        written.append(path)
    return written


def _parse_file(path: Path) -> tuple[str, np.ndarray]:
    """Parses one submission file into (image name, ``[x1, y1, x2, y2, s]`` rows)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read prediction file {path}: {exc}") from exc
    if len(lines) < 2:
        raise DatasetError(f"prediction file {path} has fewer than 2 lines")
    name = lines[0].strip().replace("\\", "/").split("/")[-1].removesuffix(".jpg") or path.stem
    rows = [line.split() for line in lines[2:] if line.strip()]
    if any(len(row) < 5 for row in rows):
        raise DatasetError(f"prediction file {path}: every box line needs 5 numbers")
    try:
        count = int(float(lines[1].strip()))
        boxes = np.array([[float(v) for v in row[:5]] for row in rows],
                         dtype=np.float64).reshape(-1, 5)
    except ValueError as exc:
        raise DatasetError(f"prediction file {path} is malformed: {exc}") from exc
    if count != len(boxes):
        raise DatasetError(f"prediction file {path} announces {count} faces but has {len(boxes)}")
    boxes[:, 2] = boxes[:, 0] + boxes[:, 2]
    boxes[:, 3] = boxes[:, 1] + boxes[:, 3]
    return name, boxes


def read_predictions(pred_dir: str | os.PathLike) -> dict[ImageKey, np.ndarray]:
    """Reads a submission folder in the official layout.

    Each ``<pred_dir>/<event>/*.txt`` file becomes one entry; the image name is
    taken from the file's first line (directory and ``.jpg`` stripped), as the
    official tools do. Other files and folders are skipped.

    Args:
        pred_dir: The submission folder.

    Returns:
        ``(event, image_name)`` -> float64 array ``(N, 5)`` of
        ``[x1, y1, x2, y2, score]`` rows (``x2 = x + w``, ``y2 = y + h``), in
        sorted event / file order.

    Raises:
        DatasetError: If the folder is missing or a file is malformed (its
            face count disagrees with its box lines, a number does not parse,
            or two files name the same image).
    """
    root = Path(pred_dir)
    if not root.is_dir():
        raise DatasetError(f"prediction folder not found: {root}")
    out: dict[ImageKey, np.ndarray] = {}
    for event_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(event_dir.glob("*.txt")):
            name, boxes = _parse_file(path)
            key = (event_dir.name, name)
            if key in out:
                raise DatasetError(f"prediction file {path} repeats image {key}")
            out[key] = boxes
    return out
