"""How an export option is declared: once, as a field of its exporter's options dataclass.

An :class:`ExportOption` says everything about one user-facing option: its help
text, how the command line's text becomes the value (``parse``), what the
command line accepts (``kind``, ``choices``, ``minimum``, ``maximum``), and
the default shown in help when the field's own default says nothing useful.
:meth:`ExportOption.field` turns it into a ``dataclasses.field`` with the
default and the precisions of the rows that take it (``only=("int8",)``).

Everything else is derived from these fields: the rows' accepted options
(:attr:`~featherface_deploy.formats.Format.options`), the ``export`` command's
click options (:mod:`featherface_deploy.cli.export_cmd`) and the docs' option
tables (:func:`~featherface_deploy.pipeline.options.options_markdown`).
An option several exporters take (``--imgsz``, ``--calib-dir``) is one
:class:`ExportOption` constant that each class uses; two different
declarations under one name are an error (:func:`declared_options`).

This module imports no backend (the CLI builds its options from it).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

METADATA_KEY = "export_option"
KINDS = ("value", "flag", "switch", "repeated")


@dataclass(frozen=True)
class ExportOption:
    """One user-facing export option (its name is the dataclass field's).

    Attributes:
        help: The help text (the rows it applies to first, e.g. ``"onnx: dynamic batch"``), without the
            default and the final period.
        kind: ``value`` (``--opset 19``), ``flag`` (``--dynamic``), ``switch`` (``--simplify/--no-simplify``)
            or ``repeated`` (``--keep-float A --keep-float B``, a tuple).
        parse: Turns the command line's text into the value (``"480x640"`` → ``(480, 640)``); raises
            ``ValueError`` with the message to show.
        value_type: ``int``, ``float`` or ``str``: what the command line checks before ``parse``.
        choices: The accepted values, if a fixed list.
        minimum: The smallest accepted number (``value_type`` int or float).
        maximum: The largest accepted number.
        existing_folder: The value is a folder that must exist.
        shown_default: The default as help shows it when the field's default does not say it
            (``"18; 19 with --dcn native"``); ``""``: the field's default (none for flags, ``None`` or empty).
        cli: Whether ``export`` has a command-line option for it (``int8_mode`` comes from ``--int8 MODE``).
        default: The default of every class that takes it, unless a class gives its own.
    """

    help: str
    kind: str = "value"
    parse: Callable[[object], object] | None = None
    value_type: type = str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    existing_folder: bool = False
    shown_default: str = ""
    cli: bool = True
    default: object = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown option kind '{self.kind}'; choose one of: {', '.join(KINDS)}")

    def field(self, default=dataclasses.MISSING, *, only: tuple[str, ...] = ()):
        """The dataclass field declaring this option.

        Args:
            default: The field's default (omitted: the option's :attr:`default`).
            only: Precisions of the rows that take it (empty: every row of the class).
        """
        return dataclasses.field(default=self.default if default is dataclasses.MISSING else default,
                                 metadata={METADATA_KEY: DeclaredOption(self, tuple(only))})


@dataclass(frozen=True)
class DeclaredOption:
    """An option as one class declares it: the option and the precisions of the rows that take it."""

    option: ExportOption
    only: tuple[str, ...]


@dataclass(frozen=True)
class OptionField:
    """One option field of one options class.

    Attributes:
        name: The field (and option) name, e.g. ``calib_dir`` (``--calib-dir``).
        option: Its declaration.
        default: The class's default for it.
        only: Precisions of the rows that take it (empty: all).
    """

    name: str
    option: ExportOption
    default: object
    only: tuple[str, ...]

    def taken_at(self, precision: str) -> bool:
        """Whether a row of this precision takes the option."""
        return not self.only or precision in self.only

    @property
    def flag(self) -> str:
        """The command-line spelling (``--calib-dir``)."""
        return option_flag(self.name)

    def default_text(self) -> str:
        """The default as help and docs show it (``""``: none worth showing)."""
        if self.option.shown_default:
            return self.option.shown_default
        return "" if self.option.kind == "flag" else show_value(self.default)


def option_fields(options_class: type) -> list[OptionField]:
    """The user-facing option fields of an options dataclass: its own in declaration order, then its bases'."""
    found = []
    for item in sorted(dataclasses.fields(options_class), key=lambda item: _declared_in(options_class, item.name)):
        declared = item.metadata.get(METADATA_KEY)
        if declared is None:
            continue
        found.append(OptionField(item.name, declared.option, item.default, declared.only))
    return found


