"""Rewrites the generated sections of a README from benchmark result files.

``python benchmarks/update_readme.py README.md benchmarks/results/*.json``: each result replaces the text
between ``<!-- generated:NAME begin -->`` and ``<!-- generated:NAME end -->``, NAME being its ``name`` field,
with its Markdown (:func:`featherface_deploy.harness.report.render_markdown`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from docs_tools.sections import update_readme  # noqa: E402
from featherface_deploy.harness.report import render_markdown  # noqa: E402


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
