"""Rewrite an ONNX graph for an older opset, op by op, refusing anything it cannot prove equivalent.

TensorRT 8.5/8.6 document ONNX opsets up to 17 and 8.2 (Jetson Nano) up to 13,
while the project's exporter writes opset 18. ``onnx.version_converter`` fails
on these graphs (it leaves ``noop_with_empty_axes`` on ``ReduceMean``-13 and has
no ``BatchNormalization`` 15 → 14 adapter), so the few changes that matter are
done here: an operator whose schema differs between the two opsets is
rewritten (``ReduceMean`` axes input → attribute) or accepted only when it uses
none of the newer version's additions (attributes at their defaults, new
inputs absent); anything else is an :class:`ExportError` naming the node.
"""

from __future__ import annotations

from featherface_deploy.errors import ExportError, missing_backend

try:
    import onnx
    from onnx import defs, helper, numpy_helper
except ImportError as error:  # pragma: no cover - depends on the environment
    raise missing_backend("onnx", "export") from error

_REDUCE = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2")
# (op, newer since_version): attribute values that must hold (absent counts as the default) and the
# largest input count for the node to mean the same under the older schema.
_SAME_WHEN = {
    ("Resize", 18): ({"antialias": 0, "keep_aspect_ratio_policy": b"stretch"}, 4, ("axes",)),
    ("Pad", 18): ({}, 3, ()),
    ("Split", 18): ({}, 2, ("num_outputs",)),
    ("BatchNormalization", 15): ({"training_mode": 0}, 5, ()),
    ("BatchNormalization", 14): ({"training_mode": 0}, 5, ()),
    ("Reshape", 14): ({"allowzero": 0}, 2, ()),
}
# Versions that only widened the type constraints (bfloat16): same meaning for float32.
_TYPES_ONLY = {("LeakyRelu", 16), ("GreaterOrEqual", 16), ("LessOrEqual", 16), ("Where", 16), ("Add", 14),
               ("Sub", 14), ("Mul", 14), ("Div", 14), ("Relu", 14)}


def default_opset(model: "onnx.ModelProto") -> int:
    """The model's default-domain opset."""
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def downgrade_opset(model: "onnx.ModelProto", target: int) -> "onnx.ModelProto":
    """Returns a copy of ``model`` written in opset ``target`` (no-op when it is not newer).

    Raises:
        ExportError: A node whose meaning would change; the message names it.
    """
    current = default_opset(model)
    result = onnx.ModelProto()
    result.CopyFrom(model)
    if current <= target:
        return result
    constants = {init.name: init for init in result.graph.initializer}
    for node in result.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        newer = defs.get_schema(node.op_type, current).since_version
        if newer == defs.get_schema(node.op_type, target).since_version:
            continue
        if node.op_type in _REDUCE and newer >= 18:
            _axes_to_attribute(node, constants)
        elif (node.op_type, newer) in _TYPES_ONLY:
            continue
        elif node.op_type == "Reshape" and _shape_has_no_zero(node, constants):
            _drop_attribute(node, "allowzero")  # allowzero only changes the meaning of a 0 in the shape
        elif (node.op_type, newer) in _SAME_WHEN:
            _require_defaults(node, *_SAME_WHEN[node.op_type, newer], target)
        else:
            raise ExportError(f"cannot write node {node.name} ({node.op_type}-{newer}) in opset {target}")
    used = {name for node in result.graph.node for name in node.input}
    unused = [init for init in result.graph.initializer if init.name not in used]
    for init in unused:
        result.graph.initializer.remove(init)
    for entry in result.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = target
    onnx.checker.check_model(result)
    return result


def _axes_to_attribute(node, constants: dict) -> None:
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attributes.get("noop_with_empty_axes", 0):
        raise ExportError(f"cannot write node {node.name}: noop_with_empty_axes=1 has no older equivalent")
    axes = None
    if len(node.input) > 1 and node.input[1]:
        if node.input[1] not in constants:
            raise ExportError(f"cannot write node {node.name}: its axes are computed at run time")
        axes = [int(v) for v in numpy_helper.to_array(constants[node.input[1]]).ravel()]
    kept = [a for a in node.attribute if a.name != "noop_with_empty_axes"]
    del node.attribute[:]
    node.attribute.extend(kept)
    if axes is not None:
        node.attribute.append(helper.make_attribute("axes", axes))
    del node.input[1:]


def _shape_has_no_zero(node, constants: dict) -> bool:
    shape = constants.get(node.input[1]) if len(node.input) > 1 else None
    return shape is not None and bool(numpy_helper.to_array(shape).all())


def _drop_attribute(node, name: str) -> None:
    for attribute in [a for a in node.attribute if a.name == name]:
        node.attribute.remove(attribute)


def _require_defaults(node, defaults: dict, max_inputs: int, absent: tuple[str, ...], target: int) -> None:
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    changed = [name for name, value in defaults.items() if name in attributes and attributes[name] != value]
    changed += [name for name in absent if name in attributes]
    if changed or len([i for i in node.input if i]) > max_inputs:
        raise ExportError(f"cannot write node {node.name} ({node.op_type}) in opset {target}: it uses "
                          f"{', '.join(changed) or 'an input'} of the newer version")
    for name in defaults:
        _drop_attribute(node, name)
