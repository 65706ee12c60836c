"""The end-to-end head: decoding, NMS and the landmark gather appended after the network, in torch.

:class:`End2EndModel` wraps a FeatherFace model so the exported file takes the
image as apps hold it and returns finished detections:

1. **Input adapter**: RGB, 0–255 float32, NCHW (ONNX) or NHWC (TFLite); the
   flip to BGR and the per-channel mean are done in the graph (slices, a
   concatenation and a subtraction: exact for 0–255 values).
2. The network; its face probability ``conf[..., 1]`` (the model's own softmax).
3. **Mask**: a candidate needs ``score >= conf`` (NaN fails it).
4. **Pre-NMS top-k** on the masked score (ONNX ``TopK`` puts the lower index first
   on ties, the numpy path's stable sort).
5. **Decode** the k candidates with the registry's priors as constants (the numpy
   formulas of :mod:`featherface_deploy.postprocess.decode`, normalised, then × the
   input size), and drop any with a non-finite box or landmark (zeroed, never selected).
6. **Rank scores**: ``(k - i) / k`` for the i-th valid candidate, 0 for masked ones:
   strictly decreasing, so every backend's NMS visits candidates in the same order
   whatever ties the real scores have (INT8 scores tie often).
7. ``torch.ops.featherface.nms`` (:mod:`~featherface_deploy.exporters.nms_op`), lowered
   by each format to its native NMS returning indices.
8. **Gather** boxes, real scores and landmarks of the kept candidates; rows past the
   count are zero. Outputs ``detections`` (1, max_det, 15) and ``num_detections`` (1,) int32.

Everything after the network is float32 whatever the file's precision: the FP16 and
INT8 exporters keep the head's nodes float (its torch scope is ``tail``; in ONNX, the
nodes downstream of :attr:`End2EndSpec.raw_tensors`).

A verification build (``raw_outputs=True``) also returns the network's raw ``loc``,
``conf`` and ``landmarks``: the exporters write that graph and then drop the three
extra outputs, so verification can expose them again on the very same graph.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from featherface_deploy.contract import End2EndSpec, PriorConfig
from featherface_deploy.errors import ExportError
from featherface_deploy.exporters import nms_op  # noqa: F401  (registers torch.ops.featherface.nms)
from featherface_deploy.postprocess.priors import generate_priors

LAYOUTS = ("NCHW", "NHWC")


class End2EndTail(nn.Module):
    """Raw outputs → padded detections (steps 3–8 of the module docstring); float32 throughout."""

    def __init__(self, priors: PriorConfig, input_size: tuple[int, int], spec: End2EndSpec) -> None:
        super().__init__()
        height, width = input_size
        table = generate_priors(priors, height, width)
        self.top_k = min(spec.pre_nms_top_k, len(table))
        self.spec = spec
        self.variance = priors.variance
        self.register_buffer("priors", torch.from_numpy(np.array(table, dtype=np.float32)), persistent=False)
        self.register_buffer("scale", torch.tensor([width, height], dtype=torch.float32), persistent=False)
        # (k - i) / k: strictly decreasing in (0, 1], exact distinct float32 values for any k here.
        rank = (self.top_k - np.arange(self.top_k, dtype=np.float64)) / self.top_k
        self.register_buffer("rank", torch.from_numpy(rank.astype(np.float32)), persistent=False)
        self.register_buffer("rows", torch.arange(spec.max_det, dtype=torch.int64), persistent=False)

    def forward(self, loc: torch.Tensor, conf: torch.Tensor, landmarks: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, N, 4), (1, N, 2) probabilities, (1, N, 10) → detections (1, max_det, 15), num_detections (1,) int32."""
        loc, landmarks = loc[0].float(), landmarks[0].float()
        score = conf[0, :, 1].float()
        masked = torch.where(score >= self.spec.conf, score, torch.full_like(score, -1.0))
        top_scores, index = torch.topk(masked, self.top_k)
        priors = self.priors[index]
        centre = priors[:, :2] + loc[index, :2] * self.variance[0] * priors[:, 2:]
        size = priors[:, 2:] * torch.exp(loc[index, 2:] * self.variance[1])
        boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1) * self.scale.repeat(2)
        points = (priors[:, None, :2] + landmarks[index].reshape(-1, 5, 2) * self.variance[0] * priors[:, None, 2:])
        points = (points * self.scale).reshape(-1, 10)
        valid = (top_scores >= self.spec.conf) & torch.isfinite(boxes).all(dim=1) & torch.isfinite(points).all(dim=1)
        boxes = torch.where(valid[:, None], boxes, torch.zeros_like(boxes))
        rank = torch.where(valid, self.rank, torch.zeros_like(self.rank))
        keep, count = torch.ops.featherface.nms(boxes, rank, float(self.spec.nms_iou), int(self.spec.max_det))
        rows = torch.cat([boxes[keep], top_scores[keep][:, None], points[keep]], dim=1)
        rows = torch.where((self.rows < count)[:, None], rows, torch.zeros_like(rows))
        return rows[None], count.to(torch.int32)


