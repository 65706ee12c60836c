"""Shared pytest helpers for the featherface_deploy test-suite.

The large, read-only assets (datasets, checkpoints) live outside the repository
in a "shared" folder. Its location is ``$FEATHERFACE_SHARED`` when set, else
``<repo>/../shared``. Tests that need it skip with a clear reason when absent.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """Returns the folder that holds the shared, read-only test assets.

    Returns:
        ``Path(os.environ["FEATHERFACE_SHARED"])`` when that variable is set and
        non-empty, otherwise ``<repo>/../shared``. The folder may not exist;
        callers must check and skip.
    """
    env = os.environ.get("FEATHERFACE_SHARED", "").strip()
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared").resolve()
