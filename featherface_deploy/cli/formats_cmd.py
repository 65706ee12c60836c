"""``featherface-deploy formats``: every row of the format table, and whether it builds and runs here."""

from __future__ import annotations

import click

from featherface_deploy.formats import CHECKPOINT, FORMATS, Format

MARKDOWN_HEADER = ("Format", "Precision", "Built from", "Suffix", "Opened by", "Run extra", "Export extra",
                   "Needs", "What it is")


@click.command("formats")
@click.option("--markdown", is_flag=True,
              help="Print the table as Markdown for the documentation: what each row is and needs, "
                   "without this machine's verdicts.")
def formats(markdown: bool) -> None:
    """List every format and precision: its source, suffix, pip extras, and whether it exports and runs here."""
    if markdown:
        click.echo(formats_markdown())
        return
    header = ("format", "precision", "built from", "suffix", "extra", "export here", "run here")
    rows = []
    for row in FORMATS:
        export_ok, export_why = row.exports_here()
        run_ok, run_why = row.runs_here()
        rows.append((row.name, row.precision, _source(row), row.suffix or "(folder)", row.export_extra or row.extra,
                     _verdict(export_ok, export_why) if row.exporter else "—", _verdict(run_ok, run_why)))
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header) - 1)]
    for cells in (header, *rows):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + "  " + str(cells[-1]))


def formats_markdown() -> str:
    """The format table as Markdown, one line per row; the same on every machine (no "here" verdicts)."""
    lines = ["| " + " | ".join(MARKDOWN_HEADER) + " |", "|" + "---|" * len(MARKDOWN_HEADER)]
    for row in FORMATS:
        source = _source(row)
        cells = (f"`{row.name}`", row.precision, source if source in ("—", CHECKPOINT) else f"`{source}`",
                 f"`{row.suffix}`" if row.suffix else "(folder)", f"`{row.runtime.split(':')[1]}`", f"`{row.extra}`",
                 f"`{row.export_extra}`" if row.exporter and row.export_extra else "—", _needs(row), row.description)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _source(row: Format) -> str:
    return "—" if row.source is None else row.source


def _needs(row: Format) -> str:
    """The platform a row's runtime needs beyond its Python packages."""
    needs = [" or ".join(row.run_probe.systems)] if row.run_probe.systems else []
    if row.run_probe.cuda:
        needs.append("NVIDIA GPU")
    elif row.run_probe.note.startswith("needs "):
        needs.append(row.run_probe.note.removeprefix("needs "))
    return ", ".join(needs) or "any"


def _verdict(ok: bool, why: str) -> str:
    return ("yes" + (f" ({why})" if why else "")) if ok else f"no: {why}"
