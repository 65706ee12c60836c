"""Which options a format row takes, their docs table, and which output names it may write.

A row accepts its own exporter's options and those of the rows it is built
from (``onnx-int8`` takes ``--calib-dir`` and, through ``onnx``, ``--dynamic``).
Anything else is an error naming the option and the rows that do take it, so an
option is never silently ignored. :func:`options_markdown` renders a row's
options (from their declarations in :mod:`featherface_deploy.export_options`)
as the docs' table.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from pathlib import Path

from featherface_deploy.errors import ExportError
from featherface_deploy.harness.report import Column, markdown_table
from featherface_deploy.formats import CHECKPOINT, END2END_ROWS, FORMATS, Format, get_format, resolve
from featherface_deploy.option_fields import option_fields, option_flag

_ATTRIBUTE = re.compile(r"^(?P<name>\w+): (?P<text>.*)$")
_ROLE = re.compile(r":\w+:`~?([^`]+)`")


def build_chain(row: Format) -> list[Format]:
    """``row`` and the rows it is built from, the row itself first (``engine-int8, onnx-int8, onnx``)."""
    chain = [row]
    while chain[-1].source not in (None, CHECKPOINT):
        chain.append(get_format(chain[-1].source))
    return chain


def accepted_options(row: Format) -> set[str]:
    """Every option name ``row`` accepts, through its chain."""
    return {name for link in build_chain(row) for name in link.options}


def split_options(row: Format, given: Mapping[str, object]) -> dict[str, dict[str, object]]:
    """Hands each row of the chain the options it takes (an option several rows take goes to each).

    Returns:
        Row name → its options, with the rows' ``source_overrides`` applied.

    Raises:
        ExportError: An option no row of the chain takes, or ``end2end`` for a row outside
            :data:`~featherface_deploy.formats.END2END_ROWS`; the message names the rows that take it.
    """
    if given.get("end2end") and row.name not in END2END_ROWS:  # not through a chain: onnx-int8, the engines
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


def options_rows(row: Format | str) -> list[dict[str, str]]:
    """One dict per option ``row`` takes (its own first, then its sources'; each once): flag, default, row, text.

    ``flag``: the ``export`` flag, or the :func:`~featherface_deploy.pipeline.export_model` key where the command
    has none; ``text``: the field's description in its class docstring (``Attributes:``), else the option's help.
    """
    row = get_format(row) if isinstance(row, str) else row
    rows: list[dict[str, str]] = []
    listed: set[str] = set()
    for link in build_chain(row):
        if link.options_class is None:
            continue
        options_class = resolve(link.options_class)
        described = attribute_docs(options_class)
        for item in option_fields(options_class):
            if item.name in listed or not item.taken_at(link.precision):
                continue
            listed.add(item.name)
            flag = f"`{item.flag}`" if item.option.cli else f"`{item.name}` (Python API only)"
            default = "—" if item.default is None or item.default == () else f"`{item.default}`"
            rows.append({"flag": flag, "default": default, "row": f"`{link.name}`",
                         "text": described.get(item.name) or item.option.help + "."})
    return rows


def options_markdown(row: Format | str) -> str:
    """The options ``row`` takes (:func:`options_rows`) as the docs' Markdown table."""
    return markdown_table(options_rows(row), [Column("flag", "Option"), Column("default", "Default"),
                                              Column("row", "Row"), Column("text", "What it does")])


def attribute_docs(options_class: type) -> dict[str, str]:
    """Field name → its description in the ``Attributes:`` section of the class's docstrings (its bases' too),
    on one line, in Markdown."""
    docs: dict[str, str] = {}
    for cls in reversed(options_class.__mro__):
        docs.update(_attributes(inspect.cleandoc(cls.__doc__ or "")))
    return {name: _ROLE.sub(r"`\1`", text.replace("``", "`")) for name, text in docs.items()}


def _attributes(docstring: str) -> dict[str, str]:
    docs: dict[str, str] = {}
    inside, current = False, None
    for line in docstring.splitlines():
        if line.strip() == "Attributes:":
            inside = True
            continue
        if not inside:
            continue
        if line and not line.startswith(" "):
            break
        match = _ATTRIBUTE.match(line.strip())
        if match and len(line) - len(line.lstrip()) == 4:
            current = match.group("name")
            docs[current] = match.group("text")
        elif current and line.strip():
            docs[current] += " " + line.strip()
    return docs


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
