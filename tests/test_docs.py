"""The documentation cannot rot: its commands run, and its generated tables match their sources.

- The README's quick start and the *Try it* section of ``docs/getting-started.md`` are extracted and run as
  written (every ``featherface-deploy`` line through the CLI, every Python block), in a folder that holds the
  names they use: ``featherface-v1.pth`` (the shared V1 checkpoint, else the seeded tiny model),
  ``group.jpg`` (a shared calibration photo, else the photo shipped with the package) and ``widerface/`` (a
  small WIDER FACE layout: synthetic ground truth over that photo, so the evaluation stays fast).
- Every generated section (format table, options tables, benchmark tables, environment blocks) equals what
  ``python -m docs_tools.generate`` writes now, and the check mode catches a results file changed without
  regenerating.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from docs_tools.generate import ROOT, documentation_files, main as generate_main, render_section, stale_sections
from featherface_deploy.cli.main import cli
from featherface_deploy.formats import FORMATS
from featherface_deploy.pipeline.options import options_rows
from featherface_deploy.verify.photos import default_parity_images

README = ROOT / "README.md"
GETTING_STARTED = ROOT / "docs" / "getting-started.md"
TESTED_SECTIONS = ((README, "Quick start"), (GETTING_STARTED, "Try it"))
_FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```", re.DOTALL | re.MULTILINE)


def section_text(path: Path, title: str) -> str:
    """The text of the ``## title`` section of a Markdown file (up to the next ``## `` heading)."""
    text = path.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return [(m.group("lang"), m.group("body")) for m in _FENCE.finditer(text)]


def shell_commands(body: str) -> list[str]:
    """The command lines of a bash block: comments and blank lines dropped, continuations joined."""
    joined = body.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def documented_snippets() -> tuple[list[str], list[str]]:
    """The CLI argument lines and Python blocks of the tested sections, each once, in order.

    Raises:
        AssertionError: A tested section holds a command the test cannot run (anything but
            ``featherface-deploy …``) or a block in another language: it would go unchecked.
    """
    commands, python = [], []
    for path, title in TESTED_SECTIONS:
        for lang, body in code_blocks(section_text(path, title)):
            if lang == "bash":
                for line in shell_commands(body):
                    assert line.startswith("featherface-deploy "), (
                        f"{path.name} § {title}: '{line}' is not a featherface-deploy command; "
                        "keep other commands out of the tested sections")
                    commands.append(line.removeprefix("featherface-deploy "))
            else:
                assert lang == "python", f"{path.name} § {title}: a ```{lang} block the test cannot run"
                python.append(body)
    return list(dict.fromkeys(commands)), list(dict.fromkeys(python))


def _shared(*parts: str) -> Path | None:
    from conftest import shared_dir

    path = shared_dir().joinpath(*parts)
    return path if path.exists() else None


def _widerface(root: Path, photo: Path) -> None:
    """A WIDER FACE layout of a few images: synthetic ground truth, each image a copy of ``photo``."""
    from test_widerface_eval import make_synthetic

    truth = make_synthetic(np.random.default_rng(0), root, n_images=4, n_events=2)
    for event, name in truth:
        folder = root / "WIDER_val" / "images" / event
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, folder / f"{name}.jpg")


@pytest.fixture(scope="module")
def quick_start_folder(tmp_path_factory, tiny_checkpoint) -> Path:
    """A folder holding the files the documented commands name."""
    folder = tmp_path_factory.mktemp("quick-start")
    checkpoint = _shared("weights", "featherface-v1.pth") or tiny_checkpoint
    photo = _shared("data", "calibration", "1.jpg") or default_parity_images()[0]
    shutil.copyfile(checkpoint, folder / "featherface-v1.pth")
    shutil.copyfile(photo, folder / "group.jpg")
    _widerface(folder / "widerface", photo)
    return folder


def test_the_tested_sections_hold_the_quick_start():
    commands, python = documented_snippets()
    verbs = {command.split()[0] for command in commands}
    assert {"export", "detect", "evaluate", "benchmark", "compare"} <= verbs
    assert python and all("FaceDetector" in block for block in python)


