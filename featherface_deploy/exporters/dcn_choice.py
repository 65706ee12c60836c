"""Which lowering of the deformable convolutions an export uses: by default the one measured fastest on its runtime.

``--dcn`` (``dcn=``) forces one; ``auto`` (the default) takes :data:`FASTEST`.
The choice and how it was made go into the decode contract
(``extra["dcn"]``, ``extra["dcn_selected"]``), and ``featherface-deploy info``
prints them.

:data:`FASTEST` holds what ``python benchmarks/bench_onnx_dcn.py --runs 20``
measured (FeatherFace V1, 640×640, 2 threads, every lowering of both backends
interleaved in one run, medians, ONNX Runtime spinning off, on a shared and
loaded 2-core host; ``benchmarks/results/onnx_dcn.json``):

- ONNX Runtime: ``native`` (ONNX ``DeformConv``) 254.0 ms, ``gather_float``
  293.7 ms, ``gather`` 315.2 ms: native takes 0.81× the time of ``gather``.
- LiteRT (XNNPACK): ``gather_float`` 423.4 ms, ``gather`` 572.5 ms (0.74×):
  XNNPACK takes 1447 of its 1481 operators instead of 1071 of 1940.

Rows built from another export keep what that row was verified with
(:func:`int8_source_lowering`): ONNX INT8 with Q/DQ on layer inputs (the
default, TensorRT's pattern; TensorRT has no ``DeformConv``) quantizes
``gather``; the ``fused`` placement for ONNX Runtime's integer kernels
quantizes the native graph (``DeformConv`` stays float between integer
layers, the offset/mask convolutions are integer).
"""

from __future__ import annotations

from featherface_deploy.errors import ExportError

AUTO = "auto"
# What each exporter can build; "portable" is the older name of "gather" (kept for scripts and TensorRT recipes).
CHOICES = {
    "onnx": ("gather", "gather_float", "native"),
    "tflite": ("gather", "gather_float"),
}
ALIASES = {"portable": "gather"}
FASTEST = {"onnx": "native", "tflite": "gather_float"}
# A dynamic-shape graph cannot use gather_float: its float indices are exact only for tables proven < 2**24 rows.
STATIC_ONLY = ("gather_float",)


def choose_lowering(backend: str, requested: str = AUTO, dynamic: bool = False) -> tuple[str, str]:
    """Returns (lowering, how it was selected) for an export to ``backend``.

    Args:
        backend: ``onnx`` or ``tflite``.
        requested: ``auto``, a lowering of :data:`CHOICES` or an alias (``portable``).
        dynamic: The graph takes any size.

    Returns:
        The lowering and ``"auto: fastest measured for <backend>"`` or ``"forced"``.

    Raises:
        ExportError: A lowering the backend cannot build (the message lists the choices).
    """
    choices = CHOICES[backend]
    if requested == AUTO:
        lowering = FASTEST[backend]
        if dynamic and lowering in STATIC_ONLY:
            lowering = "gather"
        return lowering, f"auto: fastest measured for {backend}" + (" (dynamic shapes)" if dynamic else "")
    lowering = ALIASES.get(requested, requested)
    if lowering not in choices:
        raise ExportError(f"unknown DCN lowering '{requested}' for {backend}; choose one of: "
                          f"{', '.join((AUTO, *choices, *ALIASES))}")
    if dynamic and lowering in STATIC_ONLY:
        raise ExportError(f"dcn='{requested}' needs a fixed input size (its float indices are exact only for a "
                          "known table size); drop --dynamic or pass --dcn gather")
    return lowering, "forced"


def int8_source_lowering(requested: str, placement: str = "inputs") -> str:
    """The lowering of the FP32 ONNX an INT8 ONNX is quantized from.

    ``auto`` → ``gather`` for Q/DQ on layer inputs (the default, also TensorRT's), ``native`` for the
    ``fused`` placement (``DeformConv`` runs float between ONNX Runtime's integer layers: the fastest
    INT8 graph measured, docs/design/int8-kernels.md).

    Raises:
        ExportError: ``native`` with Q/DQ on inputs (the TensorRT pattern: TensorRT has no ``DeformConv``).
    """
    lowering = ALIASES.get(requested, requested)
    if placement == "inputs" and lowering == "native":
        raise ExportError("INT8 with Q/DQ on layer inputs needs the portable (plain-op) DCN (TensorRT has no "
                          "DeformConv): drop --dcn native, or pass --placement fused")
    if lowering == AUTO:
        return FASTEST["onnx"] if placement == "fused" else "gather"
    return lowering
