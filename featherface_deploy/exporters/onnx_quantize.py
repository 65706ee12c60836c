"""FP32 ONNX → INT8 ONNX (QDQ) through ONNX Runtime static quantization.

Two placements of the QuantizeLinear / DequantizeLinear pairs (``Int8Options.placement``),
both with symmetric int8 weights per output channel:

- ``inputs`` (the default; ``engine-int8``, TensorRT recipes): Q/DQ on layer inputs only,
  symmetric int8 activations (zero point 0), TensorRT's explicit-quantization pattern. ONNX
  Runtime's CPU provider dequantizes and runs float ``Conv`` on it: smaller, not faster.
- ``fused`` (``--placement fused``): Q/DQ on the inputs *and* outputs of the quantized
  layers, uint8 asymmetric activations: the ``DQ → Conv → Q`` pattern ONNX Runtime fuses into
  ``QLinearConv`` (integer kernels). It also rounds the activations that reach the float
  depthwise convolutions, and costs V1 2.4–4.0 AP points on the WIDER subset; on
  an AVX-512 VNNI CPU it was still slower than the FP32 file (docs/design/int8-kernels.md).

What is *not* quantized matters as much on FeatherFace:

- Only ``Conv`` (and ``MatMul``/``Gemm``) are quantized by default. ONNX
  Runtime's default set also quantizes ``Add``/``Mul``/``Concat``/``Softmax``…,
  which on this graph puts Q/DQ on the deformable convolutions' sample
  coordinates (an int8 grid over 0…H has a step of ~0.4 px at 416×416) and on
  the output softmax: measured AP ≈ 20/14/7 instead of 74/63/35.
- The DCN sampling path (coordinates, ``Floor``, clamps, bilinear weights,
  the ``Gather``) is always kept float, whatever op types are asked for
  (:func:`dcn_sampling_nodes`).
- Depthwise convolutions (``group > 1``) are kept float by default
  (``keep_float_depthwise``). The sensitivity report of
  :mod:`~featherface_deploy.exporters.int8_sensitivity` puts them at the top:
  MobileNet's narrow depthwise channels get only a few int8 levels under one
  per-tensor activation scale. Measured on V1 (WIDER subset, 416×416): all
  Conv/MatMul quantized 64.4/53.2/28.5 AP; depthwise kept float (4.5% of the
  MACs) 73.9/63.1/34.2, against 73.7/62.8/34.6 in FP32.
- More layers can be kept float by name or op type (``keep_float_nodes``), or
  found by the greedy search of that module.

The quantization facts (method, nodes kept float, float fraction, calibration
hash) go into the decode contract (``precision="int8"``, ``extra["int8"]``),
in ``metadata_props`` and in the sidecar.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featherface_deploy.calibration.dataset import CalibrationSet
from featherface_deploy.contract import DecodeContract, write_sidecar
from featherface_deploy.errors import ExportError, missing_backend
from featherface_deploy.file_writing import atomic_write_bytes
from featherface_deploy.metadata.onnx import read_contract, write_contract

try:
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
except ImportError as error:  # pragma: no cover - depends on the environment
    raise missing_backend("onnxruntime", "onnx") from error

from featherface_deploy.calibration.ort_reader import OrtCalibrationReader

METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
           "entropy": CalibrationMethod.Entropy}
# The multiply-accumulate layers: quantized by default, and the layers the float MAC share counts.
MAC_OP_TYPES = ("Conv", "MatMul", "Gemm")
PLACEMENTS = ("inputs", "fused")
_GATHERS = ("Gather", "GatherND", "GatherElements")


@dataclass(frozen=True)
class Int8Options:
    """How to quantize.

    Attributes:
        method: Calibration: ``minmax``, ``percentile`` or ``entropy``.
        per_channel: Per-output-channel weight scales.
        keep_float_nodes: Node names left in float.
        keep_float_op_types: Op types left in float.
        op_types: Op types quantized (default: the MAC layers).
        keep_float_depthwise: Keep depthwise (grouped) convolutions in float.
        percentile: Percentile of the ``percentile`` method.
        num_bins: Histogram bins of ``percentile``/``entropy``. ORT's entropy default (128)
            reproduces the MinMax ranges exactly on this model; 2048 (TensorRT's choice) does not.
        batch_size: Calibration images per ORT run.
        quantize_bias: Write int32 quantized biases with their ``DequantizeLinear`` (ORT's default).
            ``False`` keeps biases float: TensorRT rejects an int32 DQ (onnx-tensorrt#850,
            onnxruntime#14229, onnxruntime#17738); see :mod:`~featherface_deploy.exporters.onnx2trt_int8`.
        reduce_range: 7-bit weights (ORT's ``reduce_range``): on x86 CPUs without VNNI (AVX2, AVX-512)
            ONNX Runtime's 8-bit convolutions pair-sum products in 16 bits, which can saturate; 7-bit
            weights cannot. Costs a bit of weight precision everywhere else.
        placement: ``inputs`` (Q/DQ on layer inputs only, int8 symmetric activations) or ``fused`` (Q/DQ on
            layer inputs and outputs, uint8 asymmetric activations: ONNX Runtime fuses integer kernels).
    """

    method: str = "minmax"
    per_channel: bool = True
    keep_float_nodes: tuple[str, ...] = ()
    keep_float_op_types: tuple[str, ...] = ()
    op_types: tuple[str, ...] = MAC_OP_TYPES
    keep_float_depthwise: bool = True
    percentile: float = 99.999
    num_bins: int = 2048
    batch_size: int = 1
    quantize_bias: bool = True
    reduce_range: bool = False
    placement: str = "inputs"

    def validate(self) -> None:
        """Raises :class:`ExportError` for an unknown method, placement or a bad number."""
        if self.method not in METHODS:
            raise ExportError(f"unknown calibration method '{self.method}'; choose one of: {', '.join(METHODS)}")
        if self.placement not in PLACEMENTS:
            raise ExportError(f"unknown Q/DQ placement '{self.placement}'; choose one of: {', '.join(PLACEMENTS)}")
        if not 0 < self.percentile <= 100 or self.num_bins < 16 or self.batch_size < 1:
            raise ExportError("percentile must be in (0, 100], num_bins ≥ 16 and batch_size ≥ 1")


@dataclass(frozen=True)
class Int8Result:
    """What :func:`quantize_onnx` wrote.

    Attributes:
        path: The INT8 model.
        sidecar: Its contract JSON.
        contract: The contract (``precision="int8"``).
        kept_float: Quantizable nodes left in float (asked for, or not quantizable by policy).
        float_fraction: Share of Conv/MatMul MACs (at the calibration size) left in float.
        facts: The ``extra["int8"]`` record.
    """

    path: Path
    sidecar: Path
    contract: DecodeContract
    kept_float: tuple[str, ...]
    float_fraction: float
    facts: dict = field(default_factory=dict)


def quantize_onnx(fp32_path: str | Path, out_path: str | Path, calib_set: CalibrationSet,
                  options: Int8Options = Int8Options(), contract: DecodeContract | None = None,
                  extra_facts: dict | None = None) -> Int8Result:
    """Quantizes an FP32 ONNX model to QDQ INT8 (symmetric int8 weights and activations).

    Args:
        fp32_path: The FP32 model (with its decode contract in metadata or sidecar).
        out_path: Where to write the INT8 model (contract embedded); its sidecar goes next to it.
        calib_set: Calibration inputs (see :func:`~featherface_deploy.calibration.build_calibration_set`).
        options: Method, layers kept float, op types quantized…
        contract: The FP32 contract, if the file carries none.
        extra_facts: More facts to record under ``extra["int8"]`` (e.g. the sensitivity search).

    Returns:
        The :class:`Int8Result`.

    Raises:
        ExportError: Bad options, unknown node names, or ONNX Runtime failed.
        ContractError: The FP32 model has no decode contract and none was given.
    """
    options.validate()
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    base_contract = contract or read_contract(fp32_path)
    with tempfile.TemporaryDirectory(prefix="featherface-int8-") as scratch:
        prepared = prepare_for_quantization(fp32_path, Path(scratch) / "prepared.onnx")
        model = onnx.load(str(prepared))
        excluded, protected = nodes_to_keep_float(model, options)
        quantized = Path(scratch) / "int8.onnx"
        _run_quantize_static(prepared, quantized, calib_set, base_contract.input_name, options, excluded)
        proto = onnx.load(str(quantized))
    fraction = onnx_float_mac_fraction(model, calib_set.inputs[:1].shape, set(excluded) | set(protected),
                                       base_contract.input_name)
    # Reported: the layers kept float by request or by the search, not the DCN sampling arithmetic.
    kept = tuple(sorted(n for n in excluded if n not in protected and _node_op(model, n) in options.op_types))
    facts = {
        "method": options.method, "per_channel": options.per_channel,
        "weights": "7-bit symmetric (reduce_range)" if options.reduce_range else "int8 symmetric",
        "activations": _ACTIVATIONS[options.placement], "format": "QDQ", "placement": options.placement,
        "quantized_op_types": list(options.op_types),
        "keep_float_nodes": list(kept), "keep_float_op_types": list(options.keep_float_op_types),
        "dcn_sampling_nodes_float": len(protected), "float_mac_fraction": round(fraction, 4),
        "quantize_bias": options.quantize_bias, "calibration": calib_set.describe(), **(extra_facts or {}),
    }
    result_contract = base_contract.replace(
        precision="int8", source_format="onnx",
        versions={**base_contract.versions, "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__},
        extra={**base_contract.extra, "int8": facts})
    return _write(proto, out_path, result_contract, kept, fraction, facts)


def with_facts(result: Int8Result, out_path: str | Path, facts: dict) -> Int8Result:
    """Writes ``result``'s model to ``out_path`` with ``facts`` added to its ``extra["int8"]`` record.

    What a search does with its last trial instead of quantizing it once more.
    """
    merged = {**result.facts, **facts}
    contract = result.contract.replace(extra={**result.contract.extra, "int8": merged})
    proto = onnx.load(str(result.path))
    return _write(proto, Path(out_path), contract, result.kept_float, result.float_fraction, merged)


def _write(proto: "onnx.ModelProto", out_path: Path, contract: DecodeContract, kept: tuple[str, ...],
           fraction: float, facts: dict) -> Int8Result:
    write_contract(proto, contract)
    atomic_write_bytes(out_path, proto.SerializeToString())
    sidecar = write_sidecar(contract, out_path)
    return Int8Result(out_path, sidecar, contract, kept, fraction, facts)


def prepare_for_quantization(fp32_path: Path, out_path: Path) -> Path:
    """ORT's pre-processing (shape inference + basic graph optimisation) into one self-contained file.

    ``skip_symbolic_shape=True``: the symbolic shape inference fails on dynamo-exported graphs.
    """
    try:
        quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=True)
    except Exception as error:  # ORT raises bare Exceptions of many kinds here
        raise ExportError(f"ONNX Runtime could not pre-process {fp32_path} for quantization: {error}") from error
    return out_path


def dcn_sampling_nodes(model: "onnx.ModelProto") -> set[str]:
    """Names of the nodes of the deformable convolutions' sampling arithmetic.

    Forward from every ``Floor`` (the sample coordinates) up to and including
    the node that weights the gathered values, plus everything those nodes
    depend on back to the nearest ``Conv`` (offsets, masks, the tap projection)
    or a ``Shape``. None of it may be quantized: an int8 coordinate grid
    destroys sub-pixel sampling.
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    gathered = {node.output[0] for node in model.graph.node if node.op_type in _GATHERS}
    forward, stack = set(), [n for n in model.graph.node if n.op_type == "Floor"]
    while stack:
        node = stack.pop()
        if node.name in forward:
            continue
        forward.add(node.name)
        if any(_depends_on(producers, name, gathered) for name in node.input):
            continue  # the final weighting of gathered values: stop here
        stack.extend(c for out in node.output for c in consumers.get(out, ()))
    selected, stack = set(forward), [n for n in model.graph.node if n.name in forward]
    while stack:
        node = stack.pop()
        if node.op_type == "Shape":
            continue
        for name in node.input:
            parent = producers.get(name)
            if parent is not None and parent.op_type not in MAC_OP_TYPES and parent.name not in selected:
                selected.add(parent.name)
                stack.append(parent)
    return selected


def _depends_on(producers: dict, name: str, targets: set[str], depth: int = 4) -> bool:
    """Whether tensor ``name`` is one of ``targets`` or derives from one through ≤ ``depth`` reshapes."""
    for _ in range(depth):
        if name in targets:
            return True
        node = producers.get(name)
        if node is None or node.op_type not in ("Reshape", "Transpose", "Unsqueeze", "Squeeze", "Identity"):
            return False
        name = node.input[0]
    return name in targets


def nodes_to_keep_float(model: "onnx.ModelProto", options: Int8Options) -> tuple[list[str], set[str]]:
    """Returns (nodes excluded from quantization, of which the DCN sampling nodes).

    Raises:
        ExportError: A ``keep_float_nodes`` entry names neither a node nor an op type of the model.
    """
    names = {node.name for node in model.graph.node}
    op_types = {node.op_type for node in model.graph.node}
    float_types = set(options.keep_float_op_types)
    float_names = set()
    for entry in options.keep_float_nodes:
        if entry in names:
            float_names.add(entry)
        elif entry in op_types:
            float_types.add(entry)
        else:
            raise ExportError(f"--keep-float '{entry}' is neither a node name nor an op type of this model "
                              f"(op types: {', '.join(sorted(op_types))})")
    if options.keep_float_depthwise:
        float_names |= depthwise_conv_nodes(model)
    protected = dcn_sampling_nodes(model)
    excluded = float_names | protected | {n.name for n in model.graph.node if n.op_type in float_types}
    return sorted(excluded), protected


def depthwise_conv_nodes(model: "onnx.ModelProto") -> set[str]:
    """Names of the grouped (depthwise) ``Conv`` nodes."""
    return {node.name for node in model.graph.node if node.op_type == "Conv"
            and any(attribute.name == "group" and attribute.i > 1 for attribute in node.attribute)}


_ACTIVATIONS = {"fused": "uint8 asymmetric", "inputs": "int8 symmetric"}


def _run_quantize_static(prepared: Path, out: Path, calib_set: CalibrationSet, input_name: str,
                         options: Int8Options, excluded: list[str]) -> None:
    inputs_only = options.placement == "inputs"
    extra = {
        "ActivationSymmetric": inputs_only, "WeightSymmetric": True,
        "ForceQuantizeNoInputCheck": False,
        "CalibPercentile": options.percentile, "CalibNumBins": options.num_bins,
        "QuantizeBias": options.quantize_bias,
    }
    if inputs_only:
        # Q/DQ only on the *inputs* of quantized layers (TensorRT's explicit-quantization pattern): ORT would
        # otherwise also round every Conv output, i.e. the DCN offsets/masks and the head outputs.
        extra["OpTypesToExcludeOutputQuantization"] = list(MAC_OP_TYPES)
    reader = OrtCalibrationReader(calib_set, input_name, options.batch_size)
    op_types = [t for t in options.op_types if t not in options.keep_float_op_types]
    try:
        quantize_static(str(prepared), str(out), reader, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=op_types, per_channel=options.per_channel,
                        activation_type=QuantType.QInt8 if inputs_only else QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                        nodes_to_exclude=excluded, calibrate_method=METHODS[options.method],
                        reduce_range=options.reduce_range, extra_options=extra)
    except Exception as error:  # ORT raises bare Exceptions/RuntimeErrors of many kinds here
        raise ExportError(f"ONNX Runtime static quantization failed: {error}") from error


def onnx_float_mac_fraction(model: "onnx.ModelProto", input_shape: tuple[int, ...], float_nodes: set[str],
                            input_name: str = "input") -> float:
    """Share of the MACs of an ONNX graph's Conv/MatMul/Gemm nodes, for one input of ``input_shape``, that
    ``float_nodes`` compute (the layers a quantization left float)."""
    macs = layer_macs(model, input_shape, input_name)
    total = sum(macs.values())
    return sum(v for k, v in macs.items() if k in float_nodes) / total if total else 0.0


def layer_macs(model: "onnx.ModelProto", input_shape: tuple[int, ...], input_name: str = "input") -> dict[str, int]:
    """MACs per Conv/MatMul/Gemm node with a constant weight, for one input of ``input_shape``.

    MACs: weight elements × output positions (spatial size for convolutions, rows for matrix products). The
    output shapes come from ONNX Runtime's symbolic shape inference with the input fixed to that shape: the
    graph is read, not run (``onnx.shape_inference`` leaves the deformable sampling path of a dynamic-shape
    export unresolved; on V1 both give the MACs an ONNX Runtime run measures).

    Raises:
        ExportError: A layer's output shape stays unknown.
    """
    initializers = {init.name: init for init in model.graph.initializer}
    layers = [n for n in model.graph.node if n.op_type in MAC_OP_TYPES and n.input[1] in initializers]
    shapes = _inferred_shapes(model, input_shape, input_name)
    result = {}
    for node in layers:
        out_shape = shapes.get(node.output[0])
        if out_shape is None or None in out_shape:
            raise ExportError(f"shape inference left the output of {node.name} unknown ({out_shape}): the float "
                              "MAC share cannot be counted; export the ONNX source with a fixed --imgsz")
        weight = int(np.prod(initializers[node.input[1]].dims))
        spatial = int(np.prod(out_shape[2:])) if node.op_type == "Conv" else int(np.prod(out_shape[:-1]))
        result[node.name] = weight * spatial
    return result


def _inferred_shapes(model: "onnx.ModelProto", input_shape: tuple[int, ...], input_name: str,
                     ) -> dict[str, list[int | None]]:
    """Tensor name → shape (``None`` for an unknown dimension), batch 1, the input fixed to ``input_shape``."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    fixed.graph.ClearField("value_info")  # shapes recorded for another size would contradict the new ones
    for value in fixed.graph.output:
        value.type.tensor_type.ClearField("shape")
    for value in fixed.graph.input:
        if value.name == input_name:
            value.type.tensor_type.shape.ClearField("dim")
            for size in (1, *input_shape[1:]):
                value.type.tensor_type.shape.dim.add().dim_value = size
    try:
        inferred = SymbolicShapeInference.infer_shapes(fixed, auto_merge=True)
    except Exception as error:  # the shape inference raises bare Exceptions of many kinds
        raise ExportError(f"ONNX Runtime's shape inference failed on the graph to quantize: {error}") from error
    return {value.name: [dim.dim_value if dim.HasField("dim_value") else None
                         for dim in value.type.tensor_type.shape.dim]
            for value in (*inferred.graph.value_info, *inferred.graph.output)}


def _node_op(model: "onnx.ModelProto", name: str) -> str | None:
    for node in model.graph.node:
        if node.name == name:
            return node.op_type
    return None
