"""The detection result type returned by every runtime."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """Faces found in one image, in original image pixels, best score first.

    Attributes:
        boxes: (N, 4) float32 [x1, y1, x2, y2].
        scores: (N,) float32 face probabilities.
        landmarks: (N, 5, 2) float32 points: image-left eye, image-right eye,
            nose, left and right mouth corners.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def empty(cls) -> "Detections":
        """Returns a result with no faces (correctly shaped empty arrays)."""
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return len(self.scores)

    def to_list(self) -> list[dict]:
        """Returns the faces as JSON-ready dicts (box, score, landmarks)."""
        return [
            {
                "box": [round(float(v), 2) for v in box],
                "score": round(float(score), 5),
                "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in points],
            }
            for box, score, points in zip(self.boxes, self.scores, self.landmarks)
        ]
