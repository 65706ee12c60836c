"""Generated sections of Markdown files: ``<!-- generated:NAME begin -->`` … ``<!-- generated:NAME end -->``.

The markers are the ones :func:`featherface_deploy.harness.report.update_readme` writes, so a
benchmark script and the documentation generator fill the same sections.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from featherface_deploy.harness.report import SECTION

_SECTION = re.compile(r"<!-- generated:(?P<name>[^ ]+) begin -->\n(?P<body>.*?)\n?<!-- generated:(?P=name) end -->",
                      re.DOTALL)  # SECTION's begin and end markers


@dataclass(frozen=True)
class Section:
    """One generated section of a file.

    Attributes:
        name: What generates it (``results:compare-v1``, ``options:onnx``, ``formats``…).
        body: Its current text, without the markers.
    """

    name: str
    body: str


def find_sections(text: str) -> Iterator[Section]:
    """Yields the generated sections of a Markdown text, in order."""
    for match in _SECTION.finditer(text):
        yield Section(match.group("name"), match.group("body"))


def replace_sections(text: str, render: Callable[[str], str]) -> str:
    """Returns ``text`` with every generated section's body replaced by ``render(name)``."""

    def substitute(match: re.Match) -> str:
        name = match.group("name")
        begin, end = SECTION.format(name=name, edge="begin"), SECTION.format(name=name, edge="end")
        return f"{begin}\n{render(name).strip()}\n{end}"

    return _SECTION.sub(substitute, text)
