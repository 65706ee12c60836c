"""Small, exact edits and censuses of TFLite graphs (flatbuffer object API, no TensorFlow).

- :func:`rewrite_leaky_relu` turns every ``LEAKY_RELU(x, a)`` into
  ``MAXIMUM(x, MUL(x, a))``. The two are bit-identical in float (both compute
  ``x·a`` in float32 and keep the larger), but ai-edge-quantizer 0.10 has no
  int8 rule for ``LEAKY_RELU`` and leaves a DEQUANTIZE → LEAKY_RELU → QUANTIZE
  island around each of the 28 in FeatherFace, while ``MUL`` and ``MAXIMUM``
  quantize. Done on the converted FP32 flatbuffer, just before quantization,
  so the FP32/FP16 files keep the single fused op and one ``litert_torch``
  conversion serves every precision.
- :func:`fuse_int8_leaky_relu` undoes that rewrite in the *quantized* graph: each
  int8 ``MAXIMUM(x, MUL(x, a))`` it made (with the requantization of ``x`` the
  quantizer puts before the ``MAXIMUM``) becomes one int8 ``LEAKY_RELU`` with the
  ``MAXIMUM``'s output scale. XNNPACK has no int8 ``MAXIMUM``: left as it is, each
  one splits a delegate partition (V1: 27 partitions instead of 9).
- :func:`look_up_int8_rows` moves the ``DEQUANTIZE`` of an int8 table from before
  an ``EMBEDDING_LOOKUP`` (the DCN sampling's row gather) to after it: the lookup,
  which runs outside XNNPACK, copies int8 rows (a quarter of the bytes) and
  XNNPACK dequantizes the rows gathered. Exact: dequantizing commutes with
  copying rows.
- :func:`op_census` counts operators by type and output dtype (to report
  what an INT8 model still runs in float), :func:`tflite_float_mac_fraction` the share
  of its multiply-accumulates left in float, :func:`integer_mac_fraction` the
  share computed by integer kernels.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from featherface_deploy.metadata.tflite import flatbuffer_schema, pack_model, unpack_model


def _builtin_code(operator_code) -> int:
    # Codes ≥ 127 live only in builtinCode; older files only fill deprecatedBuiltinCode.
    return max(operator_code.builtinCode, operator_code.deprecatedBuiltinCode)


def _opcode_index(model, schema, code: int) -> int:
    for index, operator_code in enumerate(model.operatorCodes):
        if _builtin_code(operator_code) == code and not operator_code.customCode:
            return index
    operator_code = schema.OperatorCodeT()
    operator_code.builtinCode = code
    operator_code.deprecatedBuiltinCode = min(code, 127)
    operator_code.version = 1
    model.operatorCodes.append(operator_code)
    return len(model.operatorCodes) - 1


def _new_tensor(model, schema, name: str, like, data: np.ndarray | None = None):
    buffer = schema.BufferT()
    if data is not None:
        buffer.data = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.name = name
    tensor.type = schema.TensorType.FLOAT32
    tensor.buffer = len(model.buffers) - 1
    if data is not None:
        tensor.shape = np.asarray(data.shape, dtype=np.int32)
    else:
        tensor.shape = like.shape
        tensor.shapeSignature = like.shapeSignature
    return tensor


def rewrite_leaky_relu(data: bytes) -> tuple[bytes, int]:
    """Replaces every float ``LEAKY_RELU`` by ``MAXIMUM(x, MUL(x, alpha))`` (exact in float).

    Args:
        data: A float ``.tflite`` flatbuffer.

    Returns:
        The rewritten flatbuffer and the number of ops replaced (the input is
        returned unchanged when there is none).
    """
    _, schema = flatbuffer_schema()
    model = unpack_model(data)
    leaky = schema.BuiltinOperator.LEAKY_RELU
    replaced = 0
    for subgraph in model.subgraphs:
        operators = []
        for op in subgraph.operators:
            source = subgraph.tensors[op.inputs[0]]
            if (_builtin_code(model.operatorCodes[op.opcodeIndex]) != leaky
                    or source.type != schema.TensorType.FLOAT32):
                operators.append(op)
                continue
            output_name = subgraph.tensors[op.outputs[0]].name.decode("utf-8")
            alpha = np.asarray(op.builtinOptions.alpha, dtype=np.float32)
            subgraph.tensors.append(_new_tensor(model, schema, f"{output_name}/leaky_alpha", source, alpha))
            alpha_index = len(subgraph.tensors) - 1
            subgraph.tensors.append(_new_tensor(model, schema, f"{output_name}/leaky_scaled", source))
            scaled_index = len(subgraph.tensors) - 1

            mul = schema.OperatorT()
            mul.opcodeIndex = _opcode_index(model, schema, schema.BuiltinOperator.MUL)
            mul.inputs, mul.outputs = [op.inputs[0], alpha_index], [scaled_index]
            mul.builtinOptionsType, mul.builtinOptions = schema.BuiltinOptions.MulOptions, schema.MulOptionsT()
            maximum = schema.OperatorT()
            maximum.opcodeIndex = _opcode_index(model, schema, schema.BuiltinOperator.MAXIMUM)
            maximum.inputs, maximum.outputs = [op.inputs[0], scaled_index], list(op.outputs)
            maximum.builtinOptionsType = schema.BuiltinOptions.MaximumMinimumOptions
            maximum.builtinOptions = schema.MaximumMinimumOptionsT()
            operators.extend((mul, maximum))
            replaced += 1
        subgraph.operators = operators
    return (pack_model(model), replaced) if replaced else (data, 0)


def fuse_int8_leaky_relu(data: bytes) -> tuple[bytes, int]:
    """Turns each int8 ``MAXIMUM(x, MUL(x, alpha))`` left by :func:`rewrite_leaky_relu` into one int8 ``LEAKY_RELU``.

    Only the ``MUL``s that rewrite made (output named ``…/leaky_scaled``, a one-element constant ``alpha``)
    are touched. The ``MAXIMUM``'s first input is ``x`` itself or a ``QUANTIZE`` of it to the output scale
    (used by nothing else: it is removed too). The ``LEAKY_RELU`` reads ``x`` with its own scale and
    writes the ``MAXIMUM``'s output tensor, so the graph around it is unchanged; its ``alpha`` is the
    dequantized constant (0.1 ± 1e-9 for FeatherFace's 0.1). One rounding instead of the two of the
    ``MUL``/``MAXIMUM`` pair: the result is at least as close to float.

    Returns:
        The flatbuffer and the number of ops fused (the input is returned unchanged when there is none).
    """
    _, schema = flatbuffer_schema()
    model = unpack_model(data)
    codes = schema.BuiltinOperator
    code = lambda op: _builtin_code(model.operatorCodes[op.opcodeIndex])  # noqa: E731
    fused = 0
    for subgraph in model.subgraphs:
        producer, readers = _wiring(subgraph)
        dropped: set[int] = set()
        for index, op in enumerate(subgraph.operators):
            if code(op) != codes.MAXIMUM or subgraph.tensors[op.outputs[0]].type != schema.TensorType.INT8:
                continue
            first, scaled = op.inputs
            mul_index = producer.get(scaled)
            if mul_index is None or readers[scaled] != 1:
                continue
            mul = subgraph.operators[mul_index]
            if (code(mul) != codes.MUL
                    or not subgraph.tensors[scaled].name.decode("utf-8").endswith("/leaky_scaled")):
                continue
            source, alpha_index = mul.inputs
            requantize = producer.get(first)
            requantized = (requantize is not None and code(subgraph.operators[requantize]) == codes.QUANTIZE
                           and subgraph.operators[requantize].inputs[0] == source and readers[first] == 1)
            alpha = _int8_scalar(model, schema, subgraph.tensors[alpha_index])
            if (first != source and not requantized) or alpha is None:
                continue
            leaky = schema.OperatorT()
            leaky.opcodeIndex = _opcode_index(model, schema, codes.LEAKY_RELU)
            leaky.inputs, leaky.outputs = [source], list(op.outputs)
            leaky.builtinOptionsType = schema.BuiltinOptions.LeakyReluOptions
            leaky.builtinOptions = schema.LeakyReluOptionsT()
            leaky.builtinOptions.alpha = alpha
            subgraph.operators[index] = leaky
            dropped |= {mul_index, requantize} if requantized else {mul_index}
            fused += 1
        subgraph.operators = [op for index, op in enumerate(subgraph.operators) if index not in dropped]
    return (pack_model(model), fused) if fused else (data, 0)


def look_up_int8_rows(data: bytes) -> tuple[bytes, int]:
    """Rewrites every ``DEQUANTIZE(q) → RESHAPE* → EMBEDDING_LOOKUP`` as ``RESHAPE* → EMBEDDING_LOOKUP → DEQUANTIZE``.

    ``q`` must be an int8 tensor with one scale and every tensor of the chain read by the next op only. The
    reshapes and the lookup then carry ``q``'s int8 values and quantization (LiteRT's ``EMBEDDING_LOOKUP``
    copies int8 rows when its output is int8; the op keeps version 1), and a new ``DEQUANTIZE`` writes the
    lookup's original float output. Bit-identical outputs: each gathered value is dequantized with the same
    scale and zero point either way.

    Returns:
        The flatbuffer and the number of lookups rewritten (the input is returned unchanged when there is none).
    """
    _, schema = flatbuffer_schema()
    model = unpack_model(data)
    codes = schema.BuiltinOperator
    code = lambda op: _builtin_code(model.operatorCodes[op.opcodeIndex])  # noqa: E731
    rewritten = 0
    for subgraph in model.subgraphs:
        producer, readers = _wiring(subgraph)
        dropped: set[int] = set()
        dequantize_after: dict[int, object] = {}
        for index, op in enumerate(subgraph.operators):
            if code(op) != codes.EMBEDDING_LOOKUP:
                continue
            chain, table = [], op.inputs[1]  # the reshapes between the DEQUANTIZE and the lookup, last first
            while (producer.get(table) is not None and readers[table] == 1
                   and code(subgraph.operators[producer[table]]) == codes.RESHAPE):
                chain.append(producer[table])
                table = subgraph.operators[producer[table]].inputs[0]
            source = producer.get(table)
            if source is None or readers[table] != 1 or code(subgraph.operators[source]) != codes.DEQUANTIZE:
                continue
            quantized = subgraph.tensors[subgraph.operators[source].inputs[0]]
            scales = quantized.quantization.scale if quantized.quantization is not None else None
            if quantized.type != schema.TensorType.INT8 or scales is None or len(scales) != 1:
                continue
            previous = subgraph.operators[source].inputs[0]
            for reshape in reversed(chain):
                reshape_op = subgraph.operators[reshape]
                reshape_op.inputs = [previous, *reshape_op.inputs[1:]]
                reshape_op.outputs = [_int8_twin(model, schema, subgraph, reshape_op.outputs[0], quantized)]
                previous = reshape_op.outputs[0]
            float_output = op.outputs[0]
            op.inputs = [op.inputs[0], previous]
            op.outputs = [_int8_twin(model, schema, subgraph, float_output, quantized)]
            dequantize = schema.OperatorT()
            dequantize.opcodeIndex = _opcode_index(model, schema, codes.DEQUANTIZE)
            dequantize.inputs, dequantize.outputs = [op.outputs[0]], [float_output]
            dequantize_after[index] = dequantize
            dropped.add(source)
            rewritten += 1
        operators = []
        for index, op in enumerate(subgraph.operators):
            if index not in dropped:
                operators.append(op)
            if index in dequantize_after:
                operators.append(dequantize_after[index])
        subgraph.operators = operators
    return (pack_model(model), rewritten) if rewritten else (data, 0)


def _wiring(subgraph) -> tuple[dict[int, int], Counter]:
    """(tensor → index of the op writing it, tensor → how many op inputs read it) of one subgraph."""
    producer = {out: index for index, op in enumerate(subgraph.operators) for out in op.outputs}
    return producer, Counter(name for op in subgraph.operators for name in op.inputs)


def _int8_twin(model, schema, subgraph, index: int, quantized) -> int:
    """Appends an int8 tensor shaped like tensor ``index`` with ``quantized``'s quantization; returns its index."""
    source = subgraph.tensors[index]
    twin = _new_tensor(model, schema, source.name.decode("utf-8") + "/int8", source)
    twin.type = schema.TensorType.INT8
    twin.quantization = schema.QuantizationParametersT()
    twin.quantization.scale = list(quantized.quantization.scale)
    twin.quantization.zeroPoint = list(quantized.quantization.zeroPoint)
    subgraph.tensors.append(twin)
    return len(subgraph.tensors) - 1


