"""``export`` never writes over its input, checks the output before any work, and replaces only with --exist-ok.

Issue cases 1 and 5. The refusals must come before the checkpoint is even
loaded (a real export of the tiny model takes minutes on a busy 2-core
machine), so each CLI test also asserts that no checkpoint was read. The two tests that
need an export swap the exporter and the file's runtime for fakes (the real
ones are covered by the per-format export tests), so what is tested is the
pipeline's order: check, build, parity, then replace.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from unittest import mock

import pytest
import torch
from click.testing import CliRunner

from featherface_deploy.cli.main import cli
from featherface_deploy.errors import OutputError, ParityError
from featherface_deploy.exporters.common import ExportResult
from featherface_deploy.formats import get_format
from featherface_deploy.models.registry import create_untrained_model
from featherface_deploy.pipeline import builder, export_model
from featherface_deploy.runtimes.torch_runtime import TorchRuntime, contract_for_model

CHECKPOINT_BYTES_CHECKED = "the checkpoint must be byte-for-byte unchanged"


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    path = tmp_path / "ck.pth"
    torch.save(create_untrained_model("featherface-tiny", 0).state_dict(), path)
    return path


def _export(*arguments: str):
    """Runs ``export``; returns its result and the checkpoint reads it made (``torch.load`` calls)."""
    with mock.patch("torch.load", wraps=torch.load) as load:
        result = CliRunner().invoke(cli, ["export", *arguments])
    return result, load.call_args_list


def _refused(result, loads, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output, result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error:")]) == 1
    assert not loads, f"refused only after reading the checkpoint ({loads}): the check must run before any work"


def test_output_that_is_the_checkpoint_is_refused_at_once(checkpoint):
    before = checkpoint.read_bytes()
    result, loads = _export(str(checkpoint), "--format", "onnx", "-o", str(checkpoint))
    _refused(result, loads, "is the input")
    assert checkpoint.read_bytes() == before, CHECKPOINT_BYTES_CHECKED


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_output_that_links_to_the_checkpoint_is_refused(checkpoint, link):
    # A checkpoint saved under an ONNX-looking name: the suffix check alone passes it.
    alias = checkpoint.with_name("model.onnx")
    (alias.symlink_to if link == "symlink" else alias.hardlink_to)(checkpoint)
    before = checkpoint.read_bytes()
    result, loads = _export(str(checkpoint), "--format", "onnx", "-o", str(alias), "--exist-ok")
    _refused(result, loads, "is the input")
    assert checkpoint.read_bytes() == before, CHECKPOINT_BYTES_CHECKED


def test_checkpoint_named_like_the_output_is_not_replaced(tmp_path, checkpoint):
    # `export weights.onnx -o weights.onnx` with a .pth saved as .onnx: same path, and the suffix fits.
    weights = tmp_path / "weights.onnx"
    weights.write_bytes(checkpoint.read_bytes())
    result, loads = _export(str(weights), "--format", "onnx", "-o", str(weights), "--exist-ok")
    _refused(result, loads, "is the input")
    assert weights.read_bytes() == checkpoint.read_bytes()


def test_existing_output_is_refused_without_exist_ok(tmp_path, checkpoint):
    existing = tmp_path / "ck.onnx"  # also the default output of `export ck.pth`
    existing.write_bytes(b"an earlier export")
    for arguments in ([], ["-o", str(existing)]):
        result, loads = _export(str(checkpoint), "--format", "onnx", *arguments)
        _refused(result, loads, "already exists; pass --exist-ok")
    assert existing.read_bytes() == b"an earlier export"


def test_stale_sidecar_is_refused_without_exist_ok(tmp_path, checkpoint):
    (tmp_path / "new.onnx.json").write_text("{}")
    result, loads = _export(str(checkpoint), "--format", "onnx", "-o", str(tmp_path / "new.onnx"))
    _refused(result, loads, "new.onnx.json already exists")


def test_folder_output_that_holds_the_checkpoint_is_refused(tmp_path, checkpoint):
    package = tmp_path / "ck.mlpackage"
    package.mkdir()
    inside = package / "ck.pth"
    inside.write_bytes(checkpoint.read_bytes())
    with pytest.raises(OutputError, match="it holds the input"):
        export_model(inside, package, "coreml", exist_ok=True)
    (tmp_path / "file.mlpackage").write_bytes(b"x")
    with pytest.raises(OutputError, match="a file of that name exists"):
        export_model(checkpoint, tmp_path / "file.mlpackage", "coreml", exist_ok=True)
    assert inside.read_bytes() == checkpoint.read_bytes()


def test_output_under_a_file_is_one_line_error(tmp_path, checkpoint):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    result, loads = _export(str(checkpoint), "--format", "onnx", "-o", str(tmp_path / "notes.txt" / "m.onnx"))
    _refused(result, loads, "notes.txt is not a folder")


def _read_only_folder() -> Path:
    """A folder nobody can create files in, even root: sysfs is mounted read-only."""
    folder = Path("/sys")
    try:
        handle, probe = tempfile.mkstemp(dir=folder)
    except OSError:
        return folder
    os.close(handle)
    os.unlink(probe)
    pytest.skip("no read-only folder here (/sys is writable)")


def test_read_only_folder_is_one_line_error(checkpoint):
    result, loads = _export(str(checkpoint), "--format", "onnx", "-o", str(_read_only_folder() / "m.onnx"))
    _refused(result, loads, "Permission denied")


def _fake_build(monkeypatch, model):
    """The exporter writes b'new model'; the file's 'runtime' is the model itself (parity passes)."""
    artifact = TorchRuntime(model, contract=contract_for_model("featherface-tiny").replace(input_size=(64, 64)))

    def exporter(source, staged, row, options, context):
        Path(staged).write_bytes(b"new model")
        return ExportResult(Path(staged), artifact.contract)

    class FakeRuntime:
        @staticmethod
        def open(path):
            assert Path(path).read_bytes() == b"new model"
            return artifact

    row, real = get_format("onnx"), builder.resolve
    fakes = {row.exporter: exporter, row.runtime: FakeRuntime}
    monkeypatch.setattr(builder, "resolve", lambda reference: fakes.get(reference) or real(reference))


def test_exist_ok_replaces_only_after_parity_passes(tmp_path, monkeypatch):
    model = create_untrained_model("featherface-tiny", 0)
    _fake_build(monkeypatch, model)
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old model")
    real_parity = builder.check_parity

    def failing_parity(*args, **kwargs):
        raise ParityError("outputs differ from PyTorch")

    monkeypatch.setattr(builder, "check_parity", failing_parity)
    with pytest.raises(ParityError):
        export_model(model, out, "onnx", exist_ok=True)
    assert out.read_bytes() == b"old model" and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    monkeypatch.setattr(builder, "check_parity", real_parity)
    export_model(model, out, "onnx", exist_ok=True, require_faces=False)
    assert out.read_bytes() == b"new model" and (tmp_path / "m.onnx.json").is_file()
