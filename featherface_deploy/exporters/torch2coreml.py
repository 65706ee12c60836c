"""PyTorch → Core ML (ML Program ``.mlpackage``): FP32, FP16 and 8-bit weights, with the decode contract.

coremltools ≥ 6 has no ONNX route, so the model is traced with ``torch.jit.trace``
(the DCNs in their ``gather`` lowering, the BiFPN in its ``stride2`` form, which
reads no input size and so converts with flexible shapes) and converted with
``ct.convert``. The three rows share one trace per model and size
(``context.scratch``). Outputs are named from the contract (``loc``, ``conf``,
``landmarks``); without explicit names Core ML calls them ``var_…``.

- ``coreml`` (FP32): FP32 compute and I/O.
- ``coreml-fp16``: FP16 compute; I/O stays FP32 unless ``io_dtype="fp16"``. The
  DCN's sample-coordinate arithmetic stays FP32 (:func:`keeps_fp32`): at 640 the
  coordinates reach 80 on the stride-8 level, where FP16 resolves only 1/16 pixel.
- ``coreml-int8w``: 8-bit per-channel symmetric weights
  (``linear_quantize_weights``), FP32 compute. Activation quantization (W8A8)
  is refused: coremltools calibrates activations only with Core ML predictions
  (macOS), and ``coremltools.optimize.torch``'s quantizer cannot trace the BiFPN.

The contract is stored as JSON in the model's ``user_defined_metadata``
(:mod:`featherface_deploy.metadata.coreml`; the sidecar is written by the pipeline). The pipeline checks the written package with
:class:`~featherface_deploy.runtimes.coreml_runtime.CoremlRuntime` (on Linux:
the reference interpreter) before moving it into place.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

import featherface_deploy
from featherface_deploy.contract import OUTPUT_ROLES, End2EndSpec
from featherface_deploy.errors import ExportError, first_line
from featherface_deploy.export_options import SIZE_DIVISOR, CoremlOptions, flexible_range, resolve_target
from featherface_deploy.exporters import coreml_torch_ops, nms_coreml
from featherface_deploy.exporters.common import ExportContext, ExportResult, require, size_pair, timed
from featherface_deploy.exporters.end2end_head import end2end_model
from featherface_deploy.models.bifpn import set_bifpn_resampling
from featherface_deploy.models.deform_conv import set_dcn_lowering
from featherface_deploy.metadata.coreml import write_contract
from featherface_deploy.models.registry import architecture_defaults, base_contract

if TYPE_CHECKING:
    from featherface_deploy.formats import Format

INPUT_NAME = "input"
END2END_TAIL_TYPE = "End2EndTail"  # the torch module type of the end-to-end head's decoding and NMS


def export(model: nn.Module, out_path: Path, row: Format, options: CoremlOptions,
           context: ExportContext) -> ExportResult:
    """Writes a FeatherFace model as a Core ML ML Program at the row's precision, contract in the metadata.

    Args:
        model: The PyTorch model (eval mode).
        out_path: The ``.mlpackage`` folder to write.
        row: ``coreml``, ``coreml-fp16`` or ``coreml-int8w``.
        options: Validated :class:`CoremlOptions`.
        context: Model name, log, and the scratch where the three rows share one trace.

    Returns:
        The :class:`ExportResult` (facts: ``op_counts``, ``target``, ``size_bytes``).

    Raises:
        ExportError: A failed trace, conversion or quantization.
        BackendNotInstalledError: coremltools is missing.
    """
    ct = require("coremltools", "coreml")
    target = resolve_target(options.target)
    timings: dict[str, float] = {}
    imgsz = size_pair(options.imgsz)
    example = options.sizes[0] if options.sizes else imgsz
    spec = options.end2end_spec()
    traced, timings["trace"] = _traced(model, example, context, spec)
    context.log(f"  coremltools {ct.__version__}: converting to an ML Program ({row.precision}, {target.name}"
                f"{', end-to-end' if spec else ''})")
    mlmodel = timed(timings, "convert", lambda: _convert(
        ct, traced, row, options, target, imgsz, architecture_defaults(context.model_name).mean_bgr))
    extra = {"target": target.name, "dcn": "gather", "bifpn": "stride2", "image_input": options.image_input,
             "io_dtype": options.io_dtype, "flexible": options.flexible,
             "sizes": [list(s) for s in options.sizes]}
    if row.precision == "fp16":
        extra["fp16"] = "FP16 compute; DCN sample coordinates kept FP32"
    if row.precision == "int8":
        mlmodel = timed(timings, "quantize", lambda: quantize_weights(ct, mlmodel))
        extra["int8"] = "8-bit weights (linear_symmetric, per channel), float compute"
    if spec is not None and row.precision != "fp32":
            extra["end2end_head"] = "FP32 compute and float weights (decoding, NMS, gather)"
    fixed = options.flexible is None and not options.sizes
    contract = context.stamp(base_contract(
        context.model_name, input_name=INPUT_NAME,
        input_size=imgsz if fixed else None, size_divisor=SIZE_DIVISOR,
        precision=row.precision, source_format="coreml",
        versions={"torch": torch.__version__, "coremltools": ct.__version__,
                  "featherface_deploy": featherface_deploy.__version__},
        extra=extra, postprocess="in-graph" if spec else "numpy", end2end=spec,
    ))
    write_contract(mlmodel, contract)
    mlmodel.short_description = f"{context.model_name} face detector (featherface-deploy, {row.precision})"
    timed(timings, "save", lambda: mlmodel.save(str(out_path)))
    if spec is not None:
        drop_raw_outputs(Path(out_path), spec)
    facts = {"op_counts": program_op_counts(mlmodel), "target": target.name}
    context.log(f"  trace {timings['trace']:.1f} s, convert {timings['convert']:.1f} s"
                + (f", quantize {timings['quantize']:.1f} s" if "quantize" in timings else ""))
    return ExportResult(Path(out_path), contract, timings, facts, parity_sizes(options))


def parity_sizes(options: CoremlOptions) -> tuple[tuple[int, int], ...]:
    """The boxes the parity photos are fitted into: every enumerated size, or ``imgsz`` clamped into the
    flexible range; none for a fixed size (the contract's own)."""
    if options.sizes:
        return tuple(tuple(size) for size in options.sizes)
    if options.flexible is not None:
        low, high = flexible_range(options.flexible)
        return (tuple(min(max(side, low), high) for side in size_pair(options.imgsz)),)
    return ()


def keeps_fp32(op) -> bool:
    """Whether an op of the traced model belongs to the DCN's sample-coordinate arithmetic.

    Those are the ops downstream of a ``floor`` (the integer part of a sample
    position) up to, not including, the ``gather`` of the table and the
    ``matmul`` with the bilinear weights, plus the ``add`` that forms the
    sample position (undeformed grid + offset) feeding the ``floor``.
    """
    if op.op_type == "floor":
        return True
    if op.op_type == "add" and any(child.op_type == "floor" for out in op.outputs for child in out.child_ops):
        return True
    return _downstream_of_floor(op)


def _downstream_of_floor(op, depth: int = 0) -> bool:
    if op is None or op.op_type in ("gather", "matmul", "const") or depth > 12:
        return False
    for var in op.inputs.values():
        for item in var if isinstance(var, (list, tuple)) else (var,):
            producer = item.op
            if producer is not None and (producer.op_type == "floor" or _downstream_of_floor(producer, depth + 1)):
                return True
    return False


def in_end2end_head(op) -> bool:
    """Whether an op of the converted program belongs to the end-to-end head (torch module ``End2EndTail``)."""
    from coremltools.converters.mil.mil.scope import ScopeSource

    return END2END_TAIL_TYPE in (op.scopes.get(ScopeSource.TORCHSCRIPT_MODULE_TYPE) or ())


def drop_raw_outputs(package: Path, spec: End2EndSpec) -> None:
    """Removes the verification build's raw ``loc``/``conf``/``landmarks`` outputs from a saved package.

    Their values keep their names inside the program (``spec.raw_tensors``), where the reference
    interpreter can read them again for verification.
    """
    from coremltools.proto import Model_pb2

    model_file = package / "Data" / "com.apple.CoreML" / "model.mlmodel"
    proto = Model_pb2.Model()
    proto.ParseFromString(model_file.read_bytes())
    kept = [output for output in proto.description.output if output.name in spec.outputs]
    del proto.description.output[:]
    proto.description.output.extend(kept)
    function = proto.mlProgram.functions["main"]
    block = function.block_specializations[function.opset]
    names = [name for name in block.outputs if name in spec.outputs]
    del block.outputs[:]
    block.outputs.extend(names)
    model_file.write_bytes(proto.SerializeToString())


def quantize_weights(ct, mlmodel):
    """8-bit symmetric per-channel weights (``linear_quantize_weights``; FP32 compute stays); the constants of
    an end-to-end head (priors, rank scores) stay float."""
    head_constants = {op.name: None for op in mlmodel._mil_program.functions["main"].operations
                      if op.op_type == "const" and any(in_end2end_head(child) for child in op.outputs[0].child_ops)}
    config = ct.optimize.coreml.OptimizationConfig(global_config=ct.optimize.coreml.OpLinearQuantizerConfig(
        mode="linear_symmetric", dtype="int8", granularity="per_channel"), op_name_configs=head_constants)
    with np.errstate(invalid="ignore"):  # an all-zero channel has scale 0: its 0/0 casts to 0
        return ct.optimize.coreml.linear_quantize_weights(mlmodel, config)


def program_op_counts(mlmodel) -> dict[str, int]:
    """MIL op types and their counts in the model's ``main`` function (``const`` excluded)."""
    spec = mlmodel.get_spec()
    function = spec.mlProgram.functions["main"]
    counts: dict[str, int] = {}
    for op in function.block_specializations[function.opset].operations:
        if op.type != "const":
            counts[op.type] = counts.get(op.type, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def _traced(model: nn.Module, size: tuple[int, int], context: ExportContext, spec: End2EndSpec | None = None):
    """``torch.jit.trace`` of the export form of ``model`` at ``size``, shared by the Core ML rows of one run.

    With ``spec``: the end-to-end verification build (raw outputs after ``detections`` and
    ``num_detections``), with the converters it needs registered.

    Returns:
        The traced module and the seconds spent tracing now (0 when the scratch already held it).
    """
    key = ("torch2coreml.trace", id(model), size, spec)
    if key in context.scratch:
        return context.scratch[key], 0.0
    started = time.perf_counter()
    export_model = copy.deepcopy(model).eval()
    set_dcn_lowering(export_model, "gather")
    set_bifpn_resampling(export_model, "stride2")
    if spec is not None:
        nms_coreml.register()
        coreml_torch_ops.register()
        export_model = end2end_model(export_model, base_contract(context.model_name, input_size=size), spec,
                                     "NCHW", raw_outputs=True)
    example = torch.zeros(1, 3, *size)
    try:
        with torch.no_grad():
            traced = torch.jit.trace(export_model, example, check_trace=False)
    except RuntimeError as error:
        raise ExportError(f"torch.jit.trace failed: {first_line(error)}") from error
    context.scratch[key] = traced
    return traced, time.perf_counter() - started


def _convert(ct, traced, row: Format, options: CoremlOptions, target, imgsz: tuple[int, int], mean_bgr):
    shape = _input_shape(ct, options, imgsz)
    if options.image_input:
        inputs = [ct.ImageType(name=INPUT_NAME, shape=shape, scale=1.0, bias=[-m for m in mean_bgr],
                               color_layout=ct.colorlayout.BGR)]
    else:
        io = np.float16 if options.io_dtype == "fp16" else np.float32
        inputs = [ct.TensorType(name=INPUT_NAME, shape=shape, dtype=io)]
    out_dtype = np.float16 if options.io_dtype == "fp16" else np.float32
    outputs = [ct.TensorType(name=name, dtype=out_dtype) for name in OUTPUT_ROLES]
    spec = options.end2end_spec()
    if spec is not None:
        outputs = [ct.TensorType(name=spec.outputs[0], dtype=np.float32), ct.TensorType(name=spec.outputs[1]),
                   *outputs]
    precision = (ct.transform.FP16ComputePrecision(op_selector=lambda op: not keeps_fp32(op)
                                                   and not in_end2end_head(op))
                 if row.precision == "fp16" else ct.precision.FLOAT32)
    try:
        return ct.convert(traced, inputs=inputs, outputs=outputs, convert_to="mlprogram",
                          minimum_deployment_target=target, compute_precision=precision)
    except (RuntimeError, ValueError, NotImplementedError, TypeError) as error:
        raise ExportError(f"coremltools could not convert the model: {first_line(error)}") from error


def _input_shape(ct, options: CoremlOptions, imgsz: tuple[int, int]):
    if options.sizes:
        return ct.EnumeratedShapes(shapes=[(1, 3, h, w) for h, w in options.sizes],
                                   default=(1, 3, *options.sizes[0]))
    if options.flexible is not None:
        low, high = flexible_range(options.flexible)
        side = ct.RangeDim(lower_bound=low, upper_bound=high, default=min(max(imgsz[0], low), high))
        return ct.Shape(shape=(1, 3, side, ct.RangeDim(lower_bound=low, upper_bound=high,
                                                       default=min(max(imgsz[1], low), high))))
    return (1, 3, *imgsz)


__all__ = ["export", "keeps_fp32", "program_op_counts",
           "quantize_weights", "resolve_target"]
