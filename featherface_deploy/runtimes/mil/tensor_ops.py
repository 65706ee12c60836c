"""Shape, indexing and reduction ops of the MIL opset, in numpy.

Each kernel follows its op's definition in ``coremltools.converters.mil.mil.ops.defs``
(iOS15 and the later versions that extend it).
"""

from __future__ import annotations

import numpy as np

# MIL ``cast`` dtype names.
CAST_DTYPES = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "int16": np.int16, "int8": np.int8,
               "uint8": np.uint8, "uint16": np.uint16, "bool": np.bool_, "fp64": np.float64, "int64": np.int64}


def _reshape(x: np.ndarray, shape: np.ndarray) -> np.ndarray:
    # A 0 copies the input dimension it lines up with from the right (iOS17; equal ranks before that).
    target = [int(v) for v in np.asarray(shape).reshape(-1)]
    offset = x.ndim - len(target)
    for i, value in enumerate(target):
        if value == 0:
            target[i] = x.shape[i + offset] if 0 <= i + offset < x.ndim else 1
    return x.reshape(target)


def _slice_by_index(x: np.ndarray, begin, end, stride=None, begin_mask=None, end_mask=None,
                    squeeze_mask=None) -> np.ndarray:
    rank = x.ndim
    stride = np.ones(rank, np.int64) if stride is None else np.asarray(stride)
    begin_mask = np.zeros(rank, bool) if begin_mask is None else np.asarray(begin_mask)
    end_mask = np.zeros(rank, bool) if end_mask is None else np.asarray(end_mask)
    squeeze_mask = np.zeros(rank, bool) if squeeze_mask is None else np.asarray(squeeze_mask)
    index = []
    for axis in range(rank):
        if squeeze_mask[axis]:
            index.append(int(begin[axis]))
            continue
        start = None if begin_mask[axis] else int(begin[axis])
        stop = None if end_mask[axis] else int(end[axis])
        index.append(slice(start, stop, int(stride[axis])))
    return x[tuple(index)]


def _slice_by_size(x: np.ndarray, begin, size) -> np.ndarray:
    index = tuple(slice(int(b), None if int(s) == -1 else int(b) + int(s)) for b, s in zip(begin, size))
    return x[index]


def _gather(x: np.ndarray, indices: np.ndarray, axis: int = 0, batch_dims: int = 0,
            validate_indices: bool = False) -> np.ndarray:
    # np.take raises on out-of-range indices and wraps negative ones, as MIL allows.
    if batch_dims == 0:
        return np.take(x, indices.astype(np.int64), axis=int(axis))
    return np.stack([_gather(x[i], indices[i], int(axis) - 1, batch_dims - 1) for i in range(x.shape[0])])


def _gather_along_axis(x: np.ndarray, indices: np.ndarray, axis: int = 0, validate_indices: bool = False):
    indices = indices.astype(np.int64)
    indices = np.where(indices < 0, indices + x.shape[int(axis)], indices)
    return np.take_along_axis(x, indices, axis=int(axis))


def _concat(values, axis: int, interleave: bool = False) -> np.ndarray:
    values = [np.atleast_1d(v) for v in values]  # shape arithmetic concatenates scalars into a shape vector
    if interleave:  # equal-sized inputs, one slice of each in turn
        axis = int(axis) % values[0].ndim
        shape = list(values[0].shape)
        shape[axis] = -1
        return np.stack(values, axis=axis + 1).reshape(shape)
    return np.concatenate(values, axis=int(axis))


def _pad(x: np.ndarray, pad, mode: str = "constant", constant_val=0.0) -> np.ndarray:
    pad = [int(v) for v in np.asarray(pad).reshape(-1)]
    padded_dims = len(pad) // 2
    widths = [(0, 0)] * (x.ndim - padded_dims) + [(pad[2 * i], pad[2 * i + 1]) for i in range(padded_dims)]
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=constant_val)
    return np.pad(x, widths, mode={"reflect": "reflect", "replicate": "edge"}[mode])


def _axes(x: np.ndarray, axes) -> tuple[int, ...]:
    return tuple(range(x.ndim)) if axes is None else tuple(int(a) for a in np.asarray(axes).reshape(-1))


def _reduce(fn):
    return lambda x, axes=None, keep_dims=False: fn(x, axis=_axes(x, axes), keepdims=bool(keep_dims))


def _cast(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype not in CAST_DTYPES:
        raise ValueError(f"cast to unknown dtype '{dtype}'")
    return np.asarray(x).astype(CAST_DTYPES[dtype])


def tensor_ops() -> dict:
    """Returns ``{op_type: kernel(**inputs)}`` for the shape, indexing and reduction ops."""
    return {
        "identity": lambda x: x,
        "cast": _cast,
        "reshape": _reshape,
        "transpose": lambda x, perm: np.transpose(x, [int(p) for p in perm]),
        "expand_dims": lambda x, axes: np.expand_dims(x, tuple(int(a) for a in axes)),
        "squeeze": lambda x, axes=None: np.squeeze(x, None if axes is None else _axes(x, axes)),
        "tile": lambda x, reps: np.tile(x, [int(r) for r in reps]),
        "shape": lambda x: np.asarray(x.shape, np.int32),
        "concat": _concat,
        "stack": lambda values, axis: np.stack(values, axis=int(axis)),
        "slice_by_index": _slice_by_index,
        "slice_by_size": _slice_by_size,
        "gather": _gather,
        "gather_along_axis": _gather_along_axis,
        "pad": _pad,
        "fill": lambda shape, value=0.0: np.full([int(s) for s in shape], value),
        "range_1d": lambda end, start, step: np.arange(start, end, step),
        "reduce_mean": _reduce(np.mean),
        "reduce_sum": _reduce(np.sum),
        "reduce_max": _reduce(np.max),
        "reduce_min": _reduce(np.min),
    }
