"""The separate Python environment MediaPipe's ObjectDetector task runs in (``.venv-mediapipe``).

``mediapipe`` cannot go into the project's environment: it requires
``opencv-contrib-python``, which installs the same ``cv2`` package as the
``opencv-python-headless`` of the ``peers`` extra (installing or removing one
breaks the other), and it brings its own numpy pin and TFLite. It *can* share
a process with ``ai-edge-litert`` (both import and run side by side in one
environment), but the OpenCV clash rules out one environment, so the task runs
in a worker process (:mod:`~featherface_deploy.runtimes.mediapipe_worker`) with
this environment's Python.

``python -m featherface_deploy.runtimes.mediapipe_env`` creates it at the
repository root (``.venv-mediapipe``; ``--path`` elsewhere) with the pinned
``mediapipe``; :func:`task_python` finds it (``FEATHERFACE_MEDIAPIPE_PYTHON``
overrides). Standard library only, so CI runs it as a script
(``python3 featherface_deploy/runtimes/mediapipe_env.py``) before the
project is installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

MEDIAPIPE_REQUIREMENT = "mediapipe==1.2.2"
ENV_VARIABLE = "FEATHERFACE_MEDIAPIPE_PYTHON"
DEFAULT_ENV = Path(__file__).resolve().parents[2] / ".venv-mediapipe"
INSTALL_HINT = ("MediaPipe's ObjectDetector task is not installed: run `python -m featherface_deploy.runtimes."
                f"mediapipe_env` (makes .venv-mediapipe with {MEDIAPIPE_REQUIREMENT}; never in this environment, "
                f"its opencv-contrib-python clashes with the peers extra), or set {ENV_VARIABLE} to a Python that has "
                "`pip install 'featherface-deploy[mediapipe]'`")


def env_python(env: Path) -> Path:
    """The interpreter of a virtual environment (POSIX or Windows layout)."""
    posix = env / "bin" / "python"
    return posix if posix.exists() or os.name != "nt" else env / "Scripts" / "python.exe"


def task_python() -> Path | None:
    """The Python that runs the task: ``$FEATHERFACE_MEDIAPIPE_PYTHON``, ``.venv-mediapipe``, or this one if it has
    ``mediapipe``; ``None`` when there is none."""
    configured = os.environ.get(ENV_VARIABLE)
    if configured:
        return Path(configured) if Path(configured).exists() else None
    candidate = env_python(DEFAULT_ENV)
    if candidate.exists():
        return candidate
    if importlib.util.find_spec("mediapipe") is not None:
        return Path(sys.executable)
    return None


def create(env: Path = DEFAULT_ENV, python: str = sys.executable) -> Path:
    """Creates (or completes) the environment with the pinned mediapipe; returns its interpreter.

    Raises:
        subprocess.CalledProcessError: venv or pip failed (pip's own output explains why).
    """
    interpreter = env_python(env)
    if not interpreter.exists():
        subprocess.run([python, "-m", "venv", str(env)], check=True)
    subprocess.run([str(interpreter), "-m", "pip", "install", "-q", MEDIAPIPE_REQUIREMENT], check=True)
    return interpreter


def main(argv: list[str] | None = None) -> int:
    """CLI: create the environment and print its interpreter."""
    parser = argparse.ArgumentParser(description="Create the environment MediaPipe's ObjectDetector task runs in.")
    parser.add_argument("--path", type=Path, default=DEFAULT_ENV, help=f"where (default {DEFAULT_ENV})")
    args = parser.parse_args(argv)
    try:
        interpreter = create(args.path)
    except subprocess.CalledProcessError as error:
        print(f"error: could not create {args.path}: {error}", file=sys.stderr)
        return 1
    print(interpreter)
    return 0


if __name__ == "__main__":
    sys.exit(main())
