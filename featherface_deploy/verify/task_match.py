"""One-to-one comparison of MediaPipe's task output with our own decoding of the same file and input.

The task reads our ``location`` tensor in its own order (YXHW, keypoints as
(y, x)); a transposed order still finds "some faces", so the check is a
match against our decoding: every detection of ours ≥ the threshold must
have its counterpart, with the same score and landmarks. The task's boxes are
integer pixels (truncated), so boxes are compared by IoU and by the largest
corner difference, landmarks in float.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from featherface_deploy.postprocess import Detections
from featherface_deploy.postprocess.nms import iou_matrix


@dataclass(frozen=True)
class TaskMatch:
    """How the task's detections match ours on one or more images.

    Attributes:
        ours: Our detections.
        task: The task's detections.
        matched: One-to-one pairs with IoU ≥ ``min_iou``.
        rate: matched / max(ours, task) (1.0 when both are empty).
        min_iou: Smallest IoU among pairs.
        max_box_px: Largest box-corner difference among pairs, in pixels.
        max_landmark_px: Largest landmark difference among pairs, in pixels.
        max_score_diff: Largest score difference among pairs.
    """

    ours: int = 0
    task: int = 0
    matched: int = 0
    min_iou: float = 1.0
    max_box_px: float = 0.0
    max_landmark_px: float = 0.0
    max_score_diff: float = 0.0

    @property
    def rate(self) -> float:
        """matched / max(ours, task)."""
        total = max(self.ours, self.task)
        return self.matched / total if total else 1.0

    def to_dict(self) -> dict:
        """JSON-ready, with the rate."""
        return {**asdict(self), "rate": self.rate}

    def __add__(self, other: "TaskMatch") -> "TaskMatch":
        return TaskMatch(self.ours + other.ours, self.task + other.task, self.matched + other.matched,
                         min(self.min_iou, other.min_iou), max(self.max_box_px, other.max_box_px),
                         max(self.max_landmark_px, other.max_landmark_px),
                         max(self.max_score_diff, other.max_score_diff))


def match_task(ours: Detections, task: Detections, min_iou: float = 0.5) -> TaskMatch:
    """Greedy one-to-one matching, ours best first, each to the unused task detection of highest IoU."""
    if not len(ours) or not len(task):
        return TaskMatch(len(ours), len(task))
    iou = iou_matrix(ours.boxes, task.boxes)
    used = np.zeros(len(task), dtype=bool)
    pairs = []
    for i in range(len(ours)):
        candidates = np.where(used, -1.0, iou[i])
        j = int(np.argmax(candidates))
        if candidates[j] >= min_iou:
            used[j] = True
            pairs.append((i, j))
    if not pairs:
        return TaskMatch(len(ours), len(task))
    mine, theirs = (np.array(side) for side in zip(*pairs))
    return TaskMatch(
        len(ours), len(task), len(pairs), float(iou[mine, theirs].min()),
        float(np.abs(ours.boxes[mine] - task.boxes[theirs]).max()),
        float(np.abs(ours.landmarks[mine] - task.landmarks[theirs]).max()),
        float(np.abs(ours.scores[mine] - task.scores[theirs]).max()))
