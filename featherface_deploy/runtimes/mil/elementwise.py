"""Elementwise and activation ops of the MIL opset, in numpy.

Each kernel follows its op's definition in ``coremltools.converters.mil.mil.ops.defs``
(numpy broadcasting is MIL's broadcasting). Kernels compute in at least float32;
the interpreter rounds every result to the dtype the program declares for it,
which is where FP16 programs lose precision (see :mod:`.interpreter`).
"""

from __future__ import annotations

import numpy as np


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp(-|x|) never overflows; the two branches are the same function.
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=int(axis), keepdims=True))
    return shifted / shifted.sum(axis=int(axis), keepdims=True)


def _inverse(x: np.ndarray, epsilon: float = 1e-4) -> np.ndarray:
    return 1.0 / (x + epsilon)


def _rsqrt(x: np.ndarray, epsilon: float = 1e-12) -> np.ndarray:
    return 1.0 / np.sqrt(x + epsilon)


def _real_div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.true_divide(x, y)


def _floor_div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.floor_divide(x, y)


BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "real_div": _real_div, "floor_div": _floor_div,
    "pow": np.power, "maximum": np.maximum, "minimum": np.minimum, "mod": np.mod,
    "equal": np.equal, "not_equal": np.not_equal, "greater": np.greater, "greater_equal": np.greater_equal,
    "less": np.less, "less_equal": np.less_equal,
    "logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor,
}

UNARY = {
    "abs": np.abs, "ceil": np.ceil, "floor": np.floor, "sign": np.sign, "exp": np.exp,
    "sqrt": np.sqrt, "square": np.square, "tanh": np.tanh, "logical_not": np.logical_not,
    "sigmoid": _sigmoid, "relu": lambda x: np.maximum(x, 0), "relu6": lambda x: np.clip(x, 0, 6),
    "silu": lambda x: x * _sigmoid(x),
}


def elementwise_ops() -> dict:
    """Returns ``{op_type: kernel(**inputs)}`` for the elementwise ops."""
    ops = {name: (lambda fn: lambda x, y: fn(x, y))(fn) for name, fn in BINARY.items()}
    ops.update({name: (lambda fn: lambda x: fn(x))(fn) for name, fn in UNARY.items()})
    ops.update({
        "clip": lambda x, alpha, beta: np.minimum(np.maximum(x, alpha), beta),
        "leaky_relu": lambda x, alpha=0.01: np.where(x >= 0, x, x * alpha),
        "inverse": _inverse,
        "rsqrt": _rsqrt,
        "log": lambda x, epsilon=1e-45: np.log(x + epsilon),
        "softmax": _softmax,
        "select": lambda cond, a, b: np.where(cond, a, b),
    })
    return ops
