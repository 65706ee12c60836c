"""Generated sections of Markdown files: ``<!-- generated:NAME begin -->`` … ``<!-- generated:NAME end -->``.

:func:`update_readme` fills one section (``benchmarks/update_readme.py`` uses it), :func:`replace_sections`
all of a text (the documentation generator): the same markers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

SECTION = "<!-- generated:{name} {edge} -->"

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
