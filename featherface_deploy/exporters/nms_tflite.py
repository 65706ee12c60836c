"""TFLite lowering of ``featherface::nms`` to the builtin ``NON_MAX_SUPPRESSION_V5`` (litert-torch 0.10).

litert-torch has no NMS lowering; :func:`register` adds one the way its own
``torch_tfl`` ops are lowered: a decomposition (run before lowering) rewrites
``featherface::nms`` into plain torch ops around a private op,
``featherface::tflite_nms_v5``, whose lowering emits ``tfl.non_max_suppression_v5``
(a StableHLO custom call the converter turns into the builtin). Every op of the
result is a TFLite builtin.

The kernel's conventions differ from the op's, and the decomposition neutralises each:

* **Box format**: the kernel reads ``[y1, x1, y2, x2]``; the columns are swapped.
* **IoU comparison**: the kernel suppresses at ``IoU >= threshold``, the op at ``>``;
  the kernel gets the next float32 above the threshold (on float32 IoUs,
  ``iou > t`` ⟺ ``iou >= nextafter(t)``). Its IoU arithmetic is the reference's
  (same products, same order) for boxes of positive finite area.
* **Score threshold**: the kernel keeps ``score > score_threshold``: 0 is passed,
  the op's "strictly positive".
* **Degenerate boxes** (area not positive and finite: zero width, inverted, NaN, inf):
  the kernel compares a selected box with itself on its next visit, and a box
  whose self-IoU is 0 or NaN is selected again and again until the output is
  full. The reference selects such a box once, when its score comes up, and it
  suppresses nothing (its IoU with anything is 0 or NaN). So they are withheld
  from the kernel (score 0) and merged back afterwards: the selected set is the
  kernel's selection plus the degenerate boxes with a positive score, ordered
  by decreasing score (``TOPK_V2``) and cut at ``max_output``.
* **Padding**: the kernel pads ``selected_indices`` with 0, like the op; the
  merge re-pads after the sort.

What remains different: the order among equal positive scores (the kernel's
priority queue breaks ties arbitrarily, the reference by index; the head feeds
strictly decreasing rank scores), and boxes whose union is below 1e-12 (the
reference clamps the IoU denominator there).
"""

from __future__ import annotations

import numpy as np
import torch

from featherface_deploy.exporters.nms_op import box_iou, nms

KERNEL_OP_NAME = "featherface::tflite_nms_v5"
TFL_OP = "tfl.non_max_suppression_v5"
AREA_LIMIT = 1e38  # above it, area + area overflows float32 and the kernel's self-IoU is no longer 1
_registered = False


@torch.library.custom_op(KERNEL_OP_NAME, mutates_args=())
def tflite_nms_v5(boxes_yxyx: torch.Tensor, scores: torch.Tensor, max_output: int,
                  iou_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """TFLite's ``NON_MAX_SUPPRESSION_V5`` kernel (hard NMS, score threshold 0), for tracing and tests.

    Returns (selected indices (max_output,) int32 padded with 0, count () int32), as the kernel does:
    suppress at ``IoU >= iou_threshold``, candidates with ``score > 0``, boxes ``[y1, x1, y2, x2]``.
    Assumes boxes of positive finite area (what :func:`decompose_nms` feeds it).
    """
    order = torch.argsort(scores, descending=True, stable=True)
    selected: list[int] = []
    xyxy = boxes_yxyx[:, [1, 0, 3, 2]]
    threshold = torch.tensor(iou_threshold, dtype=torch.float32)
    for index in order.tolist():
        if len(selected) == max_output or not scores[index] > 0:
            break
        if selected and bool((box_iou(xyxy[index:index + 1], xyxy[selected]) >= threshold).any()):
            continue
        selected.append(index)
    indices = torch.zeros(max_output, dtype=torch.int32)
    indices[:len(selected)] = torch.tensor(selected, dtype=torch.int32)
    return indices, torch.tensor(len(selected), dtype=torch.int32)


@tflite_nms_v5.register_fake
def _tflite_nms_v5_shapes(boxes_yxyx: torch.Tensor, scores: torch.Tensor, max_output: int,
                          iou_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    return boxes_yxyx.new_empty((max_output,), dtype=torch.int32), boxes_yxyx.new_empty((), dtype=torch.int32)


def kernel_iou_threshold(iou_threshold: float) -> float:
    """The threshold that makes the kernel's ``IoU >= t`` equal the op's ``IoU > iou_threshold`` (float32)."""
    return float(np.nextafter(np.float32(iou_threshold), np.float32(np.inf)))


def decompose_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
                  max_output: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``featherface::nms`` in builtin-lowerable torch ops around :func:`tflite_nms_v5` (see the module docstring)."""
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    proper = (area > 0) & (area < AREA_LIMIT)  # False for NaN
    positive = scores > 0
    kernel_scores = torch.where(proper & positive, scores, torch.zeros_like(scores))
    yxyx = torch.stack((y1, x1, y2, x2), dim=1)
    kernel_indices, kernel_count = tflite_nms_v5(yxyx, kernel_scores, max_output,
                                                 kernel_iou_threshold(iou_threshold))
    candidates = torch.arange(scores.shape[0], dtype=torch.int32)
    slots = torch.arange(max_output, dtype=torch.int32)
    chosen = (kernel_indices[:, None] == candidates[None, :]) & (slots < kernel_count)[:, None]
    kept = chosen.any(dim=0) | (~proper & positive)
    ranked = torch.where(kept, scores, torch.full_like(scores, -1.0))
    width = min(max_output, scores.shape[0])
    _, order = torch.topk(ranked, width)
    count = kept.sum().clamp(max=max_output)
    order = torch.where(slots[:width] < count, order, torch.zeros_like(order))
    indices = torch.zeros(max_output, dtype=torch.int64)
    indices = torch.cat((order.to(torch.int64), indices[width:])) if width < max_output else order.to(torch.int64)
    return indices, count.reshape(1).to(torch.int64)


def register() -> None:
    """Registers the decomposition and the ``tfl.non_max_suppression_v5`` lowering with litert-torch (idempotent)."""
    global _registered
    if _registered:
        return
    from litert_torch import fx_infra
    from litert_torch.backend.lowerings import registry
    from litert_torch.backend.lowerings import utils as lowering_utils
    from litert_converter.mlir import ir
    from litert_converter.mlir.dialects import stablehlo

    fx_infra.decomp.add_pre_lower_decomp(nms._opoverload, decompose_nms)

    def constant(value, dtype) -> ir.Value:
        return lowering_utils.numpy_array_constant(np.array(value, dtype=dtype))

    @registry.lower(tflite_nms_v5._opoverload)
    def _lower(lctx, boxes_yxyx, scores, max_output: int, iou_threshold: float):
        index_type, count_type = lowering_utils.node_meta_to_ir_types(lctx.node)
        score_type = ir.RankedTensorType.get(index_type.shape, ir.F32Type.get())
        indices, _, count = stablehlo.custom_call(
            result=[index_type, score_type, count_type],
            inputs=[boxes_yxyx, scores, constant(max_output, np.int32), constant(iou_threshold, np.float32),
                    constant(0.0, np.float32), constant(0.0, np.float32)],
            call_target_name=ir.StringAttr.get(TFL_OP),
            has_side_effect=ir.BoolAttr.get(False),
            backend_config=ir.StringAttr.get(str(ir.DictAttr.get({}))),
        )
        return indices, count

    _registered = True


__all__ = ["AREA_LIMIT", "KERNEL_OP_NAME", "decompose_nms", "kernel_iou_threshold", "register", "tflite_nms_v5"]
