"""``featherface::nms``: the one non-maximum-suppression op the end-to-end graphs call.

The end-to-end head (decoding, NMS and the landmark gather inside the exported
file) calls this op; each format lowers it to its own native NMS that returns
indices (ONNX ``NonMaxSuppression``, TFLite ``NON_MAX_SUPPRESSION_V5``, Core ML
MIL ``non_maximum_suppression``), so the landmarks can follow the kept boxes.
The torch implementation here is the reference every lowering is tested against.

Semantics (what every lowering must reproduce):

* ``boxes`` (K, 4) float32 corners ``x1, y1, x2, y2``; ``scores`` (K,) float32.
* Candidates are visited by decreasing score; a candidate whose score is not
  strictly positive is never selected (the head gives masked candidates 0).
* A candidate is suppressed when its IoU with an already selected box is
  strictly greater than ``iou_threshold`` (plain continuous IoU, no +1).
* Returns ``indices`` (max_output,) int64: the selected candidates in
  selection order, then zeros; and ``count`` (1,) int64: how many are valid.

The head feeds strictly decreasing rank scores (ties are broken before the op),
so "by decreasing score" is unambiguous on every backend.
"""

from __future__ import annotations

import torch

OP_NAME = "featherface::nms"


@torch.library.custom_op(OP_NAME, mutates_args=())
def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
        max_output: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy NMS returning padded indices and the number selected (see the module docstring)."""
    order = torch.argsort(scores, descending=True, stable=True)
    selected: list[int] = []
    for index in order.tolist():
        if len(selected) == max_output:
            break
        if not scores[index] > 0:  # also NaN, which argsort puts first: skipped, never selected
            continue
        if selected and bool((box_iou(boxes[index:index + 1], boxes[selected]) > iou_threshold).any()):
            continue
        selected.append(index)
    indices = torch.zeros(max_output, dtype=torch.int64)
    indices[:len(selected)] = torch.tensor(selected, dtype=torch.int64)
    return indices, torch.tensor([len(selected)], dtype=torch.int64)


@nms.register_fake
def _nms_shapes(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
                max_output: int) -> tuple[torch.Tensor, torch.Tensor]:
    return boxes.new_empty((max_output,), dtype=torch.int64), boxes.new_empty((1,), dtype=torch.int64)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of corner boxes ``a`` (M, 4) and ``b`` (N, 4), shaped (M, N); continuous, no +1."""
    width = (torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp(min=0)
    height = (torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1], b[None, :, 1])).clamp(min=0)
    inter = width * height
    area_a = ((a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0))[:, None]
    area_b = ((b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0))[None, :]
    return inter / (area_a + area_b - inter).clamp(min=1e-12)
