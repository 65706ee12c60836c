"""The file-writing rules: umask-honouring atomic writes, outputs that are never inputs, writability up front."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from PIL import Image

from featherface_deploy.contract import DecodeContract, write_sidecar
from featherface_deploy.errors import OutputError
from featherface_deploy.file_writing import (
    atomic_write_bytes,
    check_output_path,
    check_writable,
    current_umask,
    unique_output_names,
)
from featherface_deploy.postprocess import Detections
from featherface_deploy.visualize import draw_detections, save_png


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_get_the_mode_of_a_normal_write(tmp_path, umask_022):
    # Before the fix every sidecar, PNG and model was 0600 (mkstemp's mode survived the rename).
    sidecar = write_sidecar(DecodeContract(model_name="featherface-tiny"), tmp_path / "m.onnx")
    save_png(draw_detections(np.zeros((4, 4, 3), np.uint8), Detections.empty()), tmp_path / "x.png")
    assert _mode(sidecar) == 0o644 and _mode(tmp_path / "x.png") == 0o644
    os.umask(0o027)
    atomic_write_bytes(tmp_path / "new.bin", b"1")
    assert _mode(tmp_path / "new.bin") == 0o640 and current_umask() == 0o027


def test_replacing_a_file_keeps_its_mode_and_leaves_no_temporary(tmp_path, umask_022):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    os.chmod(target, 0o664)
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o664
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_output_may_not_be_an_input_through_a_symlink_or_hard_link(tmp_path):
    checkpoint = tmp_path / "ck.pth"
    checkpoint.write_bytes(b"weights")
    (tmp_path / "link.onnx").symlink_to(checkpoint)
    os.link(checkpoint, tmp_path / "hard.onnx")
    for output in (checkpoint, tmp_path / "link.onnx", tmp_path / "hard.onnx", tmp_path / "." / "ck.pth"):
        with pytest.raises(OutputError, match="is the input"):
            check_output_path(output, inputs=[checkpoint], exist_ok=True)
    assert checkpoint.read_bytes() == b"weights"


def test_existing_output_needs_exist_ok(tmp_path):
    existing = tmp_path / "out.onnx"
    existing.write_bytes(b"x")
    with pytest.raises(OutputError, match="--exist-ok"):
        check_output_path(existing)
    assert check_output_path(existing, exist_ok=True) == existing
    with pytest.raises(OutputError, match="already exists"):
        check_output_path(tmp_path / "new.onnx", companions=[existing])


def test_unwritable_outputs_are_one_line_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is not a folder"):
        check_writable(tmp_path / "file" / "sub" / "out.onnx")
    with pytest.raises(OutputError, match="it is a folder"):
        check_writable(tmp_path)
    with pytest.raises(OutputError, match="cannot write"):
        atomic_write_bytes(tmp_path / "file" / "out.onnx", b"x")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    with pytest.raises(OutputError, match="Permission denied"):
        check_writable(folder / "out.onnx")


def test_unique_output_names_follow_the_documented_rule(tmp_path):
    for name in ("a/x.jpg", "b/x.jpg", "a/x.png", "out/y.png", "c/y.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    inputs = [tmp_path / n for n in ("a/x.jpg", "b/x.jpg", "a/x.png", "out/y.png", "c/y.jpg")]
    names = [p.name for p in unique_output_names(inputs, tmp_path / "out", ".png")]
    # out/y.png is itself an input, so neither y image may be written there.
    assert names == ["x.png", "x-2.png", "x-3.png", "y-2.png", "y-3.png"]
