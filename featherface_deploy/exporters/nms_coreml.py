"""Core ML lowering of ``featherface::nms`` to MIL ``non_maximum_suppression`` (coremltools 9).

:func:`register` adds a torch-op converter (``register_torch_op``) for the
traced ``featherface::nms`` node. MIL's op differs from ours in its conventions,
and the converter neutralises each:

* **Box format**: MIL reads ``CENTER_SIZE_WIDTH_FIRST`` ``(cx, cy, w, h)``: the
  corners become ``x1 + w / 2, y1 + h / 2, x2 - x1, y2 - y1`` (coremltools' own
  ``torchvision::nms`` formula).
* **Score threshold**: the iOS15 op "rejects scores below" its threshold (strictness
  not specified) and the iOS17 op has none. Scores that are not strictly
  positive (0, negative, NaN) become −1 before the op, so either strictness of a
  threshold 0 keeps exactly the positive ones; on iOS17 the −1 candidates come
  after every positive one and are cut by the count.
* **IoU**: MIL suppresses at ``IoU > iou_threshold``, like ours.
* **Classes**: one score column, ``per_class_suppression=False``.
* **Outputs**: MIL pads ``indices`` with −1 and returns the count per batch
  (iOS15); ours pads with 0: ``maximum(indices, 0)`` (rows past the count are
  zero since the selected indices are ≥ 0). On iOS17 the count is the number of
  selected candidates with a positive score.

What remains different (see ``docs/design/nms-lowerings.md``): Core ML computes
the IoU from the centre form (rounding can move an IoU that sits exactly at the
threshold by an ulp), its tie order among equal scores is unspecified (the head
feeds strictly decreasing rank scores), and its handling of zero-area or NaN
boxes is not documented (the head zeroes non-finite candidates' scores).
"""

from __future__ import annotations

import numpy as np

from featherface_deploy.exporters import nms_op

TORCH_KIND = nms_op.OP_NAME
REJECTED_SCORE = -1.0
_registered = False


def register() -> None:
    """Registers the ``featherface::nms`` converter with coremltools' torch frontend (idempotent)."""
    global _registered
    if _registered:
        return
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs
    from coremltools.converters.mil.frontend.torch.torch_op_registry import register_torch_op

    @register_torch_op(torch_alias=[TORCH_KIND], override=True)
    def featherface_nms(context, node):
        boxes, scores, iou_threshold, max_output = _get_inputs(context, node, expected=4)
        indices, count = lower_nms(boxes, scores, float(iou_threshold.val), int(max_output.val))
        context.add(indices, torch_name=node.outputs[0])
        context.add(count, torch_name=node.outputs[1])

    _registered = True


def lower_nms(boxes, scores, iou_threshold: float, max_output: int):
    """MIL ops for ``featherface::nms`` on ``boxes`` (K, 4) corners and ``scores`` (K,) (see the module docstring).

    Returns:
        (indices (max_output,) int32 padded with 0, count (1,) int32) as MIL vars.
    """
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    x1, y1, x2, y2 = mb.split(x=boxes, num_splits=4, axis=-1)
    width, height = mb.sub(x=x2, y=x1), mb.sub(x=y2, y=y1)
    centre_size = mb.concat(values=[mb.add(x=x1, y=mb.real_div(x=width, y=2.0)),
                                    mb.add(x=y1, y=mb.real_div(x=height, y=2.0)), width, height], axis=-1)
    dtype = types.nptype_from_builtin(scores.dtype)
    rejected = np.array(REJECTED_SCORE, dtype=dtype)
    scores = mb.select(cond=mb.greater(x=scores, y=np.array(0, dtype=dtype)), a=scores, b=rejected)
    if _has_score_threshold():
        _, _, indices, count = mb.non_maximum_suppression(
            boxes=mb.expand_dims(x=centre_size, axes=[0]), scores=mb.expand_dims(x=scores, axes=[0, -1]),
            iou_threshold=np.array(iou_threshold, dtype=dtype), score_threshold=np.array(0, dtype=dtype),
            max_boxes=np.int32(max_output), per_class_suppression=False)
    else:
        _, kept_scores, indices = mb.non_maximum_suppression(
            boxes=mb.expand_dims(x=mb.transpose(x=centre_size, perm=[1, 0]), axes=[0]),
            scores=mb.expand_dims(x=scores, axes=[0, 1]),
            iou_threshold=np.array(iou_threshold, dtype=dtype), max_boxes=np.int32(max_output),
            per_class_suppression=False)
        positive = mb.greater(x=mb.squeeze(x=kept_scores, axes=[0, 1]), y=np.array(0, dtype=dtype))
        count = mb.reduce_sum(x=mb.cast(x=positive, dtype="int32"), axes=[0], keep_dims=True)
        rows = mb.range_1d(start=np.int32(0), end=np.int32(max_output), step=np.int32(1))
        indices = mb.select(cond=mb.less(x=rows, y=count), a=mb.squeeze(x=indices, axes=[0]), b=np.int32(-1))
        indices = mb.expand_dims(x=indices, axes=[0])
    indices = mb.maximum(x=mb.squeeze(x=indices, axes=[0]), y=np.int32(0))
    return indices, count


def _has_score_threshold() -> bool:
    """Whether the opset being built has the iOS15 ``non_maximum_suppression`` (score threshold, count output)."""
    from coremltools.converters.mil.mil.block import is_current_opset_version_compatible_with
    from coremltools import target

    return not is_current_opset_version_compatible_with(target.iOS17)


__all__ = ["REJECTED_SCORE", "lower_nms", "register"]
