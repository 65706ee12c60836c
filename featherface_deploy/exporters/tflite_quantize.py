"""ai-edge-quantizer on a converted FP32 flatbuffer: FP16 weights, or calibrated INT8 with float scopes.

What :mod:`~featherface_deploy.exporters.torch2tflite` exports and the keep-float search of
:mod:`~featherface_deploy.exporters.tflite_int8_search` tries, each with more scopes kept float.
``LEAKY_RELU`` is first rewritten to ``MAXIMUM(x, MUL(x, 0.1))`` (exact; quantizable, see
:mod:`~featherface_deploy.exporters.tflite_graph`), and the int8 pairs are fused back into int8
``LEAKY_RELU`` after quantization (XNNPACK runs it; it has no int8 ``MAXIMUM``). The DCN sampling's row
lookups then read the int8 projection table and dequantize the rows they gather (exact; a quarter of the
bytes for the one op of the sampling that runs outside XNNPACK). The DCN sampling path is always float,
its convolutions int8; an end-to-end head's decoding and NMS stay float in every precision.
"""

from __future__ import annotations

from featherface_deploy.calibration import CalibrationSet
from featherface_deploy.errors import missing_backend
from featherface_deploy.export_options import TfliteOptions
from featherface_deploy.exporters.common import timed
from featherface_deploy.exporters.tflite_graph import (fuse_int8_leaky_relu, look_up_int8_rows, op_census,
                                                       rewrite_leaky_relu)

INPUT_NAME = "input"  # the converted model's one input, in its one signature
SIGNATURE = "serving_default"
DCN_SAMPLING_SCOPE = "ModulatedDeformConv2d"  # tensor names carry the torch module path
# The DCN's layers with constant weights, int8 inside the otherwise float sampling scope.
DCN_INT8_OPS = ("CONV_2D", "FULLY_CONNECTED")
END2END_TAIL_SCOPE = r"End2EndTail"  # the end-to-end head's decoding and NMS: float in FP16


def quantize_fp16(fp32: bytes, end2end: bool = False) -> bytes:
    """FP16 weights (``FLOAT_CASTING``): half the size, float32 compute; an end-to-end head's constants
    (priors, rank scores) stay float32."""
    quantizer, _, qtyping, algorithms = _quantizer()
    qt = quantizer.Quantizer(bytearray(fp32))
    qt.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                              algorithm_key=algorithms.FLOAT_CASTING)
    if end2end:
        qt.update_quantization_recipe(regex=END2END_TAIL_SCOPE, operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                      algorithm_key=algorithms.NO_QUANTIZE)
    return bytes(qt.quantize(enable_progress_report=False).quantized_model)


def quantize_int8(fp32: bytes, calibration: CalibrationSet, config: TfliteOptions,
                  timings: dict[str, float] | None = None) -> tuple[bytes, dict]:
    """Static int8 weights and activations, calibrated; full-integer I/O unless ``config.float_io``.

    Returns:
        The quantized flatbuffer and the facts for the contract's ``extra["int8"]``.
    """
    timings = {} if timings is None else timings
    quantizer, recipe, qtyping, algorithms = _quantizer()
    ops = qtyping.TFLOperationName
    rewritten, leaky = rewrite_leaky_relu(fp32)
    qt = quantizer.Quantizer(bytearray(rewritten), recipe.static_wi8_ai8())
    float_scopes = list(config.keep_float)  # tflite-int8 takes no --end2end (the quantizer reaches into the tail)
    # Later entries win: everything under the DCN scope float, then its weight layers back to int8: the
    # offset/mask convolutions (CONV_2D) and the tap projections (FULLY_CONNECTED, a quarter of V1's MACs).
    qt.update_quantization_recipe(regex=DCN_SAMPLING_SCOPE, operation_name=ops.ALL_SUPPORTED,
                                  algorithm_key=algorithms.NO_QUANTIZE)
    for weight_layer in DCN_INT8_OPS:
        qt.add_static_config(regex=DCN_SAMPLING_SCOPE, operation_name=getattr(ops, weight_layer),
                             activation_num_bits=8, weight_num_bits=8)
    for scope in float_scopes:
        qt.update_quantization_recipe(regex=scope, operation_name=ops.ALL_SUPPORTED,
                                      algorithm_key=algorithms.NO_QUANTIZE)
    if config.float_io:
        for op in (ops.INPUT, ops.OUTPUT):
            qt.update_quantization_recipe(regex=".*", operation_name=op, algorithm_key=algorithms.NO_QUANTIZE)
    feeds = {SIGNATURE: [{INPUT_NAME: batch} for batch in calibration.batches(1)]}
    result = timed(timings, "calibrate", lambda: qt.calibrate(feeds, num_threads=1))
    data = timed(timings, "quantize", lambda: bytes(
        qt.quantize(result, enable_progress_report=False).quantized_model))
    data, fused = fuse_int8_leaky_relu(data)
    data, int8_lookups = look_up_int8_rows(data)
    census = op_census(data)
    float_ops = {k.split(":")[0]: v for k, v in census.items() if k.endswith(":FLOAT32") and not k.startswith("DEQ")}
    return data, {"int8": {
        "tool": "ai-edge-quantizer static_wi8_ai8 (min/max, per-channel weights)",
        "io": "float32" if config.float_io else "int8",
        "leaky_relu_rewritten": leaky,
        "leaky_relu_int8": fused,
        "int8_row_lookups": int8_lookups,
        "keep_float_scopes": [f"{DCN_SAMPLING_SCOPE} (except {', '.join(DCN_INT8_OPS)})", *float_scopes],
        "float_ops": dict(sorted(float_ops.items())),
    }}


def _quantizer():
    try:
        from ai_edge_quantizer import qtyping, quantizer, recipe
        from ai_edge_quantizer.algorithm_manager import AlgorithmName
    except ImportError as error:
        raise missing_backend("ai_edge_quantizer", "tflite-export") from error
    return quantizer, recipe, qtyping, AlgorithmName
