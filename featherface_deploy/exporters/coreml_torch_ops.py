"""Converters for torch ops the end-to-end head uses and coremltools 9 does not convert.

- ``aten::isfinite`` → ``less(abs(x), +inf)``: true for finite values, false for ±inf and NaN
  (every comparison with NaN is false).
"""

from __future__ import annotations

import numpy as np

_registered = False


def register() -> None:
    """Registers the converters with coremltools' torch frontend (idempotent; an existing one is kept)."""
    global _registered
    if _registered:
        return
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY, register_torch_op
    from coremltools.converters.mil.mil import types

    if "isfinite" not in _TORCH_OPS_REGISTRY:
        @register_torch_op
        def isfinite(context, node):
            (x,) = _get_inputs(context, node, expected=1)
            infinity = np.array(np.inf, dtype=types.nptype_from_builtin(x.dtype))
            context.add(mb.less(x=mb.abs(x=x), y=infinity, name=node.name))

    _registered = True


__all__ = ["register"]
