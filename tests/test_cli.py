"""The command line, end to end through click's runner."""

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from click.testing import CliRunner
from PIL import Image

from featherface_deploy.cli.main import cli
from featherface_deploy.models import create_model


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "astronaut.jpg"
    Image.fromarray(skimage.data.astronaut()).save(path, quality=95)
    return path


def test_detect_prints_json_and_writes_png(v1_weights, astronaut, tmp_path):
    result = CliRunner().invoke(cli, ["detect", str(astronaut), "--weights", str(v1_weights), "--json",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    faces = json.loads(result.stdout)[str(astronaut)]
    assert len(faces) == 1 and faces[0]["score"] > 0.99 and len(faces[0]["landmarks"]) == 5
    drawn = np.asarray(Image.open(tmp_path / "astronaut.png"))
    assert drawn.shape == (512, 512, 3)


def test_detect_text_output(v1_weights, astronaut):
    result = CliRunner().invoke(cli, ["detect", str(astronaut), "--weights", str(v1_weights)])
    assert result.exit_code == 0 and "1 face(s)" in result.output and "score=0.99" in result.output


def test_info_reports_architecture_and_parameters(v2_weights):
    result = CliRunner().invoke(cli, ["info", str(v2_weights)])
    assert result.exit_code == 0, result.output
    assert "featherface-v2-ca" in result.output and "493,095" in result.output
    assert "ca_p3" in result.output and "(B, 16800, 10)" in result.output


def test_evaluate_on_a_few_images_writes_submission_layout(v1_weights, widerface_root, tmp_path):
    result = CliRunner().invoke(cli, ["evaluate", "--weights", str(v1_weights), "--widerface", str(widerface_root),
                                      "--limit", "3", "--json", "--pred-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["images"] == 3 and 0 < report["easy"] <= 100
    written = list(tmp_path.glob("*/*.txt"))
    assert len(written) == 3
    lines = written[0].read_text().splitlines()
    assert int(lines[1]) == len(lines) - 2


def test_bad_checkpoint_is_one_line_error(tmp_path, astronaut):
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"garbage")
    result = CliRunner().invoke(cli, ["detect", str(astronaut), "--weights", str(broken)])
    assert result.exit_code == 1
    assert "Error:" in result.output and "not a readable PyTorch checkpoint" in result.output
    assert "Traceback" not in result.output


def test_unreadable_image_names_the_file(tmp_path):
    model = tmp_path / "tiny.pth"
    torch.save(create_model("featherface-tiny").state_dict(), model)
    image = tmp_path / "not-an-image.jpg"
    image.write_text("hello")
    result = CliRunner().invoke(cli, ["detect", str(image), "--weights", str(model)])
    assert result.exit_code == 1 and "not-an-image.jpg" in result.output


def test_unknown_suffix_is_refused(tmp_path, astronaut):
    model = tmp_path / "model.xyz"
    model.write_bytes(b"x")
    result = CliRunner().invoke(cli, ["detect", str(astronaut), "--weights", str(model)])
    assert result.exit_code == 1 and "unknown suffix" in result.output


@pytest.mark.parametrize("size", ["axb", "0", "64x0x3"])
def test_bad_size_option(tiny_checkpoint, size):
    """A valid model with a bad ``--imgsz``: a usage error (exit 2) that quotes the size, and nothing else fails."""
    result = CliRunner().invoke(cli, ["info", str(tiny_checkpoint), "--imgsz", size])
    assert result.exit_code == 2, result.output
    assert "Error: Invalid value: expected N or HxW" in result.output and f"got {size!r}" in result.output
    assert CliRunner().invoke(cli, ["info", str(tiny_checkpoint), "--imgsz", "64"]).exit_code == 0


def test_evaluate_reads_the_ground_truth_once(tiny_checkpoint, widerface_root, monkeypatch):
    import scipy.io

    read = []
    loadmat = scipy.io.loadmat
    monkeypatch.setattr(scipy.io, "loadmat", lambda path, *args, **kwargs: read.append(path) or loadmat(path))
    result = CliRunner().invoke(cli, ["evaluate", "--weights", str(tiny_checkpoint), "--widerface",
                                      str(widerface_root), "--limit", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(Path(name).name for name in read) == [
        "wider_easy_val.mat", "wider_face_val.mat", "wider_hard_val.mat", "wider_medium_val.mat"]


def test_evaluate_with_non_finite_detections_is_one_line_error(tiny_checkpoint, widerface_root, monkeypatch):
    from featherface_deploy.cli import evaluate_cmd
    from featherface_deploy.postprocess.detections import Detections

    real_build_detector = evaluate_cmd.build_detector

    class NanDetector:  # the real detector's runtime, with a decoder that let a NaN box through
        def __init__(self, *args):
            self.runtime = real_build_detector(*args).runtime

        def __call__(self, path):
            return Detections(np.array([[np.nan, 0, 10, 10]], np.float32), np.array([0.9], np.float32),
                              np.zeros((1, 5, 2), np.float32))

    monkeypatch.setattr(evaluate_cmd, "build_detector", NanDetector)
    result = CliRunner().invoke(cli, ["evaluate", "--weights", str(tiny_checkpoint), "--widerface",
                                      str(widerface_root), "--limit", "1"])
    assert result.exit_code == 1
    assert "Error: predictions for" in result.output and "NaN or infinite" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("budget", [["--min-match-rate", "nan"], ["--max-ap-drop", "nan"]])
def test_compare_refuses_a_nan_budget_before_building(tiny_checkpoint, astronaut, tmp_path, budget):
    result = CliRunner().invoke(cli, ["compare", str(tiny_checkpoint), "--formats", "torch", "--images",
                                      str(astronaut.parent), "--out", str(tmp_path / "report"), *budget])
    # Refused while the command line is read (the shared number validation), before anything is built.
    assert result.exit_code == 2
    assert f"Invalid value for '{budget[0]}': expected a finite number" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "report").exists()
