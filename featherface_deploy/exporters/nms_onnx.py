"""The ONNX lowering of ``featherface::nms``: one ``NonMaxSuppression`` plus padding to a fixed size.

ONNX Runtime's CPU kernel (``onnxruntime/core/providers/cpu/object_detection/non_max_suppression.cc``)
keeps a candidate when ``score > score_threshold`` (strict) and suppresses it when
``IoU > iou_threshold`` (strict, continuous coordinates, no +1; a box of zero area never
suppresses nor is suppressed), visiting candidates by decreasing score (lower index first on
ties) and returning them in selection order. With ``score_threshold = 0`` that is exactly the
op's contract: a candidate whose (rank) score is not strictly positive is never selected.
``center_point_box = 0``: boxes are corners ``x1, y1, x2, y2`` (ONNX's ``y1, x1, y2, x2`` order is
symmetric for IoU, so no swap is needed).

``NonMaxSuppression`` returns ``(selected, 3)`` rows ``[batch, class, box]``; the lowering
takes the box column, pads it with zeros to ``max_output`` and returns the count as a (1,)
int64 tensor, the op's fixed-size outputs. TensorRT's ONNX parser maps ``NonMaxSuppression``
to its NMS layer from TensorRT 8.5 (see :mod:`featherface_deploy.trt.graph_check`).
"""

from __future__ import annotations

import torch

from featherface_deploy.exporters import nms_op  # noqa: F401  (registers torch.ops.featherface.nms)

NMS_SCORE_THRESHOLD = 0.0  # strict in ONNX: rank scores of masked candidates (0) are never selected


def nms_translation() -> dict:
    """``custom_translation_table`` entry for ``torch.onnx.export(..., dynamo=True)``."""
    from onnxscript import opset18 as op

    def featherface_nms(boxes, scores, iou_threshold: float, max_output: int):
        selected = op.NonMaxSuppression(
            op.Unsqueeze(boxes, op.Constant(value_ints=[0])),
            op.Unsqueeze(scores, op.Constant(value_ints=[0, 1])),
            op.Constant(value_int=max_output),
            op.Constant(value_float=iou_threshold),
            op.Constant(value_float=NMS_SCORE_THRESHOLD),
            center_point_box=0,
        )
        chosen = op.Gather(selected, op.Constant(value_int=2), axis=1)
        padding = op.Constant(value_ints=[0] * max_output)
        indices = op.Slice(op.Concat(chosen, padding, axis=0), op.Constant(value_ints=[0]),
                           op.Constant(value_ints=[max_output]))
        count = op.Shape(selected, start=0, end=1)
        return indices, count

    return {torch.ops.featherface.nms.default: featherface_nms}
