"""Benchmark reports: one row per artifact or model, written as Markdown, CSV, JSON and a PNG plot.

Every table is generated from rows (dicts) and a column list, never typed by
hand; the JSON carries the rows, the columns used and the machine facts
(date, CPU, thread count, library versions), so two reports can be compared
and their Markdown regenerated later (``benchmarks/update_readme.py``). numpy-free; the
plot imports matplotlib (Agg backend) only when asked for.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from featherface_deploy.outputs import claim_output, write_output

PACKAGES = ("featherface-deploy", "numpy", "torch", "onnx", "onnxruntime", "ai-edge-litert", "tensorflow",
            "litert-torch", "ai-edge-torch", "opencv-python-headless", "scipy", "coremltools", "tensorrt")
# CPU features that decide which kernels run (x86 AVX2/AVX-512/VNNI/AMX; ARM dot product and int8 matmul).
ISA_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8",
             "amx_bf16", "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve")


@dataclass(frozen=True)
class Column:
    """One table column.

    Attributes:
        key: Row key.
        header: Header text.
        digits: Decimal places for floats (``None``: as is).
    """

    key: str
    header: str
    digits: int | None = None

    def cell(self, row: Mapping) -> str:
        """Formats this column's value of a row (``—`` when absent)."""
        value = row.get(self.key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        if isinstance(value, bool):
            return "yes" if value else "NO"
        if isinstance(value, float) and self.digits is not None:
            return f"{value:.{self.digits}f}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    def to_dict(self) -> dict:
        """JSON form."""
        return {"key": self.key, "header": self.header, "digits": self.digits}


def cpu_model() -> str:
    """The CPU model name (Linux ``/proc/cpuinfo``), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_isa_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> list[str] | None:
    """The :data:`ISA_FLAGS` this CPU has, or ``None`` where Linux's cpuinfo cannot be read.

    x86 lists them on its ``flags`` line, ARM on its ``Features`` line.
    """
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith(("flags", "Features")):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in ISA_FLAGS if flag in present]
    except OSError:
        pass
    return None


def machine_facts(**settings) -> dict:
    """Date, machine, CPU, Python and library versions, plus the given settings (e.g. ``threads=1``)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "system": platform.platform(terse=True),
        "cpu": cpu_model(),
        "isa_flags": cpu_isa_flags(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "versions": versions,
        **settings,
    }


def markdown_table(rows: Iterable[Mapping], columns: Sequence[Column]) -> str:
    """Renders rows as a GitHub Markdown table."""
    lines = ["| " + " | ".join(c.header.replace("|", "\\|") for c in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(c.cell(row) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def facts_line(facts: Mapping) -> str:
    """One Markdown line stating when, where and with what a result was measured."""
    versions = ", ".join(f"{k} {v}" for k, v in facts.get("versions", {}).items())
    threads = f"; threads {facts['threads']}" if facts.get("threads") is not None else ""
    return (f"_Measured {facts.get('date', '?')} on {facts.get('cpu', '?')} ({facts.get('machine', '?')}, "
            f"{facts.get('affinity') or facts.get('cpu_count')} usable cores{threads}); {versions}._")


REPORT_SUFFIXES = {"markdown": ".md", "csv": ".csv", "json": ".json", "png": ".png"}


def report_paths(out_dir: str | Path, name: str) -> dict[str, Path]:
    """Kind → the path :func:`write_report` writes it to (the PNG only when it draws one)."""
    return {kind: Path(out_dir) / f"{name}{suffix}" for kind, suffix in REPORT_SUFFIXES.items()}


def write_report(out_dir: str | Path, name: str, rows: Sequence[Mapping], columns: Sequence[Column],
                 facts: Mapping, notes: Sequence[str] = (), extra: Mapping | None = None,
                 plot: bool = True, exist_ok: bool = False, inputs: Sequence[str | Path] = ()) -> dict[str, Path]:
    """Writes ``<name>.md``, ``.csv``, ``.json`` (and ``.png`` when ``plot`` and rows have AP and latency).

    Each file follows the output rules (:func:`~featherface_deploy.outputs.claim_output`).

    Args:
        out_dir: Folder (created).
        name: File stem.
        rows: One dict per artifact/model.
        columns: The Markdown columns (the CSV and JSON keep every key).
        facts: :func:`machine_facts` output.
        notes: Lines printed under the table (how it was measured).
        extra: More JSON fields (e.g. settings, claims).
        plot: Also draw accuracy against latency.
        exist_ok: Replace existing report files.
        inputs: What the run read; no report file may be one of them or inside one.

    Returns:
        Kind (``markdown``, ``csv``, ``json``, ``png``) → path.

    Raises:
        OutputError: A report file breaks the output rules.
    """
    paths = report_paths(out_dir, name)
    drawn = plot and any(_plot_point(row) for row in rows)
    if not drawn:
        del paths["png"]
    for path in paths.values():
        claim_output(path, inputs, exist_ok)  # all checked before the first is written
    payload = {"name": name, "facts": dict(facts), "columns": [c.to_dict() for c in columns], "rows": list(rows),
               "notes": list(notes), **(extra or {})}
    write_output(paths["json"], json.dumps(payload, indent=2, default=_json_default) + "\n", inputs, exist_ok)
    write_output(paths["markdown"], render_markdown(payload) + "\n", inputs, exist_ok)
    write_output(paths["csv"], _csv_text(rows), inputs, exist_ok)
    if drawn:
        with claim_output(paths["png"], inputs, exist_ok) as claim:
            plot_accuracy_latency(rows, claim.staged(), title=name)
            claim.publish()
    return paths


def render_markdown(payload: Mapping) -> str:
    """Markdown of a result JSON: its table(s), notes and facts line (all generated)."""
    columns = [Column(**c) for c in payload["columns"]]
    parts = [markdown_table(payload["rows"], columns)]
    for table in payload.get("tables", ()):
        parts += [f"**{table['title']}**", markdown_table(table["rows"], [Column(**c) for c in table["columns"]])]
    parts.append("\n".join(f"- {note}" for note in payload.get("notes", ())))
    parts.append(facts_line(payload.get("facts", {})))
    return "\n\n".join(part for part in parts if part)


def plot_accuracy_latency(rows: Sequence[Mapping], path: str | Path, title: str = "") -> None:
    """Scatter of WIDER FACE AP (Easy/Medium/Hard) against median latency, one label per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5), dpi=120)
    for setting, marker in (("easy", "o"), ("medium", "s"), ("hard", "^")):
        points = [(row["p50_ms"], row[f"ap_{setting}"], row.get("label", "")) for row in rows if _plot_point(row)]
        axis.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, label=setting.capitalize())
        if setting == "hard":
            for x, y, label in points:
                axis.annotate(label, (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    axis.set_xlabel("median latency per frame, ms (pre + infer + post)")
    axis.set_ylabel("WIDER FACE AP, % (subset)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _csv_text(rows: Sequence[Mapping]) -> str:
    keys = list(dict.fromkeys(k for row in rows for k in row if not isinstance(row[k], (dict, list))))
    stream = io.StringIO(newline="")
    writer = csv.DictWriter(stream, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return stream.getvalue()


def _plot_point(row: Mapping) -> bool:
    return all(isinstance(row.get(k), (int, float)) for k in ("p50_ms", "ap_easy", "ap_medium", "ap_hard"))


def _json_default(value):
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
