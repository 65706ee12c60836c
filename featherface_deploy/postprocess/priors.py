"""RetinaFace prior (anchor) boxes, cached per input size."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from featherface_deploy.contract import PriorConfig


@lru_cache(maxsize=32)
def generate_priors(config: PriorConfig, height: int, width: int) -> np.ndarray:
    """Returns the priors for an input size, as read-only (N, 4) float32 [cx, cy, w, h], normalised.

    Order: level, then row i, column j, then each min size — the head's reshape order.
    """
    per_level = []
    for step, sizes in zip(config.steps, config.min_sizes):
        rows, cols = -(-height // step), -(-width // step)
        cy, cx = np.meshgrid((np.arange(rows) + 0.5) * step / height, (np.arange(cols) + 0.5) * step / width,
                             indexing="ij")
        level = np.empty((rows, cols, len(sizes), 4), dtype=np.float64)
        level[..., 0] = cx[:, :, None]
        level[..., 1] = cy[:, :, None]
        level[..., 2] = np.asarray(sizes, dtype=np.float64) / width
        level[..., 3] = np.asarray(sizes, dtype=np.float64) / height
        per_level.append(level.reshape(-1, 4))
    priors = np.concatenate(per_level).astype(np.float32)
    if config.clip:
        np.clip(priors, 0.0, 1.0, out=priors)
    priors.setflags(write=False)
    return priors
