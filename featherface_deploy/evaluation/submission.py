"""WIDER FACE submission files: the official ``<dir>/<event>/<image>.txt`` layout.

:func:`write_predictions` writes detections as the official tools read them
(image name, face count, one ``x y w h score`` line per face);
:func:`read_predictions` reads such a folder back into
``{(event, image_name): [x1, y1, x2, y2, score] rows}``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from featherface_deploy.errors import DatasetError, EvaluationError
from featherface_deploy.evaluation.ground_truth import ImageKey
from featherface_deploy.evaluation.protocol import checked_predictions
from featherface_deploy.outputs import claim_output


def _format_file(name: str, pred: np.ndarray) -> str:
    """Renders one submission file (name, count, ``x y w h score`` lines)."""
    lines = [name, str(len(pred))]
    for x1, y1, x2, y2, score in pred.tolist():
        lines.append(" ".join(repr(float(v)) for v in (x1, y1, x2 - x1, y2 - y1, score)))
    return "\n".join(lines) + "\n"


def write_predictions(predictions: Mapping[ImageKey, np.ndarray], out_dir: str | os.PathLike,
                      exist_ok: bool = False, inputs: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """Writes detections in the official submission layout, as a whole.

    One file ``<out_dir>/<event>/<image_name>.txt`` per image: line 1 the
    image name (no ``.jpg``), line 2 the number of faces, then one
    ``x y w h score`` line per face (``w = x2 - x1``, ``h = y2 - y1``, floats
    written with round-trip precision). The set is written as a whole
    (:func:`~featherface_deploy.outputs.claim_output`): built in a staging
    folder and renamed into place, so an interrupted run leaves no partial set
    and an existing folder is replaced whole (``exist_ok``), never mixed with
    the new files.

    Args:
        predictions: ``(event, image_name)`` -> float array ``(N, 5)`` of
            ``[x1, y1, x2, y2, score]`` rows.
        out_dir: The submission folder (an existing one only with ``exist_ok``).
        exist_ok: Replace an existing folder.
        inputs: What the run read (the dataset, the model): the folder may not be or hold one.

    Returns:
        The paths written, in the iteration order of ``predictions``.

    Raises:
        EvaluationError: If a prediction array is not ``(N, 5)`` or holds NaN/inf,
            or an event/image name is not a plain file name.
        OutputError: The folder breaks the output rules.
    """
    root = Path(out_dir)
    files = {}
    for (event, name), value in predictions.items():
        for part in (event, name):
            if not part or part in (".", "..") or "/" in part or os.sep in part:
                raise EvaluationError(f"invalid event or image name in key {(event, name)!r}")
        files[Path(event) / f"{name}.txt"] = _format_file(name, checked_predictions((event, name), value))
    with claim_output(root, inputs, exist_ok, folder=True) as claim:
        staged = claim.staged()
        staged.mkdir()
        for relative, text in files.items():
            (staged / relative).parent.mkdir(exist_ok=True)
            (staged / relative).write_text(text, encoding="utf-8")
        claim.publish()
    return [root / relative for relative in files]


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
