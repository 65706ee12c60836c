"""RetinaFace box and landmark decoding (numpy)."""

from __future__ import annotations

import numpy as np


def decode_boxes(loc: np.ndarray, priors: np.ndarray, variance: tuple[float, float]) -> np.ndarray:
    """Decodes box deltas into normalised [x1, y1, x2, y2].

    Args:
        loc: (N, 4) deltas.
        priors: (N, 4) [cx, cy, w, h] priors, normalised.
        variance: Centre and size variances.

    Returns:
        (N, 4) corners in normalised coordinates.
    """
    centre = priors[:, :2] + loc[:, :2] * variance[0] * priors[:, 2:]
    size = priors[:, 2:] * np.exp(loc[:, 2:] * variance[1])
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)


def decode_landmarks(deltas: np.ndarray, priors: np.ndarray, variance: tuple[float, float]) -> np.ndarray:
    """Decodes landmark deltas into normalised points.

    Args:
        deltas: (N, 10) deltas, five (x, y) pairs.
        priors: (N, 4) priors.
        variance: Centre and size variances (only the first is used).

    Returns:
        (N, 5, 2) points in normalised coordinates.
    """
    points = deltas.reshape(-1, 5, 2)
    return priors[:, None, :2] + points * variance[0] * priors[:, None, 2:]
