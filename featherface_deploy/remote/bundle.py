"""Device bundles: one model, its sidecar and a runner that needs only Python ≥ 3.8, numpy and the runtime.

The runner is not a copy kept by hand: :func:`build_bundle` copies the package's own runtime-side modules,
found by following the imports of :mod:`featherface_deploy.remote.device_main` and of the model's runtime
module (from the format table), so host and device share one implementation of preprocessing, decode and
NMS. Each copied module is checked for Python 3.8 compatibility. A bundle is named by a content hash of its
files, under which devices cache it.

Layout::

    run.py                  python run.py benchmark|evaluate|detect|facts ...
    MANIFEST.json           schema, digest, model, format, requirements, sha256 of every file
    model/<model file>      and its sidecar <model file>.json when it has one; a Core ML
                            package is copied as the folder it is (model/<name>.mlpackage/...)
    featherface_deploy/...  the copied modules
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import featherface_deploy
from featherface_deploy.contract import sidecar_path
from featherface_deploy.errors import ExportError, FeatherFaceError
from featherface_deploy.file_writing import current_umask
from featherface_deploy.formats import format_for_path
from featherface_deploy.outputs import claim_output
from featherface_deploy.remote.device_requirements import DEVICE_PACKAGES, INSTALL_HINTS
from featherface_deploy.remote.py38_check import check_files

BUNDLE_SCHEMA = "featherface-deploy/bundle/1"
ENTRY_MODULE = "featherface_deploy.remote.device_main"
MANIFEST = "MANIFEST.json"
_PACKAGE_ROOT = Path(featherface_deploy.__file__).resolve().parent
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)
_RUN_PY = '''#!/usr/bin/env python3
"""featherface-deploy device bundle {digest} for {model}: `python run.py -h`.

