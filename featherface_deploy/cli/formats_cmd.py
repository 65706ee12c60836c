"""``featherface-deploy formats``: every row of the format table, and whether it builds and runs here."""

from __future__ import annotations

import click

from featherface_deploy.formats import CHECKPOINT, FORMATS


@click.command("formats")
def formats() -> None:
    """List every format and precision: its source, suffix, pip extras, and whether it exports and runs here."""
    header = ("format", "precision", "built from", "suffix", "extra", "export here", "run here")
    rows = []
    for row in FORMATS:
        export_ok, export_why = row.exports_here()
        run_ok, run_why = row.runs_here()
        rows.append((row.name, row.precision, "—" if row.source is None else
                     ("checkpoint" if row.source == CHECKPOINT else row.source),
                     row.suffix or "(folder)", row.export_extra or row.extra,
                     _verdict(export_ok, export_why) if row.exporter else "—", _verdict(run_ok, run_why)))
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header) - 1)]
    for cells in (header, *rows):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + "  " + str(cells[-1]))


def _verdict(ok: bool, why: str) -> str:
    return ("yes" + (f" ({why})" if why else "")) if ok else f"no: {why}"
