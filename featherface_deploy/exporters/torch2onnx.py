"""PyTorch → ONNX: the dynamo exporter, two DCN lowerings, simplification, contract.

:func:`export` builds the graph with ``torch.onnx.export(..., dynamo=True)``,
checks it (ONNX checker + strict shape inference), optionally simplifies it,
embeds the decode contract in ``metadata_props`` and writes the file
(atomically). The export pipeline then runs it with ONNX Runtime against the
PyTorch model before moving it into place with its sidecar JSON.

DCN lowerings (``dcn=``; ``auto``, the default, takes the one measured fastest
in ONNX Runtime, see :mod:`~featherface_deploy.exporters.dcn_choice`):

- ``gather`` (alias ``portable``) and ``gather_float``: the model's own
  plain-op DCNv2 (Conv, Gather, arithmetic), graphs every converter can take.
- ``native``: one ONNX ``DeformConv`` (opset ≥ 19) per layer, through the
  ``featherface::deform_conv3x3`` custom op and an onnxscript translation.
"""

from __future__ import annotations

import copy
import functools
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

import featherface_deploy
from featherface_deploy.contract import OUTPUT_ROLES, DecodeContract, End2EndSpec
from featherface_deploy.errors import ExportError, first_line
from featherface_deploy.exporters.common import ExportContext, ExportResult, require, timed
from featherface_deploy.exporters.end2end_head import end2end_model
from featherface_deploy.exporters.nms_onnx import nms_translation
from featherface_deploy.export_options import SIZE_DIVISOR, OnnxOptions
from featherface_deploy.file_writing import atomic_write_bytes
from featherface_deploy.metadata.onnx import write_contract
from featherface_deploy.models.deform_conv import ModulatedDeformConv2d, modulated_deform_conv3x3, set_dcn_lowering
from featherface_deploy.models.registry import base_contract

if TYPE_CHECKING:
    from featherface_deploy.formats import Format

INPUT_NAME = "input"
MAX_DYNAMIC_SIDE = 4096
NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"  # node metadata: the torch module path, e.g. ['', 'ssh1', …]



def export(model: nn.Module, out_path: Path, row: Format, options: OnnxOptions,
           context: ExportContext) -> ExportResult:
    """Writes a FeatherFace (or RetinaFace) model as ONNX with its decode contract in ``metadata_props``.

    Args:
        model: The PyTorch model (eval mode).
        out_path: The ``.onnx`` file to write.
        row: The ``onnx`` row.
        options: Validated :class:`OnnxOptions`.
        context: Model name and log.

    Returns:
        The :class:`ExportResult` (facts: ``node_counts``).

    Raises:
        ExportError: A failed export or graph check.
        BackendNotInstalledError: onnx, onnxscript or the simplifier is missing.
    """
    require("onnx", "export")
    require("onnxscript", "export")
    log, timings = context.log, {}
    log(f"  exporting {context.model_name} ({options.dcn_choice()[0]} DCN, opset {options.resolved_opset}, "
        f"{'dynamic' if options.dynamic else 'static'} {options.size[0]}x{options.size[1]})")
    proto = timed(timings, "export", lambda: build_onnx(model, options, context.model_name))
    log(f"  torch.onnx.export (dynamo): {timings['export']:.1f} s, {len(proto.graph.node)} nodes")
    node_counts = {"exported": len(proto.graph.node)}
    timed(timings, "check", lambda: check_onnx(proto))
    if options.simplify:
        exported = proto
        proto = timed(timings, "simplify", lambda: simplify_onnx(proto, options.simplifier))
        keep_name_scopes(exported, proto)
        node_counts["simplified"] = len(proto.graph.node)
        check_onnx(proto)
        log(f"  {options.simplifier}: {node_counts['exported']} → {node_counts['simplified']} nodes "
            f"({timings['simplify']:.1f} s)")
    contract = context.stamp(build_contract(context.model_name, options, proto))
    if options.end2end:
        drop_raw_outputs(proto, contract.end2end)
        check_onnx(proto)
    write_contract(proto, contract)
    data = proto.SerializeToString()
    atomic_write_bytes(out_path, data)
    log(f"  {out_path.name}: {len(data) / 1e6:.2f} MB")
    return ExportResult(Path(out_path), contract, timings, {"node_counts": node_counts})


