"""The output rules, for every command that writes (issue 24, classes 1 and 2).

Every case here is refused before the command's work starts, so the whole file runs in seconds: the
command's own output is checked against its inputs, their sidecars, existing files and another writer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featherface_deploy.cli.main import cli
from featherface_deploy.contract import sidecar_path
from featherface_deploy.errors import OutputError
from featherface_deploy.outputs import STAGING_MARK, claim_output, lock_path, write_output


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("widerface")


def command(name: str, model: Path, checkpoint: Path, photo: Path, dataset: Path, out: Path) -> list[str]:
    """The command line of a command that writes, with ``out`` as its output."""
    return {
        "export": ["export", str(checkpoint), "--format", "onnx", "-o", str(out)],
        "benchmark --json": ["benchmark", str(model), "--imgsz", "64", "--iters", "1", "--warmup", "0",
                             "--json", str(out)],
        "profile --json": ["profile", str(model), "--imgsz", "64", "--runs", "1", "--warmup", "0", "--json", str(out)],
        "bundle -o zip": ["bundle", str(model), "-o", str(out)],
        "bundle -o folder": ["bundle", str(model), "-o", str(out)],
        "evaluate --pred-dir": ["evaluate", "--weights", str(model), "--widerface", str(dataset),
                                "--pred-dir", str(out)],
        "detect --out": ["detect", str(photo), "--weights", str(model), "--out", str(out)],
        "compare --out": ["compare", str(checkpoint), "--formats", "torch", "--images", str(photo.parent),
                          "--out", str(out)],
    }[name]


COMMANDS = ["export", "benchmark --json", "profile --json", "bundle -o zip", "bundle -o folder",
            "evaluate --pred-dir", "detect --out", "compare --out"]
# Commands whose output is one file or folder (detect and compare write files into a folder).
SINGLE = COMMANDS[:6]


def _refused(arguments: list[str], match: str) -> None:
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 1, result.output
    assert match in result.output and "Traceback" not in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize("name", SINGLE)
def test_the_output_may_not_be_an_input_or_its_sidecar(name, tiny_onnx, tiny_checkpoint, photo, dataset):
    model = tiny_checkpoint if name == "export" else tiny_onnx
    before = {path: path.read_bytes() for path in (model, sidecar_path(tiny_onnx))}
    for target in (model, sidecar_path(model)):
        _refused(command(name, tiny_onnx, tiny_checkpoint, photo, dataset, target), "refusing to write")
    assert {path: path.read_bytes() for path in before} == before


@pytest.mark.parametrize("name", ["evaluate --pred-dir", "compare --out"])
def test_the_output_may_not_be_inside_an_input_folder(name, tiny_onnx, tiny_checkpoint, photo, dataset):
    folder = dataset if name.startswith("evaluate") else photo.parent
    _refused(command(name, tiny_onnx, tiny_checkpoint, photo, dataset, folder / "out"), "inside the input")


@pytest.mark.parametrize("name", COMMANDS)
def test_an_existing_output_needs_exist_ok(name, tiny_onnx, tiny_checkpoint, photo, dataset, tmp_path):
    suffix = {"export": ".onnx", "bundle -o zip": ".zip"}.get(name, ".json")
    out = tmp_path / f"out{suffix}"
    if name in ("detect --out", "compare --out"):
        out = tmp_path / "folder"
        out.mkdir()
        existing = out / ("x.png" if name == "detect --out" else "compare.json")
    elif name in ("bundle -o folder", "evaluate --pred-dir"):
        out = tmp_path / "folder"
        out.mkdir()
        existing = out / ("MANIFEST.json" if name == "bundle -o folder" else "event/old.txt")
        existing.parent.mkdir(exist_ok=True)
    else:
        existing = out
    existing.write_text("the user's file")
    _refused(command(name, tiny_onnx, tiny_checkpoint, photo, dataset, out), "--exist-ok")
    assert existing.read_text() == "the user's file"


def test_a_second_writer_of_the_same_output_fails_at_once(tiny_checkpoint, tmp_path):
    out = tmp_path / "busy.onnx"
    with claim_output(out):
        _refused(["export", str(tiny_checkpoint), "--format", "onnx", "-o", str(out)], "another process")
        with pytest.raises(OutputError, match="another process"):
            write_output(out, b"x")
    assert not out.exists() and not lock_path(out).exists()
    write_output(out, b"now free")
    assert out.read_bytes() == b"now free"


def test_publication_is_exclusive_without_exist_ok(tmp_path):
    out = tmp_path / "x.json"
    with pytest.raises(OutputError, match="appeared"):
        with claim_output(out) as claim:
            claim.staged().write_text("mine")
            out.write_text("someone else's")  # created by another program while we worked
            claim.publish()
    assert out.read_text() == "someone else's"


def test_a_pair_is_published_whole_or_not_at_all(tmp_path, monkeypatch):
    """Disk full (or any failure) when the sidecar is moved in: the model is rolled back, the rerun works."""
    out = tmp_path / "m.onnx"
    real_link = os.link

    def link_failing_on_sidecar(source, target, *args, **kwargs):
        if str(target).endswith(".json"):
            raise OSError(28, "No space left on device")
        return real_link(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "link", link_failing_on_sidecar)
    with pytest.raises(OutputError, match="No space left"):
        with claim_output(out, companions=[sidecar_path(out)]) as claim:
            claim.staged().write_text("model")
            claim.staged(sidecar_path(out)).write_text("{}")
            claim.publish()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    monkeypatch.undo()
    with claim_output(out, companions=[sidecar_path(out)]) as claim:
        claim.staged().write_text("model")
        claim.staged(sidecar_path(out)).write_text("{}")
        claim.publish()
    assert out.read_text() == "model" and sidecar_path(out).read_text() == "{}"


def test_a_replacement_that_fails_restores_the_old_pair(tmp_path, monkeypatch):
    out = tmp_path / "m.onnx"
    out.write_text("old model")
    sidecar_path(out).write_text("old contract")
    real_link = os.link
    monkeypatch.setattr(os, "link", lambda s, t, *a, **k: (_ for _ in ()).throw(OSError(28, "No space left"))
                        if str(t).endswith(".json") else real_link(s, t, *a, **k))
    with pytest.raises(OutputError):
        with claim_output(out, exist_ok=True, companions=[sidecar_path(out)]) as claim:
            claim.staged().write_text("new model")
            claim.staged(sidecar_path(out)).write_text("new contract")
            claim.publish()
    assert out.read_text() == "old model" and sidecar_path(out).read_text() == "old contract"


def test_stale_staging_of_the_same_output_is_removed(tmp_path):
    out = tmp_path / "m.onnx"
    stale = tmp_path / f".m.onnx{STAGING_MARK}killed"
    other = tmp_path / f".m.onnx.x{STAGING_MARK}another-output"
    stale.mkdir()
    other.mkdir()
    write_output(out, b"x")
    assert not stale.exists() and other.exists()


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    out = tmp_path / "m.onnx"
    script = textwrap.dedent(f"""
        import signal, sys, time
        from featherface_deploy.cli.main import _terminated
        from featherface_deploy.outputs import claim_output
        signal.signal(signal.SIGTERM, _terminated)
        with claim_output({str(out)!r}) as claim:
            claim.staged().write_text("half")
            print("staged", flush=True)
            time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout.readline().strip() == "staged"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_published_folders_honour_the_umask(tmp_path, tiny_onnx):
    old = os.umask(0o022)
    try:
        result = CliRunner().invoke(cli, ["bundle", str(tiny_onnx), "-o", str(tmp_path / "b")])
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    modes = {path.relative_to(tmp_path).as_posix(): path.stat().st_mode & 0o777
             for path in [tmp_path / "b", *(tmp_path / "b").rglob("*")]}
    assert all(mode in (0o755, 0o644) for mode in modes.values()), modes
    assert modes["b/run.py"] == 0o755


def test_an_exported_mlpackage_honours_the_umask(tiny_coreml):
    umask = os.umask(0)
    os.umask(umask)
    entries = [tiny_coreml, *tiny_coreml.rglob("*")]
    wanted = {path: (0o777 if path.is_dir() else 0o666) & ~umask for path in entries}
    assert {path: path.stat().st_mode & 0o777 for path in entries} == wanted
