"""The ``export`` command's format options, derived from their declarations in :mod:`featherface_deploy.export_options`.

Every option field of every row's options class becomes one click option
(``calib_dir`` → ``--calib-dir``) with the declared help and the default it
shows; a value is parsed by the declaration's ``parse`` while click reads the
command line, so a bad value is a usage error naming the option.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from featherface_deploy.formats import FORMATS, resolve
from featherface_deploy.option_fields import ExportOption, OptionField, declared_options, help_text, option_fields


class ParsedValue(click.ParamType):
    """A command-line value read by an option's ``parse`` (``480x640`` → ``(480, 640)``)."""

    name = "text"

    def __init__(self, option: ExportOption) -> None:
        self.option = option

    def convert(self, value, param, ctx):
        """The parsed value; a ``ValueError`` of ``parse`` becomes a usage error naming the option."""
        if not isinstance(value, str):
            return value
        try:
            return self.option.parse(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


def format_option_fields() -> dict[str, list[OptionField]]:
    """Option name → its fields in every row's options class (table order), for options the CLI offers.

    Raises:
        ValueError: One name declared differently by two classes.
    """
    classes = list(dict.fromkeys(resolve(row.options_class) for row in FORMATS if row.options_class))
    declared_options(classes)
    fields: dict[str, list[OptionField]] = {}
    for options_class in classes:
        for item in option_fields(options_class):
            if item.option.cli:
                fields.setdefault(item.name, []).append(item)
    return fields


def format_options(command: Callable) -> Callable:
    """Adds a click option for every declared format option to ``command`` (which receives them as keywords)."""
    for name, items in reversed(format_option_fields().items()):
        command = click.option(*_declarations(items[0]), **_attributes(items))(command)
    return command


def _declarations(item: OptionField) -> tuple[str, ...]:
    if item.option.kind == "switch":
        return (f"{item.flag}/--no-{item.flag[2:]}", item.name)
    return (item.flag, item.name)


def _attributes(items: list[OptionField]) -> dict:
    """click's keywords: the help shows a default only where every class that takes the option agrees on it."""
    option = items[0].option
    shown = {item.default_text() for item in items}
    helped = help_text(items[0]) if len(shown) == 1 else f"{option.help}."
    attributes = {"default": None, "help": helped}
    if option.kind == "flag":
        attributes["is_flag"] = True
    elif option.kind == "repeated":
        attributes["multiple"] = True
    elif option.kind == "value":
        attributes["type"] = _value_type(option)
    return attributes


def _value_type(option: ExportOption):
    if option.parse is not None:
        return ParsedValue(option)
    if option.choices:
        return click.Choice(list(option.choices))
    if option.existing_folder:
        return click.Path(exists=True, file_okay=False)
    if option.value_type is int and (option.minimum is not None or option.maximum is not None):
        return click.IntRange(option.minimum, option.maximum)
    if option.value_type is float and (option.minimum is not None or option.maximum is not None):
        from featherface_deploy.cli.options import Number  # finite, in range: NaN refused like the API does

        return Number(float("-inf") if option.minimum is None else option.minimum, option.maximum)
    return option.value_type
