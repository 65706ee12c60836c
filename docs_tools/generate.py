"""Regenerate (or check) every generated section of the README and the documentation.

    python -m docs_tools.generate           # rewrite the sections in place
    python -m docs_tools.generate --check   # exit 1 naming each section that differs from its source

Section names say what fills them:

- ``formats``: ``featherface-deploy formats --markdown``;
- ``support-matrix``: the README's support matrix (:mod:`docs_tools.support_matrix`);
- ``options:ROW``: the options table of format row ``ROW``, from its exporters' option declarations
  (:func:`featherface_deploy.pipeline.options.options_markdown`);
- ``results:NAME``: the table(s) of ``benchmarks/results/NAME.json``;
- ``environment:NAME,NAME…``: the environment block of a benchmark page, from those results files.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import click

from docs_tools.environment import environment_block
from docs_tools.results_tables import RESULTS_DIR, load_results, render_results
from docs_tools.sections import find_sections, replace_sections
from docs_tools.support_matrix import support_matrix_markdown
from featherface_deploy.cli.formats_cmd import formats_markdown
from featherface_deploy.pipeline.options import options_markdown

ROOT = Path(__file__).resolve().parent.parent


def render_section(name: str, results_dir: Path = RESULTS_DIR) -> str:
    """The generated text of section ``name`` (see the module docstring for the names).

    Raises:
        ValueError: A name no generator knows.
    """
    kind, _, argument = name.partition(":")
    if kind == "formats" and not argument:
        return formats_markdown()
    if kind == "support-matrix" and not argument:
        return support_matrix_markdown()
    if kind == "options":
        return options_markdown(argument)
    if kind == "results":
        return render_results(argument, results_dir)
    if kind == "environment":
        stems = argument.split(",")
        return environment_block([(f"{stem}.json", load_results(stem, results_dir)) for stem in stems])
    raise ValueError(f"unknown generated section '{name}' (known: formats, support-matrix, options:ROW, "
                     "results:NAME, environment:NAME,…)")


def documentation_files(root: Path = ROOT) -> list[Path]:
    """The Markdown files that may hold generated sections: the README and everything under ``docs/``."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def stale_sections(files: Iterable[Path], results_dir: Path = RESULTS_DIR) -> list[str]:
    """``file: section`` for every generated section whose text differs from what its source gives now."""
    stale = []
    for path in files:
        for section in find_sections(path.read_text()):
            if section.body.strip() != render_section(section.name, results_dir).strip():
                stale.append(f"{path}: {section.name}")
    return stale


def regenerate(files: Iterable[Path], results_dir: Path = RESULTS_DIR) -> list[Path]:
    """Rewrites the generated sections of ``files`` in place; returns the files that changed."""
    changed = []
    for path in files:
        text = path.read_text()
        new = replace_sections(text, lambda name: render_section(name, results_dir))
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


@click.command()
@click.option("--check", is_flag=True, help="Change nothing; exit 1 naming the stale sections.")
def main(check: bool) -> None:
    """Regenerate the generated sections of README.md and docs/ (tables, options, environment blocks)."""
    files = documentation_files()
    if check:
        stale = stale_sections(files)
        for line in stale:
            click.echo(f"stale: {line} (run python -m docs_tools.generate)", err=True)
        sys.exit(1 if stale else 0)
    for path in regenerate(files):
        click.echo(f"updated {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