def _declared_in(options_class: type, name: str) -> int:
    """How far up the class hierarchy ``name`` is declared (0: the class itself)."""
    return next(depth for depth, cls in enumerate(options_class.__mro__) if name in cls.__dict__.get("__annotations__", {}))


def declared_options(options_classes: Iterable[type]) -> dict[str, ExportOption]:
    """Option name → its one declaration, over several options classes (first appearance first).

    Raises:
        ValueError: Two classes declare one name differently (declare it once and share the constant).
    """
    options: dict[str, ExportOption] = {}
    for options_class in options_classes:
        for item in option_fields(options_class):
            known = options.setdefault(item.name, item.option)
            if known != item.option:
                raise ValueError(f"option '{item.name}' is declared twice, differently ({options_class.__name__}): "
                                 "declare it once as an ExportOption constant and use it in both classes")
    return options


def option_flag(name: str) -> str:
    """The CLI spelling of an option name (``calib_dir`` → ``--calib-dir``)."""
    return "--" + name.replace("_", "-")


def show_value(value) -> str:
    """A default as help shows it: ``(640, 640)`` → ``640``, ``True`` → ``on``; ``""`` for none."""
    if value is None or value == () or value is False:
        return ""
    if value is True:
        return "on"
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return str(value[0]) if value[0] == value[1] else f"{value[0]}x{value[1]}"
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def help_text(item: OptionField) -> str:
    """The help of an option with its default: ``"onnx: simplify the graph [on]."``."""
    shown = item.default_text()
    return item.option.help + (f" [{shown}]" if shown else "") + "."


# --- parsers of command-line text ---------------------------------------------------------------

_MIB_PER_UNIT = {"": 1, "m": 1, "mb": 1, "mib": 1, "g": 1024, "gb": 1024, "gib": 1024}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(value: str) -> tuple[int, int]:
    """Parses ``640`` or ``480x640`` (height × width) into a (height, width) tuple.

    Raises:
        ValueError: Not N or HxW with positive sizes.
    """
    parts = value.lower().split("x")
    try:
        sizes = [int(part) for part in parts]
    except ValueError:
        raise ValueError(f"expected N or HxW, got {value!r}") from None
    if len(sizes) not in (1, 2) or min(sizes) <= 0:
        raise ValueError(f"expected N or HxW with positive sizes, got {value!r}")
    return (sizes[0], sizes[-1])


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """Parses ``480x640,640x640`` into (height, width) pairs."""
    return tuple(parse_size(size) for size in text.split(","))


def parse_mebibytes(text: str) -> int:
    """Reads a memory size as whole MiB: ``2G`` → 2048, ``512M`` → 512, ``1536`` (plain MiB) → 1536.

    ``G``/``GB``/``GiB`` and ``M``/``MB``/``MiB`` are all binary units (TensorRT's pools are in MiB).

    Raises:
        ValueError: Not a size, an unknown unit, or not a positive whole number of MiB.
    """
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else None
    if unit not in _MIB_PER_UNIT:
        raise ValueError(f"expected a size like 2G, 512M or 2048 (MiB), got {text!r}")
    mib = float(match.group(1)) * _MIB_PER_UNIT[unit]
    if mib < 1 or not mib.is_integer():
        raise ValueError(f"{text!r} is {mib:g} MiB; give a whole number of MiB, at least 1")
    return int(mib)