Needs Python >= 3.8, numpy and {runtime}; nothing else (no torch, no Pillow, no click).
{hint}.
"""
import os
import sys

if sys.version_info < (3, 8):
    sys.exit("error: this bundle needs Python >= 3.8, this is " + sys.version.split()[0])
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from featherface_deploy.remote.device_main import main  # noqa: E402

sys.exit(main(default_model=os.path.join(HERE, "model", {model!r})))
'''


@dataclass(frozen=True)
class Bundle:
    """A built bundle.

    Attributes:
        path: The bundle folder or ``.zip``.
        digest: Content hash of its files (16 hex digits).
        model: File name of the bundled model.
        files: Relative paths of every file, ``MANIFEST.json`` included.
    """

    path: Path
    digest: str
    model: str
    files: tuple[str, ...]


def runtime_modules(model: str | Path) -> list[str]:
    """The package modules a device needs to run ``model``: the runner and the format's runtime, with their imports.

    Raises:
        ExportError: The format cannot run in a bundle (a PyTorch checkpoint needs torch).
    """
    fmt = format_for_path(model)
    if fmt.family not in DEVICE_PACKAGES:
        raise ExportError(f"{model}: a {fmt.description} cannot run in a device bundle; export it first "
                          f"(`featherface-deploy export {model} --format onnx`, `tflite`, `coreml` or `engine`)")
    return module_closure([ENTRY_MODULE, fmt.runtime.split(":")[0]])


def module_closure(roots: list[str]) -> list[str]:
    """Every ``featherface_deploy`` module the roots import (anywhere in their code), with parent packages.

    Returns:
        Module names, sorted.
    """
    seen, pending = set(), list(roots)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        path = _module_file(name)
        seen.add(name)
        parts = name.split(".")
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        pending.extend(_imported_modules(path, name))
    return sorted(seen)


# CPython 3.11's ast.parse is not safe in several threads at once (seen here: "SystemError: AST constructor
# recursion depth mismatch" when `compare --devices` built two bundles in parallel): one bundle parses its modules at a time.
_PARSE_LOCK = threading.Lock()


def build_bundle(model: str | Path, out: str | Path, exist_ok: bool = False) -> Bundle:
    """Writes a device bundle for ``model`` to the folder or ``.zip`` ``out`` under the output rules.

    (:func:`~featherface_deploy.outputs.claim_output`: never the model, its sidecar or inside it; locked;
    published whole.) An existing bundle at ``out`` is replaced only with ``exist_ok``; an existing folder
    that is not a bundle never.

    Raises:
        FeatherFaceError: The model is missing, its format cannot run on a device, ``out`` exists (without
            ``exist_ok``) or is not a bundle, or a module to copy would not run on Python 3.8.
    """
    model, out = Path(model), Path(out)
    zipped = out.suffix == ".zip"
    claim = claim_output(out, [model], exist_ok, folder=not zipped)
    if not zipped and out.exists() and not (out / MANIFEST).is_file():
        raise FeatherFaceError(f"{out} exists and is not a bundle; choose another output folder")
    with _PARSE_LOCK:
        modules = runtime_modules(model)
        sources = {_relative(name): _module_file(name) for name in modules}
        problems = check_files(list(sources.values()), _PACKAGE_ROOT.parent)
    if problems:
        raise ExportError("these modules would not run on a device's Python 3.8: " + "; ".join(problems))
    contents = {rel: path.read_bytes() for rel, path in sources.items()}
    contents.update(model_files(model))
    if sidecar_path(model).is_file():
        contents[f"model/{sidecar_path(model).name}"] = sidecar_path(model).read_bytes()
    digest = _digest(contents)
    fmt = format_for_path(model)
    packages = DEVICE_PACKAGES[fmt.family]
    contents["run.py"] = _RUN_PY.format(digest=digest, model=model.name, runtime=" and ".join(packages[1:]),
                                        hint=INSTALL_HINTS[fmt.family]).encode("utf-8")
    contents[MANIFEST] = json.dumps({
        "schema": BUNDLE_SCHEMA, "digest": digest, "model": model.name, "format": fmt.family,
        "featherface_deploy": featherface_deploy.__version__,
        "requires": {"python": ">=3.8", "packages": packages, "install": INSTALL_HINTS[fmt.family]},
        "files": {rel: hashlib.sha256(data).hexdigest() for rel, data in sorted(contents.items())},
    }, indent=2, sort_keys=True).encode("utf-8")
    with claim:
        (_write_zip if zipped else _write_folder)(contents, claim.staged())
        claim.publish()
    return Bundle(out, digest, model.name, tuple(sorted(contents)))


def model_files(model: Path) -> dict:
    """The bundle entries of a model: ``model/<file>``, or every file of a package folder (``.mlpackage``).

    Raises:
        FeatherFaceError: The model is missing, a folder where its format wants a file, or an empty folder.
    """
    fmt = format_for_path(model)
    if fmt.directory and model.is_dir():
        files = sorted(path for path in model.rglob("*") if path.is_file())
        if not files:
            raise FeatherFaceError(f"{model} is an empty folder, not a {fmt.description}")
        return {f"model/{model.name}/{path.relative_to(model).as_posix()}": path.read_bytes() for path in files}
    if not model.is_file():
        raise FeatherFaceError(f"model not found: {model}" + (" (a folder, not a file)" if model.is_dir() else ""))
    return {f"model/{model.name}": model.read_bytes()}


def read_manifest(bundle: str | Path) -> dict:
    """The manifest of a bundle folder.

    Raises:
        FeatherFaceError: ``bundle`` is not a bundle folder.
    """
    path = Path(bundle) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise FeatherFaceError(f"{bundle} is not a featherface-deploy bundle ({error})") from error
    if manifest.get("schema") != BUNDLE_SCHEMA:
        raise FeatherFaceError(f"{bundle}: unknown bundle schema {manifest.get('schema')!r}")
    return manifest


def _module_file(name: str) -> Path:
    base = _PACKAGE_ROOT.parent.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    raise ExportError(f"module {name} is not part of this featherface-deploy installation")


def _relative(name: str) -> str:
    return _module_file(name).relative_to(_PACKAGE_ROOT.parent).as_posix()


def _imported_modules(path: Path, name: str) -> list[str]:
    """``featherface_deploy`` modules imported anywhere in a file (``from pkg import sub`` counts ``pkg.sub``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names if alias.name.startswith("featherface_deploy"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("featherface_deploy"):
            found.append(node.module)
            found.extend(f"{node.module}.{alias.name}" for alias in node.names
                         if _is_module(f"{node.module}.{alias.name}"))
    return found


def _is_module(name: str) -> bool:
    base = _PACKAGE_ROOT.parent.joinpath(*name.split("."))
    return (base / "__init__.py").is_file() or base.with_suffix(".py").is_file()


def _digest(contents: dict) -> str:
    digest = hashlib.sha256()
    for rel, data in sorted(contents.items()):
        digest.update(rel.encode("utf-8") + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()[:16]


def _write_zip(contents: dict, target: Path) -> None:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for rel, data in sorted(contents.items()):
            archive.writestr(zipfile.ZipInfo(rel, _ZIP_DATE), data, zipfile.ZIP_DEFLATED)
    os.chmod(target, 0o666 & ~current_umask())


def _write_folder(contents: dict, target: Path) -> None:
    for rel, data in contents.items():
        entry = target / rel
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.write_bytes(data)
    os.chmod(target / "run.py", 0o777 & ~current_umask())
