"""Seeded random modules that leave torch's global random state as it was (no test depends on test order)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

Built = TypeVar("Built")


def seeded(build: Callable[[], Built], seed: int) -> Built:
    """Returns ``build()`` called with torch's random generator seeded to ``seed``; the global state is restored.

    Registered architectures have :func:`~featherface_deploy.models.registry.create_untrained_model`;
    this is for the other modules tests build (probes, single blocks).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded to ``seed``, for ``torch.randn(..., generator=...)``."""
    return torch.Generator().manual_seed(seed)
