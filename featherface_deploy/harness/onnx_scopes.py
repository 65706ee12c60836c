"""Which layer each node of an ONNX graph belongs to: the torch module path the exporter recorded.

The dynamo exporter writes each node's module path in its metadata (``pkg.torch.onnx.name_scopes``,
e.g. ``['', 'ssh1', 'ssh1.conv3X3', 'ssh1.conv3X3.0', 'mul_12']``) and the project's export keeps it through
simplification. From it, :func:`group_of` names the node's layer group (backbone, BiFPN, each SSH block,
heads, other) and :func:`layer_of` its layer (e.g. ``ssh1.conv3X3``, one DCN block). ONNX Runtime renames
the nodes it fuses or inserts (``leaky_relu_3_nchwc``, ``ReorderOutput_token_12``); :func:`optimized_scopes`
maps those back through the tensors they read and write.
"""

from __future__ import annotations

import ast

NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"
OTHER = "other"
# Top-level module names of the registered architectures → the group they are reported as (TFLite names a
# ModuleList item by its class: BiFPNCell, Head).
GROUP_ALIASES = {"body": "backbone", "bifpn": "bifpn", "BiFPNCell": "bifpn", "ClassHead": "heads",
                 "BboxHead": "heads", "LandmarkHead": "heads", "Head": "heads"}


def node_scopes(model) -> dict[str, tuple[str, ...]]:
    """Node name → its module path (``('ssh1', 'conv3X3', '0')``; ``()`` for the model's own ops or none).

    Args:
        model: An ``onnx.ModelProto``.
    """
    scopes = {}
    for node in model.graph.node:
        scopes[node.name] = ()
        for prop in node.metadata_props:
            if prop.key == NAME_SCOPES_KEY:
                scopes[node.name] = _module_path(prop.value)
    return scopes


def _module_path(value: str) -> tuple[str, ...]:
    """``"['', 'ssh1', 'ssh1.conv3X3', 'mul_12']"`` → ``('ssh1', 'conv3X3')`` (the last entry is the op)."""
    try:
        entries = ast.literal_eval(value)  # a Python list literal of strings, never code
    except (ValueError, SyntaxError):
        return ()
    if not isinstance(entries, list) or len(entries) < 2:
        return ()
    deepest = str(entries[-2])
    return tuple(deepest.split(".")) if deepest else ()


def group_of(path: tuple[str, ...]) -> str:
    """The layer group of a module path: ``backbone``, ``bifpn``, ``ssh1``…, ``heads``, or ``other``."""
    if not path:
        return OTHER
    return GROUP_ALIASES.get(path[0], path[0])


def layer_of(path: tuple[str, ...]) -> str:
    """The layer of a module path, two levels deep (``ssh1.conv3X3``: one DCN block with its BatchNorm)."""
    return ".".join(path[:2]) if path else OTHER


def optimized_scopes(original, optimized) -> dict[str, tuple[str, ...]]:
    """Maps the nodes of ONNX Runtime's optimized graph to module paths of the exported graph.

    A node keeps the path of the exported node of the same name, else of the exported node or tensor its
    name starts with (``leaky_relu_3_nchwc`` → tensor ``leaky_relu_3``), else of the exported producer of a
    tensor it writes or reads, else of its neighbours in the optimized graph (NCHWc reorders).

    Args:
        original: The exported ``onnx.ModelProto`` (with module paths).
        optimized: The graph ONNX Runtime ran (``SessionOptions.optimized_model_filepath``).

    Returns:
        Optimized node name → module path (``()`` when nothing links it to a layer).
    """
    scopes = node_scopes(original)
    producer = {output: scopes[node.name] for node in original.graph.node for output in node.output}
    known = {**producer, **scopes}
    result: dict[str, tuple[str, ...] | None] = {}
    for node in optimized.graph.node:
        result[node.name] = _direct_path(node, known, producer)
    _spread(optimized, result)
    return {name: () if path is None else path for name, path in result.items()}


def _direct_path(node, known: dict, producer: dict) -> tuple[str, ...] | None:
    parts = node.name.split("_")
    for end in range(len(parts), 0, -1):
        prefix = "_".join(parts[:end])
        if prefix in known:
            return known[prefix]
    for tensor in list(node.output) + list(node.input):
        if tensor in producer:
            return producer[tensor]
    return None


def _spread(optimized, result: dict) -> None:
    """Gives unlinked nodes the path of the node that feeds them, else of one they feed (until stable)."""
    made_by = {output: node.name for node in optimized.graph.node for output in node.output}
    used_by: dict[str, list[str]] = {}
    for node in optimized.graph.node:
        for tensor in node.input:
            used_by.setdefault(tensor, []).append(node.name)
    changed = True
    while changed:
        changed = False
        for node in optimized.graph.node:
            if result[node.name] is not None:
                continue
            neighbours = [made_by.get(tensor) for tensor in node.input]
            neighbours += [user for tensor in node.output for user in used_by.get(tensor, [])]
            path = next((result[name] for name in neighbours if name and result.get(name) is not None), None)
            if path is not None:
                result[node.name], changed = path, True
