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


import pytest  # noqa: E402


def shared_path(*parts: str) -> Path:
    """Returns a path inside the shared folder, skipping the test when it is absent."""
    path = shared_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared asset {path} not found (set FEATHERFACE_SHARED to the shared folder)")
    return path


@pytest.fixture(scope="session")
def v1_weights() -> Path:
    """The trained FeatherFace V1 checkpoint."""
    return shared_path("weights", "featherface-v1.pth")


@pytest.fixture(scope="session")
def v2_weights() -> Path:
    """The trained FeatherFace V2 (Coordinate Attention) checkpoint."""
    return shared_path("weights", "featherface-v2-ca.pth")


@pytest.fixture(scope="session")
def widerface_root() -> Path:
    """The 200-image WIDER FACE val subset in the official layout."""
    return shared_path("data", "widerface-val-416")


@pytest.fixture(scope="session")
def calibration_dir() -> Path:
    """The calibration photos (never evaluation images)."""
    return shared_path("data", "calibration")


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keeps calibration caches written by tests out of the user's home."""
    os.environ["FEATHERFACE_CACHE"] = str(tmp_path_factory.mktemp("featherface-cache"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A seeded, randomly initialised ``featherface-tiny`` checkpoint (fast tests; no trained weights)."""
    import torch

    from featherface_deploy.models.registry import create_untrained_model

    path = tmp_path_factory.mktemp("tiny") / "tiny.pth"
    torch.save(create_untrained_model("featherface-tiny", 0).state_dict(), path)
    return path


def export_row(source, out, row: str, parity_images=(), tolerances=None, scratch=None, **options):
    """Exports ``source`` to format row ``row`` through the pipeline (the one gated path), options as keywords."""
    from featherface_deploy.pipeline import export_model

    return export_model(source, out, row, options, parity_images=parity_images, tolerances=tolerances,
                        scratch=scratch)


def requires_backend(row: str, action: str = "run") -> None:
    """Skips the calling test module (or test) unless the format table says ``row`` can ``action`` here.

    The reason is the table's own (the missing package and the pip extra that installs it, or the
    platform), so every capability skip reads the same and follows the table.
    """
    from featherface_deploy.formats import get_format

    fmt = get_format(row)
    ok, why = fmt.exports_here() if action == "export" else fmt.runs_here()
    if not ok:
        pytest.skip(f"{row} cannot {action} here: {why}", allow_module_level=True)


@pytest.fixture(scope="session")
def tiny_onnx(artifacts) -> Path:
    """A seeded ``featherface-tiny`` exported to ONNX (dynamic batch, height, width) with its sidecar (read-only)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    return artifacts.get("onnx", imgsz=(64, 64), dynamic=True, simplify=False)


@pytest.fixture(scope="session")
def tiny_coreml(artifacts) -> Path:
    """The seeded tiny model (``tiny_checkpoint``'s weights) as a 64×64 Core ML package with its sidecar (read-only)."""
    requires_backend("coreml", "export")
    path = artifacts.get("coreml", imgsz=(64, 64))
    assert path.is_dir() and (path / "Manifest.json").is_file()
    return path


@pytest.fixture(scope="session")
def artifacts(request, tmp_path_factory):
    """The artifact factory: ``artifacts.get(row, **options)`` is the path of a seeded tiny model exported once.

    Entries live in pytest's cache (``.pytest_cache/d/featherface-artifacts``; ``--cache-clear`` empties it),
    keyed by the code that builds them (see ``tests/support/artifacts.py``); with ``-p no:cacheprovider``
    they live in the session's temporary folder (the one xdist's workers share).
    """
    from support.artifacts import ArtifactFactory

    cache = getattr(request.config, "cache", None)
    if cache is not None:
        return ArtifactFactory(cache.mkdir("featherface-artifacts"))
    session = tmp_path_factory.getbasetemp()
    return ArtifactFactory((session.parent if hasattr(request.config, "workerinput") else session)
                           / "featherface-artifacts")


TINY_E2E_SETTINGS = {"imgsz": (64, 64), "end2end": True, "max_det": 20, "conf": 0.3, "nms_iou": 0.4,
                     "pre_nms_top_k": 100}


@pytest.fixture(scope="session")
def tiny_e2e_onnx(tmp_path_factory):
    """A seeded ``featherface-tiny`` exported end to end (64×64, conf 0.3, max_det 20) through the pipeline.

    Returns:
        (path, ExportOutcome): the verified file and its export outcome (parity and in-graph reports).
    """
    pytest.importorskip("torch")
    requires_backend("onnx", "export")
    from featherface_deploy.models.registry import create_untrained_model

    path = tmp_path_factory.mktemp("tiny-e2e") / "tiny-e2e.onnx"
    outcome = export_row(create_untrained_model("featherface-tiny", 0), path, "onnx", **TINY_E2E_SETTINGS)
    return path, outcome