def _int8_scalar(model, schema, tensor) -> float | None:
    """The dequantized value of a one-element int8 constant tensor, else ``None``."""
    data = model.buffers[tensor.buffer].data
    quantization = tensor.quantization
    if (tensor.type != schema.TensorType.INT8 or data is None or len(data) != 1 or quantization is None
            or quantization.scale is None):
        return None
    return float((int(np.asarray(data).view(np.int8)[0]) - int(quantization.zeroPoint[0])) * quantization.scale[0])


def op_census(data: bytes) -> Counter:
    """Counts operators as ``"OPNAME:DTYPE"`` (dtype of the first output), over all subgraphs."""
    _, schema = flatbuffer_schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    dtypes = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = unpack_model(data)
    census = Counter()
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            name = names.get(_builtin_code(model.operatorCodes[op.opcodeIndex]), "CUSTOM")
            dtype = dtypes.get(subgraph.tensors[op.outputs[0]].type, "?") if len(op.outputs) else "-"
            census[f"{name}:{dtype}"] += 1
    return census


def tensor_names(data: bytes) -> list[str]:
    """Every tensor's name, subgraph by subgraph, in index order."""
    model = unpack_model(data)
    return [tensor.name.decode("utf-8") for subgraph in model.subgraphs for tensor in subgraph.tensors]