def build_onnx(model: nn.Module, config: OnnxOptions, model_name: str | None = None):
    """Runs the dynamo exporter and returns the ``onnx.ModelProto`` (input ``input``, outputs loc/conf/landmarks).

    With ``config.end2end`` the graph is the verification build of the end-to-end model: outputs
    ``detections``, ``num_detections``, then ``loc``, ``conf``, ``landmarks`` (:func:`drop_raw_outputs`
    removes the last three from the file written); ``model_name`` gives its priors and mean.
    """
    lowering, _ = config.dcn_choice()
    model = with_native_dcn(model) if lowering == "native" else with_portable_dcn(model, lowering)
    output_names = list(OUTPUT_ROLES)
    translations = _native_translations() if lowering == "native" else {}
    spec = config.end2end_spec()
    if spec is not None:
        model = end2end_model(model, base_contract(model_name or "featherface-v1", input_size=config.size), spec,
                              "NCHW", raw_outputs=True)
        output_names = [*spec.outputs, *OUTPUT_ROLES]
        translations.update(nms_translation())
    height, width = config.size
    # Batch 2 in the example: torch.export specialises dimensions that are 1 in the example.
    example = torch.zeros(2 if config.dynamic else 1, 3, height, width)
    dynamic_shapes = None
    if config.dynamic:
        rows = torch.export.Dim("rows", min=1, max=MAX_DYNAMIC_SIDE // SIZE_DIVISOR)
        cols = torch.export.Dim("cols", min=1, max=MAX_DYNAMIC_SIDE // SIZE_DIVISOR)
        dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=1024),
                           2: SIZE_DIVISOR * rows, 3: SIZE_DIVISOR * cols},)
    try:
        program = torch.onnx.export(
            model.eval(), (example,), dynamo=True, opset_version=config.resolved_opset, input_names=[INPUT_NAME],
            output_names=output_names, dynamic_shapes=dynamic_shapes, custom_translation_table=translations or None,
            optimize=True, verbose=False,
        )
    except Exception as error:  # the exporter raises many unrelated types; keep the cause chained
        raise ExportError(f"torch.onnx.export failed for {config}: {first_line(error)}") from error
    proto = program.model_proto
    actual = _default_opset(proto)
    if actual != config.resolved_opset:
        raise ExportError(f"asked for opset {config.resolved_opset} but the exporter produced opset {actual}")
    return proto


def check_onnx(proto) -> None:
    """ONNX checker (full) and strict shape inference.

    Raises:
        ExportError: The graph is invalid.
    """
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
        onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ExportError(f"the exported ONNX graph is invalid: {error}") from error


def simplify_onnx(proto, simplifier: str = "onnxsim"):
    """Simplifies the graph with onnxslim or onnxsim (both keep the zero-pad max-pool intact).

    Raises:
        BackendNotInstalledError: The simplifier is not installed.
        ExportError: The simplifier failed or could not verify its result.
    """
    if simplifier == "onnxsim":
        onnxsim = require("onnxsim", "export")
        simplified, ok = onnxsim.simplify(proto)
        if not ok:
            raise ExportError("onnxsim could not verify the simplified model; export with simplify=False")
        return simplified
    onnxslim = require("onnxslim", "export")
    return onnxslim.slim(proto)


def keep_name_scopes(exported, simplified) -> None:
    """Copies each node's torch module path (``pkg.torch.onnx.name_scopes``) onto the simplified graph.

    The simplifiers drop node metadata but keep node names; the module path is what
    ``featherface-deploy profile`` groups a graph's time and MACs by (backbone, BiFPN, each SSH/DCN block,
    heads). Nodes the simplifier created have no path and count as "other".
    """
    scopes = {node.name: prop.value for node in exported.graph.node for prop in node.metadata_props
              if prop.key == NAME_SCOPES_KEY}
    for node in simplified.graph.node:
        if node.name in scopes and not any(prop.key == NAME_SCOPES_KEY for prop in node.metadata_props):
            node.metadata_props.add(key=NAME_SCOPES_KEY, value=scopes[node.name])


