"""The pip extras install on Linux x86_64, Linux aarch64 and macOS arm64.

Two levels: the environment markers of ``setup.cfg`` are evaluated for each
platform (offline), and pip resolves what they select against PyPI for a
platform other than this one (``--platform ... --only-binary=:all:``, a dry
run that reads the index and the wheels' metadata, no installation). pip
evaluates *dependencies'* markers for the running machine, not the target, so
the cross-platform check of everything is ``--no-deps``; the runtime extras
(what a Raspberry Pi or Jetson installs) are also resolved with all their
dependencies for aarch64. Those checks need PyPI and skip, saying so, offline.
"""

from __future__ import annotations

import configparser
import json
import socket
import subprocess
import sys

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from conftest import REPO_ROOT

# pip does not widen an explicit --platform to older manylinux/macOS tags: list them.
AARCH64_TAGS = [f"manylinux_2_{minor}_aarch64" for minor in (17, 27, 28, 31, 34, 36)] + ["manylinux2014_aarch64"]
MACOS_ARM64_TAGS = [f"macosx_{major}_0_arm64" for major in (11, 12, 13, 14, 15)]
PLATFORMS = {
    "linux-x86_64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"},
    "linux-aarch64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64"},
    "macos-arm64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64"},
}
ARMV7L = {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "armv7l"}
LITERT_PACKAGES = {"ai-edge-litert", "tflite-runtime"}


def _setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    return config


def _lines(value: str) -> list[Requirement]:
    return [Requirement(line) for line in value.strip().splitlines() if line.strip()]


def _selected(extra: str, platform: str, python: str = "3.11") -> list[Requirement]:
    """The requirements of ``extra`` (plus install_requires) whose markers hold on ``platform``."""
    config = _setup_cfg()
    env = {**default_environment(), **(ARMV7L if platform == "linux-armv7l" else PLATFORMS[platform]), "python_version": python, "python_full_version": python + ".0"}
    requirements = _lines(config["options"]["install_requires"]) + _lines(config["options.extras_require"][extra])
    return [req for req in requirements if req.marker is None or req.marker.evaluate(env)]


def _extras() -> list[str]:
    return list(_setup_cfg()["options.extras_require"])


@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_markers_select_one_litert_and_no_unavailable_converter(platform):
    for python in ("3.10", "3.11", "3.12", "3.13"):
        names = [req.name for req in _selected("tflite", platform, python)]
        assert len(LITERT_PACKAGES & set(names)) == 1, (platform, python, names)
        assert "ai-edge-litert" in names  # tflite-runtime is only the fallback where LiteRT has no wheels
    # litert-torch's litert-converter has no Linux aarch64 wheels: conversion is a host-side job there.
    export = {req.name for req in _selected("tflite-export", platform)}
    assert ("litert-torch" in export) == (platform != "linux-aarch64")
    assert {"ai-edge-quantizer", "ai-edge-litert"} <= export


def test_tflite_runtime_only_where_litert_has_no_wheels():
    """32-bit ARM: LiteRT ships no wheels; tflite-runtime's were built against numpy 1.x."""
    selected = {req.name: str(req.specifier) for req in _selected("tflite", "linux-armv7l")}
    assert "ai-edge-litert" not in selected and "tflite-runtime" in selected
    assert "<2" in selected["numpy"]


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
    except OSError:
        return False
    return True


def _dry_run(requirements: list[str], tags: list[str], tmp_path, deps: bool) -> dict[str, str]:
    """pip's resolution of ``requirements`` for a cp311 machine with ``tags``; returns ``{name: version}``."""
    if not _pypi_reachable():
        pytest.skip("PyPI (pypi.org:443) is not reachable: cannot resolve for another platform offline")
    report = tmp_path / "report.json"
    args = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
            "--python-version", "3.11", "--implementation", "cp", "--target", str(tmp_path / "t"),
            "--report", str(report), "--quiet", "--disable-pip-version-check"]
    args += [] if deps else ["--no-deps"]
    for tag in tags:
        args += ["--platform", tag]
    result = subprocess.run(args + requirements, capture_output=True, text=True, timeout=240)
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert result.returncode == 0, f"cannot install on {tags[0]}: {errors}"
    return {item["metadata"]["name"].lower(): item["metadata"]["version"]
            for item in json.loads(report.read_text())["install"]}


def _union(platform: str) -> list[str]:
    return sorted({str(req).split(";")[0].strip() for extra in _extras() for req in _selected(extra, platform)})


@pytest.mark.slow
@pytest.mark.parametrize("platform,tags", [("linux-aarch64", AARCH64_TAGS), ("macos-arm64", MACOS_ARM64_TAGS)])
def test_every_extra_has_wheels_there(platform, tags, tmp_path):
    requirements = _union(platform)
    resolved = _dry_run(requirements, tags, tmp_path, deps=False)
    assert {Requirement(r).name.lower() for r in requirements} <= set(resolved)


@pytest.mark.slow
def test_runtime_extras_resolve_with_dependencies_on_aarch64(tmp_path):
    requirements = sorted({str(req).split(";")[0].strip() for extra in ("onnx", "tflite")
                           for req in _selected(extra, "linux-aarch64")})
    resolved = _dry_run(requirements, AARCH64_TAGS, tmp_path, deps=True)
    assert {"numpy", "pillow", "onnxruntime", "ai-edge-litert"} <= set(resolved)