# MAC-carrying op types and how many multiply-accumulates one output element costs, from the op's inputs.
_MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL")


def tflite_float_mac_fraction(data: bytes) -> float:
    """Share of the multiply-accumulates (Conv, depthwise Conv, FullyConnected, BatchMatMul) computed in float.

    An op counts as float when its output is FLOAT32 (:func:`mac_ops`).
    """
    return _mac_share(data, "FLOAT32")


def integer_mac_fraction(data: bytes) -> float:
    """Share of the multiply-accumulates computed by integer kernels: the MAC ops with an INT8 output."""
    return _mac_share(data, "INT8")


def _mac_share(data: bytes, dtype: str) -> float:
    ops = mac_ops(data)
    total = sum(macs for _, _, macs, _ in ops)
    return sum(macs for _, _, macs, output in ops if output == dtype) / total if total else 0.0


def mac_ops(data: bytes) -> list[tuple[int, str, int, str]]:
    """(operator index, op name, MACs, output dtype name) of every MAC op of the primary subgraph.

    MACs per op: output elements × the reduction length (kernel height × width × input channels for
    ``CONV_2D``, kernel height × width for ``DEPTHWISE_CONV_2D``, the contracted dimension for the two
    matrix products).
    """
    _, schema = flatbuffer_schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    dtypes = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = unpack_model(data)
    subgraph = model.subgraphs[0]
    result = []
    for index, op in enumerate(subgraph.operators):
        name = names.get(_builtin_code(model.operatorCodes[op.opcodeIndex]), "CUSTOM")
        if name not in _MAC_OPS:
            continue
        output = subgraph.tensors[op.outputs[0]]
        weight = [int(v) for v in subgraph.tensors[op.inputs[1]].shape]
        if name == "CONV_2D":
            reduction = weight[1] * weight[2] * weight[3]
        elif name == "DEPTHWISE_CONV_2D":
            reduction = weight[1] * weight[2]
        elif name == "FULLY_CONNECTED":
            reduction = weight[-1]
        else:  # BATCH_MATMUL: x[..., M, K] @ y[..., K, N], either side possibly adjointed
            x_shape = [int(v) for v in subgraph.tensors[op.inputs[0]].shape]
            reduction = x_shape[-2] if getattr(op.builtinOptions, "adjX", False) else x_shape[-1]
        result.append((index, name, int(np.prod([int(v) for v in output.shape])) * reduction,
                       dtypes.get(output.type, "?")))
    return result


