"""The ``constexpr_*`` ops: weights stored compressed and expanded when the model loads.

``--int8 weights`` (``linear_quantize_weights``) writes
``constexpr_affine_dequantize`` (iOS16/17 targets) or
``constexpr_blockwise_shift_scale`` (iOS18); both are ``scale · (data − offset)``.
"""

from __future__ import annotations

import numpy as np


def _axis_broadcast(values: np.ndarray, rank: int, axis: int) -> np.ndarray:
    """A scalar, or a vector laid along ``axis`` of a rank-``rank`` tensor."""
    values = np.asarray(values, np.float32)
    if values.ndim == 0:
        return values
    shape = [1] * rank
    shape[axis] = values.size
    return values.reshape(shape)


def _affine_dequantize(quantized_data, zero_point, scale, axis):
    rank = quantized_data.ndim
    axis = int(axis) % rank
    data = quantized_data.astype(np.float32)
    return _axis_broadcast(scale, rank, axis) * (data - _axis_broadcast(zero_point, rank, axis))


def _blockwise_shift_scale(data, scale, offset=None):
    # Each scale (and offset) entry covers a block of data.shape[i] / scale.shape[i] elements per axis.
    if data.ndim != scale.ndim:
        raise ValueError(f"constexpr_blockwise_shift_scale: data rank {data.ndim} != scale rank {scale.ndim}")
    blocks = [size // count for size, count in zip(data.shape, scale.shape)]

    def expand(values: np.ndarray) -> np.ndarray:
        for axis, block in enumerate(blocks):
            values = np.repeat(values, block, axis=axis)
        return values.astype(np.float32)

    values = data.astype(np.float32)
    if offset is not None:
        values = values - expand(offset)
    return expand(scale) * values


def constexpr_ops() -> dict:
    """Returns ``{op_type: kernel(**inputs)}`` for the weight-decompression ops."""
    return {
        "constexpr_affine_dequantize": _affine_dequantize,
        "constexpr_blockwise_shift_scale": _blockwise_shift_scale,
        "constexpr_cast": lambda source_val, output_dtype: source_val.astype(np.float32),
    }