@pytest.mark.slow  # exports the full-size V1 checkpoint twice (export, compare) and benchmarks it at 640
def test_quick_start_commands_run_as_written(quick_start_folder, monkeypatch):
    monkeypatch.chdir(quick_start_folder)
    commands, python = documented_snippets()
    for command in commands:
        result = CliRunner().invoke(cli, shlex.split(command))
        assert result.exit_code == 0, f"featherface-deploy {command}\n{result.output}"
        assert "Traceback" not in result.output
    for block in python:
        exec(compile(block, "<quick start>", "exec"), {})
    assert (quick_start_folder / "v1.onnx.json").is_file()
    assert any((quick_start_folder / "runs").glob("*.png"))
    assert list((quick_start_folder / "report").glob("*.json"))


def test_readme_is_a_five_minute_read():
    assert len(README.read_text().splitlines()) <= 200


def test_readme_keeps_the_ci_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    command = next(line for line in ci.splitlines() if line.startswith(".venv/bin/pip install"))
    assert command in README.read_text()


def test_every_generated_section_matches_its_source():
    stale = stale_sections(documentation_files())
    assert not stale, "stale generated sections (run python -m docs_tools.generate):\n" + "\n".join(stale)


def test_generator_check_mode_passes_on_the_repository():
    result = CliRunner().invoke(generate_main, ["--check"])
    assert result.exit_code == 0, result.output


def test_check_mode_catches_a_results_file_that_changed(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    page = tmp_path / "backends.md"
    shutil.copyfile(ROOT / "docs" / "benchmarks" / "backends.md", page)
    assert stale_sections([page], results) == []
    payload = json.loads((results / "compare-v1.json").read_text())
    payload["rows"][1]["p50_ms"] += 1.0
    (results / "compare-v1.json").write_text(json.dumps(payload))
    assert stale_sections([page], results) == [f"{page}: results:compare-v1"]


def test_environment_block_says_what_a_results_file_does_not_record(tmp_path):
    (tmp_path / "bare.json").write_text(json.dumps({"rows": []}))
    block = render_section("environment:bare", tmp_path)
    assert "| `bare.json` | not recorded | not recorded | not recorded |" in block
    assert "does not say" in block


def test_formats_markdown_has_every_row():
    result = CliRunner().invoke(cli, ["formats", "--markdown"])
    assert result.exit_code == 0, result.output
    names = [line.split("|")[1].strip(" `") for line in result.output.splitlines()[2:]]
    assert names == [row.name for row in FORMATS]


@pytest.mark.parametrize("row", [row.name for row in FORMATS if row.exporter])
def test_every_export_option_is_documented(row):
    rows = options_rows(row)
    assert len(rows) == len({name for link in _chain(row) for name in link.options})
    undocumented = [r["flag"] for r in rows if not r["text"]]
    assert not undocumented, f"{row}: options without a description in their dataclass docstring: {undocumented}"


def _chain(row_name: str):
    from featherface_deploy.formats import get_format
    from featherface_deploy.pipeline.options import build_chain

    return build_chain(get_format(row_name))


def test_environment_block_reads_the_recorded_facts(tmp_path):
    facts = {"date": "2026-01-01T00:00:00+00:00", "cpu": "Example CPU", "machine": "aarch64", "affinity": 4,
             "threads": 2, "isa_flags": ["asimddp", "i8mm"], "versions": {"onnxruntime": "1.32.0"}}
    (tmp_path / "run.json").write_text(json.dumps({"facts": facts, "rows": []}))
    block = render_section("environment:run", tmp_path)
    assert ("| `run.json` | 2026-01-01T00:00:00+00:00 | Example CPU aarch64 | asimddp, i8mm | 4 | 2 | "
            "onnxruntime 1.32.0 |") in block
    assert "not recorded" not in block


@pytest.mark.parametrize("line, flags", [
    ("flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni amx_tile other", ["avx2", "fma", "avx512f", "avx512_vnni",
                                                                       "amx_tile"]),
    ("Features\t: fp asimd asimdhp asimddp i8mm sve", ["asimd", "asimdhp", "asimddp", "i8mm", "sve"]),
    ("flags\t\t: fpu sse2", []),
])
def test_isa_flags_are_read_from_cpuinfo(tmp_path, line, flags):
    from featherface_deploy.harness.report import cpu_isa_flags

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Example\n{line}\n\n")
    assert cpu_isa_flags(cpuinfo) == flags
    assert cpu_isa_flags(tmp_path / "absent") is None
