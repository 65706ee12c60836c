"""Builds each exported test artifact once and serves it to every test that reads it.

An artifact is a format row exported from a seeded random model (``create_untrained_model``), with
options. Its cache key is the row, the options (a folder or file option by its content), the model and
a digest of the code that builds it: every file of the ``featherface_deploy`` package, this module and
the versions of the conversion and runtime packages. A change to any of them gives new keys, so entries may be
reused across sessions; an unchanged tree reuses them. Each entry is built under a file lock and
published by one rename, so concurrent workers (pytest-xdist) and sessions share one build.

Artifacts are read-only inputs: a test that changes a file copies it first (:func:`copy_artifact`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from filelock import FileLock

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "featherface_deploy"
BACKEND_DISTRIBUTIONS = ("torch", "numpy", "onnx", "onnxscript", "onnxruntime", "onnxsim", "onnxslim",
                         "coremltools", "litert-torch", "ai-edge-litert", "ai-edge-quantizer")


def _hash_path(digest: "hashlib._Hash", path: Path) -> None:
    """Feeds the relative names and bytes of a file, or of every file under a folder, into ``digest``."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if "__pycache__" in file.parts:
            continue
        digest.update(str(file.relative_to(path) if file != path else file.name).encode())
        digest.update(hashlib.sha256(file.read_bytes()).digest())


@functools.cache
def code_digest() -> str:
    """SHA-256 of the ``featherface_deploy`` sources, this factory and the installed backend versions."""
    digest = hashlib.sha256()
    _hash_path(digest, PACKAGE_ROOT)
    _hash_path(digest, Path(__file__))  # how this factory builds and names them
    for name in BACKEND_DISTRIBUTIONS:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{name}=={version}".encode())
    return digest.hexdigest()


def _key_value(value):
    """An option value as the cache key sees it: paths by content, tuples as lists."""
    if isinstance(value, Path):
        digest = hashlib.sha256()
        _hash_path(digest, value)
        return {"content": digest.hexdigest()}
    if isinstance(value, (tuple, list)):
        return [_key_value(item) for item in value]
    return value


@dataclass(frozen=True)
class ArtifactSpec:
    """What one artifact is: a format row, its options and the seeded model it is exported from."""

    row: str
    options: dict = field(default_factory=dict)
    architecture: str = "featherface-tiny"
    seed: int = 0
    untrained: bool = False
    require_faces: bool = True

    def file_name(self) -> str:
        """The artifact's file name: the architecture without its family prefix and the row's suffix (``tiny.onnx``)."""
        from featherface_deploy.formats import get_format

        return self.architecture.removeprefix("featherface-") + get_format(self.row).suffixes[0]

    def key(self) -> str:
        """The cache key: this spec and :func:`code_digest`."""
        described = {"row": self.row, "options": {k: _key_value(v) for k, v in sorted(self.options.items())},
                     "architecture": self.architecture, "seed": self.seed, "untrained": self.untrained,
                     "require_faces": self.require_faces, "code": code_digest()}
        return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:24]


STALE_AFTER_S = 24 * 3600


class ArtifactFactory:
    """Exported artifacts under ``cache/<code digest>/``, one folder per :meth:`ArtifactSpec.key`, built on request.

    Folders of other code digests untouched for a day are removed (the code they were built from is gone).

    Args:
        cache: The cache folder (pytest's cache, or the parent of the session's temporary folders).
    """

    def __init__(self, cache: Path) -> None:
        self.root = Path(cache) / code_digest()[:16]
        self.root.mkdir(parents=True, exist_ok=True)
        os.utime(self.root)  # in use: not stale
        _remove_stale_siblings(self.root)
        self._models: dict[tuple[str, int], object] = {}
        self._scratch: dict = {}  # the pipeline's shared intermediates (one TFLite FP32 conversion per model)

    def model(self, architecture: str = "featherface-tiny", seed: int = 0):
        """The seeded random model artifacts are exported from (one object per architecture and seed)."""
        from featherface_deploy.models.registry import create_untrained_model

        if (architecture, seed) not in self._models:
            self._models[architecture, seed] = create_untrained_model(architecture, seed)
        return self._models[architecture, seed]

    def get(self, row: str, *, architecture: str = "featherface-tiny", seed: int = 0, untrained: bool = False,
            require_faces: bool = True, **options) -> Path:
        """The path of ``row`` exported with ``options`` (its sidecar beside it), building it if absent.

        Args:
            row: A format row name (``onnx``, ``coreml``, ``tflite-int8``…).
            architecture: The registered architecture of the seeded model.
            seed: The seed of its random weights.
            untrained: Flag the contract untrained with the seed (``export_model``'s ``untrained_seed``).
            require_faces: Passed to ``export_model``.
            **options: The row's export options.
        """
        spec = ArtifactSpec(row, options, architecture, seed, untrained, require_faces)
        final = self.root / spec.key()
        with FileLock(str(final) + ".lock"):
            if not final.is_dir():
                self._build(spec, final)
        return final / spec.file_name()

    def _build(self, spec: ArtifactSpec, final: Path) -> None:
        from featherface_deploy.pipeline import export_model

        partial = final.with_name(final.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        out = partial / spec.file_name()
        export_model(self.model(spec.architecture, spec.seed), out, spec.row, spec.options,
                     untrained_seed=spec.seed if spec.untrained else None, require_faces=spec.require_faces,
                     scratch=self._scratch)
        (partial / "spec.json").write_text(json.dumps({**spec.__dict__, "code": code_digest()}, indent=1,
                                                      default=str))
        os.replace(partial, final)


def _remove_stale_siblings(root: Path) -> None:
    now = time.time()
    for other in root.parent.iterdir():
        if other != root and other.is_dir() and now - other.stat().st_mtime > STALE_AFTER_S:
            shutil.rmtree(other, ignore_errors=True)


def copy_artifact(path: Path, folder: Path, name: str | None = None) -> Path:
    """Copies an artifact (file or folder) and its sidecar into ``folder``, for a test that changes them.

    Returns:
        The copy's path, named ``name`` (default: the artifact's own name).
    """
    from featherface_deploy.contract import sidecar_path

    target = Path(folder) / (name or path.name)
    if path.is_dir():
        shutil.copytree(path, target)
    else:
        shutil.copy2(path, target)
    if sidecar_path(path).is_file():
        shutil.copy2(sidecar_path(path), sidecar_path(target))
    return target
