"""Options tables of the format rows, generated from the exporters' own option declarations.

Each exporter declares its options as the fields of a frozen dataclass (``Format.options_class``) and
documents them in the class docstring's ``Attributes:`` section; a row accepts the fields named in
``Format.options``, through its chain (``onnx-int8`` also takes the options of the ``onnx`` file it is
built from). The table lists, per option: its command-line flag (or, where ``export`` has none, its key for
:func:`featherface_deploy.pipeline.export_model`), its default and that description.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

from featherface_deploy.formats import get_format
from featherface_deploy.harness.report import Column, markdown_table
from featherface_deploy.pipeline.options import build_chain, option_flag

_ATTRIBUTE = re.compile(r"^(?P<name>\w+): (?P<text>.*)$")
_ROLE = re.compile(r":\w+:`~?([^`]+)`")


@dataclass(frozen=True)
class OptionField:
    """One declared option: its name, default (as written in Markdown) and description."""

    name: str
    default: str
    text: str


def declared_options(reference: str) -> dict[str, OptionField]:
    """The fields of an options dataclass (``module:Class``), read from its source without importing it.

    Reading the source keeps the tables buildable where the exporter's backend is not installed
    (TensorRT's options module imports ``tensorrt``).
    """
    module_name, class_name = reference.split(":")
    tree = _module_tree(module_name)
    constants = _constants(tree)
    for node in tree.body:  # constants imported by name from the package (``from .dcn_choice import AUTO``)
        if isinstance(node, ast.ImportFrom) and node.module and (node.module.startswith("featherface_deploy")
                                                                 or node.level):
            source = importlib.util.resolve_name("." * node.level + node.module, module_name.rpartition(".")[0])
            imported = _constants(_module_tree(source))
            for alias in node.names:
                for key, value in imported.items():
                    head, dot, rest = key.partition(".")
                    if head == alias.name:
                        constants[(alias.asname or alias.name) + dot + rest] = value
    cls = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == class_name)
    docs = attribute_docs(ast.get_docstring(cls) or "")
    fields = {}
    for base in (b.id for b in cls.bases if isinstance(b, ast.Name)):  # inherited options first, then own
        where = _class_module(tree, module_name, base)
        if where is not None:
            fields.update(declared_options(f"{where}:{base}"))
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name = node.target.id
            fields[name] = OptionField(name, _default(node.value, constants), docs.get(name, ""))
    return fields


def _class_module(tree: ast.Module, module_name: str, class_name: str) -> str | None:
    """The package module that defines ``class_name`` as seen from ``module_name`` (itself, or where it is
    imported from); ``None`` for a class from outside the package."""
    if any(isinstance(node, ast.ClassDef) and node.name == class_name for node in tree.body):
        return module_name
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and (node.module.startswith("featherface_deploy")
                                                                 or node.level):
            if any((alias.asname or alias.name) == class_name for alias in node.names):
                return importlib.util.resolve_name("." * node.level + node.module, module_name.rpartition(".")[0])
    return None


def _module_tree(module_name: str) -> ast.Module:
    return ast.parse(Path(importlib.util.find_spec(module_name).origin).read_text())


def _constants(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level ``NAME = value`` and class-level ``Class.field = value`` (dataclass defaults) of a module."""
    constants = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                 for target in node.targets if isinstance(target, ast.Name)}
    for cls in (node for node in tree.body if isinstance(node, ast.ClassDef)):
        constants.update({f"{cls.name}.{node.target.id}": node.value for node in cls.body
                          if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value})
    return constants


def attribute_docs(docstring: str) -> dict[str, str]:
    """The ``Attributes:`` section of a docstring: field name → its description on one line, in Markdown."""
    docs: dict[str, str] = {}
    inside, current = False, None
    for line in inspect.cleandoc(docstring).splitlines():
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
    return {name: _ROLE.sub(r"`\1`", text.replace("``", "`")) for name, text in docs.items()}


def _default(node: ast.expr | None, constants: dict[str, ast.expr]) -> str:
    if node is None:
        return "required"
    if isinstance(node, ast.Call) and ast.unparse(node.func) == "field":
        factory = next((k.value for k in node.keywords if k.arg == "default_factory"), None)
        node = next((k.value for k in node.keywords if k.arg == "default"), None)
        if node is None:
            return "—" if factory is not None and ast.unparse(factory) in ("tuple", "list", "dict") else "required"
    if isinstance(node, (ast.Name, ast.Attribute)) and ast.unparse(node) in constants:
        node = constants[ast.unparse(node)]
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return f"`{ast.unparse(node)}`"
    return "—" if value is None or value == () else f"`{value}`"


def command_line_flags() -> set[str]:
    """Every flag of ``featherface-deploy export``."""
    from featherface_deploy.cli.export_cmd import export

    return {flag for param in export.params for flag in (*param.opts, *param.secondary_opts)}


def _spelling(name: str, flags: set[str]) -> str:
    """The option's command-line flag, or its key for ``export_model`` when the command has no flag for it."""
    flag = option_flag(name)
    return f"`{flag}`" if flag in flags else f"`{name}` (Python API only)"


def options_rows(row_name: str) -> list[dict]:
    """One dict per option ``row_name`` accepts (its own first, then its source's): flag, default, row, text."""
    rows, seen, flags = [], set(), command_line_flags()
    for link in build_chain(get_format(row_name)):
        if not link.options_class:
            continue
        fields = declared_options(link.options_class)
        for name in link.options:
            if name not in seen:
                seen.add(name)
                rows.append({"flag": _spelling(name, flags), "default": fields[name].default,
                             "row": f"`{link.name}`", "text": fields[name].text})
    return rows


def options_markdown(row_name: str) -> str:
    """The options table of one format row, as Markdown."""
    return markdown_table(options_rows(row_name), [Column("flag", "Option"), Column("default", "Default"),
                                                   Column("row", "Row"), Column("text", "What it does")])
