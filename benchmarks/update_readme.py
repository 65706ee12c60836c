"""Rewrites the generated sections of a README from benchmark result files.

``python benchmarks/update_readme.py README.md benchmarks/results/*.json``: each result replaces the text
between ``<!-- generated:NAME begin -->`` and ``<!-- generated:NAME end -->``, NAME being its ``name`` field,
with its Markdown (:func:`featherface_deploy.harness.report.render_markdown`).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from featherface_deploy.harness.report import render_markdown

SECTION = "<!-- generated:{name} {edge} -->"


def update_readme(readme: str | Path, name: str, markdown: str) -> None:
    """Replaces the text between ``<!-- generated:NAME begin -->`` and ``… end -->`` markers.

    Raises:
        ValueError: The README has no such markers.
    """
    path = Path(readme)
    text = path.read_text()
    begin, end = SECTION.format(name=name, edge="begin"), SECTION.format(name=name, edge="end")
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{path} has no '{begin}' … '{end}' section")
    path.write_text(pattern.sub(lambda _: f"{begin}\n{markdown}\n{end}", text))


def main() -> None:
    """Regenerates each result's section of the README."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("readme", type=Path)
    parser.add_argument("results", type=Path, nargs="+")
    args = parser.parse_args()
    for result in args.results:
        payload = json.loads(result.read_text())
        update_readme(args.readme, payload["name"], render_markdown(payload))
        print(f"{args.readme}: section '{payload['name']}' from {result}")


if __name__ == "__main__":
    main()
