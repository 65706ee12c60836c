"""``detect`` on several images: no input is written over, no two inputs share an output, no result is lost.

Issue cases 2 and 3, end to end through the CLI with the tiny checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from featherface_deploy.cli.main import cli


def _photo(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


def test_out_folder_never_overwrites_an_input_and_same_stems_get_their_own_png(tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    inputs = [_photo(tmp_path / name, seed) for seed, name in enumerate(("a/x.jpg", "b/x.jpg", "a/x.png", "out/y.png"))]
    original = inputs[3].read_bytes()  # an input inside --out, named like its own annotated copy
    result = CliRunner().invoke(cli, ["detect", *map(str, inputs), "--weights", str(tiny_checkpoint),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert inputs[3].read_bytes() == original, "the input out/y.png was written over"
    assert sorted(p.name for p in out.iterdir()) == ["x-2.png", "x-3.png", "x.png", "y-2.png", "y.png"]
    # Each written PNG is its own input's drawing (the three x images differ, so the PNGs must).
    drawn = {name: np.asarray(Image.open(out / name)) for name in ("x.png", "x-2.png", "x-3.png", "y-2.png")}
    assert all(array.shape == (48, 64, 3) for array in drawn.values())
    assert len({array.tobytes() for array in drawn.values()}) == 4
    for source, name in zip(inputs, ("x.png", "x-2.png", "x-3.png", "y-2.png")):
        assert f"{source}: " in result.output and f"→ {out / name}" in result.output


def test_every_image_is_processed_and_failures_are_reported_at_the_end(tiny_checkpoint, tmp_path):
    good = [_photo(tmp_path / "first.jpg", 0), _photo(tmp_path / "last.jpg", 1)]
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    missing = tmp_path / "missing.jpg"
    arguments = [str(good[0]), str(broken), str(missing), str(good[1]), "--weights", str(tiny_checkpoint)]
    result = CliRunner().invoke(cli, ["detect", *arguments, "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)  # stdout holds the whole JSON document, nothing else
    assert sorted(report) == sorted(map(str, good))
    assert all(isinstance(faces, list) for faces in report.values())
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert any(str(broken) in line for line in errors) and any(str(missing) in line for line in errors)
    assert "2 of 4 image(s) failed" in result.stderr and "Traceback" not in result.output
    text = CliRunner().invoke(cli, ["detect", *arguments])
    assert text.exit_code == 1 and all(f"{path}: " in text.stdout for path in good)