class End2EndModel(nn.Module):
    """A FeatherFace model with its input adapter and :class:`End2EndTail` (see the module docstring).

    Args:
        model: The network, returning ``loc``, ``conf`` (probabilities) and ``landmarks``.
        priors: The registry's prior layout of the model.
        mean_bgr: The per-channel mean the network was trained with (B, G, R).
        input_size: (height, width) of the fixed input.
        spec: The end-to-end settings (``max_det``, ``conf``, ``nms_iou``, ``pre_nms_top_k``).
        layout: ``NCHW`` (ONNX, Core ML) or ``NHWC`` (TFLite) input.
        raw_outputs: Also return the raw ``loc``, ``conf``, ``landmarks`` (the verification build).

    Raises:
        ExportError: An unknown layout or invalid settings.
    """

    def __init__(self, model: nn.Module, priors: PriorConfig, mean_bgr: tuple[float, float, float],
                 input_size: tuple[int, int], spec: End2EndSpec, layout: str = "NCHW",
                 raw_outputs: bool = False) -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise ExportError(f"unknown input layout '{layout}'; choose one of: {', '.join(LAYOUTS)}")
        problems = spec.problems()
        if problems:
            raise ExportError("; ".join(problems))
        self.model = model
        self.layout = layout
        self.raw_outputs = raw_outputs
        self.register_buffer("mean_bgr", torch.tensor(mean_bgr, dtype=torch.float32).reshape(1, 3, 1, 1),
                             persistent=False)
        self.tail = End2EndTail(priors, input_size, spec)

    def forward(self, image: torch.Tensor):
        """RGB 0–255 image (1, 3, H, W) or (1, H, W, 3) → ``detections``, ``num_detections`` [, raw outputs]."""
        if self.layout == "NHWC":
            image = image.permute(0, 3, 1, 2)
        bgr = torch.cat([image[:, 2:3], image[:, 1:2], image[:, 0:1]], dim=1) - self.mean_bgr
        loc, conf, landmarks = self.model(bgr)
        detections, count = self.tail(loc, conf, landmarks)
        if self.raw_outputs:
            return detections, count, loc, conf, landmarks
        return detections, count


def end2end_model(model: nn.Module, contract, spec: End2EndSpec, layout: str = "NCHW",
                  raw_outputs: bool = False) -> End2EndModel:
    """:class:`End2EndModel` for ``model`` with the priors, mean and input size of its decode ``contract``.

    Raises:
        ExportError: The contract has no fixed input size (end-to-end files have one: the priors are constants).
    """
    if contract.input_size is None:
        raise ExportError("an end-to-end model needs a fixed input size (its priors are constants): "
                          "drop --dynamic / flexible sizes")
    return End2EndModel(model, contract.priors, contract.mean_bgr, tuple(contract.input_size), spec, layout,
                        raw_outputs).eval()