def build_contract(model_name: str, config: OnnxOptions, proto) -> DecodeContract:
    """The decode contract of an exported graph (the registry's defaults plus what the file fixes)."""
    import onnx
    import onnxscript

    lowering, selected = config.dcn_choice()
    spec = config.end2end_spec()
    return base_contract(
        model_name,
        input_name=INPUT_NAME,
        input_size=None if config.dynamic else config.size,
        size_divisor=SIZE_DIVISOR,
        precision="fp32",
        source_format="onnx",
        versions={"torch": torch.__version__, "onnx": onnx.__version__, "onnxscript": onnxscript.__version__,
                  "onnxruntime": _installed_version("onnxruntime"),  # what the export is verified with
                  "featherface_deploy": featherface_deploy.__version__},
        extra={"opset": _default_opset(proto), "dcn": lowering, "dcn_selected": selected, "dynamic": config.dynamic,
               "simplifier": config.simplifier if config.simplify else None,
               "zero_pad_maxpool": "concat"},
        postprocess="in-graph" if spec else "numpy",
        end2end=spec,
    )


def drop_raw_outputs(proto, spec: End2EndSpec) -> None:
    """Removes the raw ``loc``/``conf``/``landmarks`` outputs of a verification build, keeping the tensors.

    The file then has only ``detections`` and ``num_detections``; the raw tensors keep their names
    (``spec.raw_tensors``) inside the graph, so verification can expose them again on the same graph.
    """
    kept = [output for output in proto.graph.output if output.name in spec.outputs]
    del proto.graph.output[:]
    proto.graph.output.extend(kept)


# --- native DeformConv lowering ------------------------------------------------------------------


@functools.cache
def _deform_conv_op():
    """Registers ``featherface::deform_conv3x3`` once: eager = the portable code, fake = output shape."""

    @torch.library.custom_op("featherface::deform_conv3x3", mutates_args=())
    def deform_conv3x3(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor,
                       weight: torch.Tensor) -> torch.Tensor:
        return modulated_deform_conv3x3(x, offset, mask, weight)

    @deform_conv3x3.register_fake
    def _(x, offset, mask, weight):
        return x.new_empty((x.shape[0], weight.shape[0], x.shape[2], x.shape[3]))

    return deform_conv3x3


def _native_translations() -> dict:
    from onnxscript import opset19 as op

    def deform_conv3x3(x, offset, mask, weight):
        return op.DeformConv(x, weight, offset, None, mask, kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                             strides=[1, 1], dilations=[1, 1], group=1, offset_group=1)

    _deform_conv_op()
    return {torch.ops.featherface.deform_conv3x3.default: deform_conv3x3}


class _NativeDeformConv(nn.Module):
    """Same parameters as :class:`ModulatedDeformConv2d`, computed through the custom op."""

    def __init__(self, source: ModulatedDeformConv2d) -> None:
        super().__init__()
        self.offset_conv, self.modulator_conv, self.regular_conv = (
            source.offset_conv, source.modulator_conv, source.regular_conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = 2.0 * torch.sigmoid(self.modulator_conv(x))
        return _deform_conv_op()(x, self.offset_conv(x), mask, self.regular_conv.weight)


def with_portable_dcn(model: nn.Module, lowering: str = "gather") -> nn.Module:
    """Returns a copy of ``model`` whose DCN layers use a plain-op lowering (``gather`` or ``gather_float``).

    The eager default (``grid_sample``) exports to ``GridSample``, slow in ONNX
    Runtime and absent from TFLite.
    """
    model = copy.deepcopy(model)
    set_dcn_lowering(model, lowering)
    return model


def with_native_dcn(model: nn.Module) -> nn.Module:
    """Returns a copy of ``model`` whose DCN layers call the ``DeformConv``-exportable custom op."""
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, ModulatedDeformConv2d):
                setattr(module, child_name, _NativeDeformConv(child))
    return model


def _installed_version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _default_opset(proto) -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


__all__ = [
    "build_onnx",
    "check_onnx",
    "export",
    "simplify_onnx",
    "with_native_dcn",
    "with_portable_dcn",
]