def drop_outputs(data: bytes, names: tuple[str, ...]) -> tuple[bytes, tuple[str, ...]]:
    """Removes the signature outputs ``names`` (and their subgraph outputs); the tensors stay in the graph.

    Returns:
        The flatbuffer and the names of the dropped outputs' tensors, in the order of ``names``
        (what :func:`expose_tensors` takes to put them back).

    Raises:
        KeyError: An output not in the first signature.
    """
    model = unpack_model(data)
    signature = model.signatureDefs[0]
    subgraph = model.subgraphs[signature.subgraphIndex]
    by_name = {entry.name.decode("utf-8"): entry.tensorIndex for entry in signature.outputs}
    dropped = [by_name[name] for name in names]
    signature.outputs = [entry for entry in signature.outputs if entry.tensorIndex not in dropped]
    subgraph.outputs = [int(index) for index in subgraph.outputs if index not in dropped]
    return pack_model(model), tuple(subgraph.tensors[index].name.decode("utf-8") for index in dropped)


def expose_tensors(data: bytes, tensor_names: tuple[str, ...]) -> bytes:
    """Adds the tensors called ``tensor_names`` as outputs of the first signature, under their own names.

    Raises:
        KeyError: A tensor not in the signature's subgraph.
    """
    _, schema = flatbuffer_schema()
    model = unpack_model(data)
    signature = model.signatureDefs[0]
    subgraph = model.subgraphs[signature.subgraphIndex]
    by_name = {tensor.name.decode("utf-8"): index for index, tensor in enumerate(subgraph.tensors)}
    subgraph.outputs = [int(index) for index in subgraph.outputs]
    for name in tensor_names:
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = name.encode("utf-8"), by_name[name]
        signature.outputs.append(entry)
        subgraph.outputs.append(by_name[name])
    return pack_model(model)
