"""The README's support matrix: one line per kind of file, from the format table plus where it has run.

Precisions and end-to-end support (a row of ``formats.END2END_ROWS``: decoding and NMS inside
the graph) are read from
:data:`featherface_deploy.formats.FORMATS`, so a row or option added there shows up here when the docs are
regenerated. Where each kind exports, runs, is tested and has run on real hardware are facts about this
project's machines, not about the code, and are stated once in :data:`WHERE`.
"""

from __future__ import annotations

from dataclasses import dataclass

from featherface_deploy.formats import END2END_ROWS, FORMATS, Format
from featherface_deploy.harness.report import Column, markdown_table


@dataclass(frozen=True)
class Where:
    """Where one kind of file builds, runs, is tested, and has run.

    Attributes:
        label: What the kind is called in the matrix.
        exports_on: Where it can be built.
        runs_on: Where it runs.
        ci: What CI (Linux x86_64, no GPU) does with it.
        hardware: Whether it ran on real target hardware, only emulated, or never.
    """

    label: str
    exports_on: str
    runs_on: str
    ci: str
    hardware: str


# Kind of file → where. A kind is a row family, and the PyTorch rows split by device.
WHERE: dict[str, Where] = {
    "torch": Where("PyTorch checkpoint", "— (the reference)", "any CPU", "yes", "yes (x86_64 CPU)"),
    "torch-cuda": Where("PyTorch on an NVIDIA GPU", "—", "NVIDIA GPU", "skipped (no GPU)", "**never**"),
    "onnx": Where("ONNX (ONNX Runtime)", "Linux, macOS (with torch)", "any CPU", "yes",
                  "x86_64; aarch64 only emulated"),
    "tflite": Where("TFLite / LiteRT", "Linux x86_64, macOS", "any CPU, Android", "yes",
                    "x86_64; aarch64 only emulated; no phone"),
    "mediapipe": Where("MediaPipe ObjectDetector (`.tflite` + task metadata)", "Linux x86_64, macOS",
                       "MediaPipe Tasks: Android, iOS, web, Python", "Python and web tasks run; Android/iOS not",
                       "x86_64 (Python, web); no phone"),
    "coreml": Where("Core ML (`.mlpackage`)", "Linux x86_64, macOS", "macOS, iOS; elsewhere a numpy reference "
                    "interpreter", "export and interpreter; Core ML skipped (macOS)", "**never**: Core ML itself "
                    "never ran"),
    "trt-recipe": Where("TensorRT recipe (ONNX + `trtexec` script)", "anywhere", "builds on the Jetson / GPU",
                        "recipe and parser-rule checks", "**never** built on a device"),
    "engine": Where("TensorRT engine (`.engine`)", "NVIDIA GPU with TensorRT", "NVIDIA GPU, Jetson",
                    "skipped (no TensorRT, no GPU)", "**never**: engines never built or run"),
}


def kind_of(row: Format) -> str:
    """The matrix line a row belongs to: its family, with the PyTorch rows split by device."""
    if row.family == "torch" and dict(row.runtime_options).get("device") == "cuda":
        return "torch-cuda"
    return row.family


def support_rows() -> list[dict]:
    """One dict per kind of file, in format-table order.

    Raises:
        KeyError: A family in the format table that :data:`WHERE` does not describe (add it there).
    """
    kinds: dict[str, list[Format]] = {}
    for row in FORMATS:
        kinds.setdefault(kind_of(row), []).append(row)
    lines = []
    for kind, rows in kinds.items():
        if kind not in WHERE:
            raise KeyError(f"format family '{kind}' is not in docs_tools.support_matrix.WHERE: say where it runs")
        where = WHERE[kind]
        end2end = [row.precision.upper() for row in rows if row.name in END2END_ROWS]
        lines.append({"format": where.label, "precisions": ", ".join(row.precision.upper() for row in rows),
                      "end2end": ", ".join(end2end) or "no", "exports": where.exports_on, "runs": where.runs_on,
                      "ci": where.ci, "hardware": where.hardware})
    return lines


def support_matrix_markdown() -> str:
    """The matrix as a Markdown table."""
    return markdown_table(support_rows(), [
        Column("format", "format"), Column("precisions", "precisions"),
        Column("end2end", "end-to-end (NMS in the graph)"), Column("exports", "exports on"), Column("runs", "runs on"),
        Column("ci", "tested in CI (Linux x86_64, no GPU)"), Column("hardware", "run on real target hardware")])
