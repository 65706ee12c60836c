"""The test artifact factory: one build per key, shared by concurrent requests and later sessions, new keys for
new options or new code (``tests/support/artifacts.py``). The export is a recording stand-in: the point is the cache."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from featherface_deploy.contract import sidecar_path
from support import artifacts as factory_module
from support.artifacts import ArtifactFactory, copy_artifact


@pytest.fixture
def builds(monkeypatch):
    """The rows the factory exported, each export a small file written slowly enough for requests to overlap."""
    from featherface_deploy import pipeline

    built = []

    def recording_export(model, out, row, options, **kwargs):
        built.append((row, dict(options)))
        time.sleep(0.2)
        out.write_bytes(b"model " + repr(sorted(options.items())).encode())
        sidecar_path(out).write_text("{}")

    monkeypatch.setattr(pipeline, "export_model", recording_export)
    return built


def test_concurrent_requests_build_once_and_later_sessions_reuse_it(tmp_path, builds):
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: ArtifactFactory(tmp_path).get("onnx", imgsz=(64, 64)), range(4)))
    assert len(set(paths)) == 1 and paths[0].name == "tiny.onnx" and sidecar_path(paths[0]).is_file()
    assert builds == [("onnx", {"imgsz": (64, 64)})]
    assert ArtifactFactory(tmp_path).get("onnx", imgsz=(64, 64)) == paths[0]  # a later session
    assert len(builds) == 1 and not list(paths[0].parent.parent.glob("*.partial"))


def test_other_options_seed_or_code_give_another_artifact(tmp_path, builds, monkeypatch):
    factory = ArtifactFactory(tmp_path)
    first = factory.get("onnx", imgsz=(64, 64))
    assert factory.get("onnx", imgsz=(64, 96)) != first
    assert factory.get("onnx", imgsz=(64, 64), seed=1) != first
    monkeypatch.setattr(factory_module, "code_digest", lambda: "0" * 64)  # the package's sources changed
    assert ArtifactFactory(tmp_path).get("onnx", imgsz=(64, 64)) != first
    assert len(builds) == 4


def test_a_folder_option_is_keyed_by_its_content(tmp_path, builds):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"one")
    factory = ArtifactFactory(tmp_path / "cache")
    before = factory.get("onnx", calib_dir=photos)
    assert factory.get("onnx", calib_dir=photos) == before
    (photos / "a.jpg").write_bytes(b"two")
    assert factory.get("onnx", calib_dir=photos) != before


def test_copy_takes_the_sidecar_along(tmp_path, builds):
    original = ArtifactFactory(tmp_path / "cache").get("onnx")
    copy = copy_artifact(original, tmp_path, "edited.onnx")
    assert copy.read_bytes() == original.read_bytes() and sidecar_path(copy).read_text() == "{}"
