"""Checks that a module's source runs on Python 3.8, the oldest Python a device bundle supports.

The host needs Python ≥ 3.10, devices may have 3.8 (Jetson's JetPack 5, older Raspberry Pi OS). Two kinds
of newer code break there: grammar (``match``, parenthesised context managers), caught by parsing with
``feature_version=(3, 8)``, and expressions evaluated at run time that 3.8 cannot evaluate: ``dict[str,
int]`` or ``X | None`` outside annotations (annotations are safe behind ``from __future__ import
annotations``), and a few standard-library calls added later.
"""

from __future__ import annotations

import ast
from pathlib import Path

_BUILTIN_GENERICS = {"dict", "list", "tuple", "set", "frozenset", "type"}
_NEWER_CALLS = {"removeprefix": "3.9", "removesuffix": "3.9", "is_relative_to": "3.9", "with_stem": "3.9",
                "bit_count": "3.10", "to_thread": "3.9"}
_NEWER_IMPORTS = {("functools", "cache"): "3.9", ("typing", "TypeAlias"): "3.10", ("itertools", "pairwise"): "3.10",
                  ("typing", "ParamSpec"): "3.10", ("typing", "Self"): "3.11", ("tomllib", None): "3.11",
                  ("zoneinfo", None): "3.9", ("graphlib", None): "3.9"}


def py38_problems(source: str, filename: str = "<module>") -> list[str]:
    """Lists what in ``source`` would fail on Python 3.8 (``file:line: reason``), empty when none.

    Args:
        source: Python source text.
        filename: Name used in the messages.
    """
    try:
        tree = ast.parse(source, filename, feature_version=(3, 8))
    except SyntaxError as error:
        return [f"{filename}:{error.lineno}: syntax newer than Python 3.8 ({error.msg})"]
    postponed = any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
                    and any(alias.name == "annotations" for alias in node.names) for node in tree.body)
    annotation_nodes = set() if not postponed else {id(node) for node in _annotation_subtrees(tree)}
    problems = []
    for node in ast.walk(tree):
        line = f"{filename}:{getattr(node, 'lineno', '?')}"
        if id(node) in annotation_nodes:
            continue
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in _BUILTIN_GENERICS:
            problems.append(f"{line}: `{node.value.id}[...]` evaluated at run time needs Python 3.9 (use typing)")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and _is_type_union(node):
            problems.append(f"{line}: `X | Y` of types evaluated at run time needs Python 3.10 (use typing.Union)")
        elif isinstance(node, ast.Attribute) and node.attr in _NEWER_CALLS:
            problems.append(f"{line}: `.{node.attr}` needs Python {_NEWER_CALLS[node.attr]}")
        elif isinstance(node, ast.keyword) and node.arg == "strict" and _is_zip_call(tree, node):
            problems.append(f"{line}: zip(strict=...) needs Python 3.10")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            problems.extend(f"{line}: {what} needs Python {version}" for what, version in _newer_imports(node))
    return problems


def check_files(paths: list[Path], root: Path) -> list[str]:
    """:func:`py38_problems` of several files, named relative to ``root``."""
    problems = []
    for path in paths:
        problems.extend(py38_problems(path.read_text(encoding="utf-8"), str(path.relative_to(root))))
    return problems


def _annotation_subtrees(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args
            for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                        arguments.vararg, arguments.kwarg]:
                if arg is not None and arg.annotation is not None:
                    yield from ast.walk(arg.annotation)
            if node.returns is not None:
                yield from ast.walk(node.returns)
        elif isinstance(node, ast.AnnAssign):
            yield from ast.walk(node.annotation)


def _is_type_union(node: ast.BinOp) -> bool:
    """``A | B`` where a side is ``None`` or a capitalised/builtin type name: a type union, not a bitwise or."""
    def typeish(side: ast.AST) -> bool:
        if isinstance(side, ast.Constant) and side.value is None:
            return True
        if isinstance(side, ast.BinOp) and isinstance(side.op, ast.BitOr):
            return _is_type_union(side)
        name = side.attr if isinstance(side, ast.Attribute) else getattr(side, "id", "")
        # Capitalised names are classes; ALL-CAPS names are flag constants (re.I | re.M), not types.
        return name in {"str", "int", "float", "bytes", "bool"} or (name[:1].isupper() and not name.isupper())
    return typeish(node.left) and typeish(node.right)


def _is_zip_call(tree: ast.AST, keyword: ast.keyword) -> bool:
    return any(isinstance(node, ast.Call) and keyword in node.keywords and getattr(node.func, "id", "") == "zip"
               for node in ast.walk(tree))


def _newer_imports(node: ast.AST):
    if isinstance(node, ast.Import):
        for alias in node.names:
            if (alias.name, None) in _NEWER_IMPORTS:
                yield f"import {alias.name}", _NEWER_IMPORTS[(alias.name, None)]
    elif node.module is not None:
        if (node.module, None) in _NEWER_IMPORTS:
            yield f"from {node.module} import", _NEWER_IMPORTS[(node.module, None)]
        for alias in node.names:
            if (node.module, alias.name) in _NEWER_IMPORTS:
                yield f"{node.module}.{alias.name}", _NEWER_IMPORTS[(node.module, alias.name)]
