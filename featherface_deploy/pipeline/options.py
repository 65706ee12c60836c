"""Which options a format row takes, and which output names it may write.

A row accepts its own exporter's options and those of the rows it is built
from (``onnx-int8`` takes ``--calib-dir`` and, through ``onnx``, ``--dynamic``).
Anything else is an error naming the option and the rows that do take it, so an
option is never silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from featherface_deploy.errors import ExportError
from featherface_deploy.formats import CHECKPOINT, END2END_ROWS, FORMATS, Format, get_format


def build_chain(row: Format) -> list[Format]:
    """``row`` and the rows it is built from, the row itself first (``engine-int8, onnx-int8, onnx``)."""
    chain = [row]
    while chain[-1].source not in (None, CHECKPOINT):
        chain.append(get_format(chain[-1].source))
    return chain


def accepted_options(row: Format) -> set[str]:
    """Every option name ``row`` accepts, through its chain."""
    return {name for link in build_chain(row) for name in link.options}


def option_flag(name: str) -> str:
    """The CLI spelling of an option name (``calib_dir`` → ``--calib-dir``)."""
    return "--" + name.replace("_", "-")


def split_options(row: Format, given: Mapping[str, object]) -> dict[str, dict[str, object]]:
    """Hands each row of the chain the options it takes (an option several rows take goes to each).

    Returns:
        Row name → its options, with the rows' ``source_overrides`` applied.

    Raises:
        ExportError: An option no row of the chain takes, or ``end2end`` for a row outside
            :data:`~featherface_deploy.formats.END2END_ROWS`; the message names the rows that take it.
    """
    if given.get("end2end") and row.name not in END2END_ROWS:  # not through a chain: onnx-int8 or an engine cannot
        raise ExportError(f"--end2end is not available for --format {row.name}; it applies to: "
                          f"{', '.join(END2END_ROWS)}")
    known = accepted_options(row)
    for name in given:
        if name not in known:
            takers = [other.name for other in FORMATS if name in accepted_options(other)]
            where = f"it applies to: {', '.join(takers)}" if takers else "no format takes it"
            raise ExportError(f"{option_flag(name)} is not used by --format {row.name} ({where})")
    chain = build_chain(row)
    split = {link.name: {k: v for k, v in given.items() if k in link.options} for link in chain}
    for link in chain:
        for key, value in link.source_overrides:
            split[link.source][key] = value
    return split


def check_suffix(row: Format, out: str | Path) -> Path:
    """Checks that ``out`` is named like ``row``'s files.

    Raises:
        ExportError: A suffix of another format (``--format onnx -o x.tflite``), or a folder row given a
            file suffix.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if row.suffix:
        if suffix not in row.suffixes:
            raise ExportError(f"--format {row.name} writes {row.suffix} {'folders' if row.directory else 'files'}; "
                              f"got '{out.name}' (e.g. {out.with_suffix(row.suffix).name})")
    elif suffix in {s for other in FORMATS for s in other.suffixes if s}:
        raise ExportError(f"--format {row.name} writes a folder; '{out.name}' has the suffix of another format")
    return out


def default_output(row: Format, checkpoint: str | Path) -> Path:
    """The checkpoint's name with the row's suffix and, past FP32, its precision (``v1-int8.onnx``)."""
    checkpoint = Path(checkpoint)
    variant = row.name[len(row.family) + 1:] if row.name.startswith(row.family + "-") else ""
    stem = f"{checkpoint.stem}-{variant}" if variant else checkpoint.stem
    if not row.suffix:
        return checkpoint.with_name(f"{stem}-{row.family}")
    return checkpoint.with_name(stem + row.suffix)
