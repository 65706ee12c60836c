"""PyTorch → a ``.tflite`` that MediaPipe's stock ObjectDetector task runs as it is (Android, iOS, web, Python).

The graph (:class:`MediapipeGraph`) takes what the task feeds: NHWC float32
RGB 0–255 (the metadata declares mean 0, std 1, since the task refuses
per-channel normalisation), flips it to BGR and subtracts the per-channel mean
itself, runs the network and returns two outputs, in this order:

- ``location`` (1, N, 4 + 2K): box deltas reordered to the task's YXHW
  (dy, dx, dh, dw), then each keypoint's deltas as (y, x) — the task reads
  them in that order on its no-NMS path. K = 5 landmarks, or 7 with
  ``box_corners``: the decoded corners (x1, y1) and (x2, y2) re-encoded as
  keypoints of the same anchor, so apps get exact float boxes (the task's own
  boxes are truncated to integer pixels).
- ``score`` (1, N, 1): the face probability (``sigmoid_score = false``).

Built through the TFLite route (litert-torch, then ai-edge-quantizer for FP16
weights or INT8; INT8 keeps float input and outputs, since the task feeds
float32 and reads float or uint8 outputs only, and the adapter's own ops in
float, :data:`ADAPTER_SCOPE`). The metadata
(:mod:`featherface_deploy.metadata.mediapipe`) carries the registry's priors
as fixed anchors and the decoding options (x/y scale 1/variance[0], w/h scale
1/variance[1], exponential box size); our decode contract rides along under
its own key, so our LiteRT runtime opens the file raw.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from featherface_deploy.calibration import CalibrationConfig, build_calibration_set
from featherface_deploy.contract import DecodeContract
from featherface_deploy.errors import ExportError
from featherface_deploy.exporters.common import ExportContext, ExportResult, timed
from featherface_deploy.exporters.tflite_quantize import INPUT_NAME, quantize_fp16
from featherface_deploy.exporters.torch2tflite import (
    ConvertedModel, _require_litert_torch, build_contract, quantize_for_export)
from featherface_deploy.export_options import MediapipeOptions
from featherface_deploy.file_writing import atomic_write_bytes
from featherface_deploy.metadata.mediapipe import (
    LOCATION, SCORE, attach_task_metadata, decoding_options, detector_options, model_metadata)
from featherface_deploy.metadata.tflite import embed_contract
from featherface_deploy.models.deform_conv import set_dcn_lowering
from featherface_deploy.postprocess.mediapipe_layout import CONTRACT_KEY, LANDMARKS, task_input_nhwc
from featherface_deploy.postprocess.priors import generate_priors

if TYPE_CHECKING:
    from featherface_deploy.formats import Format

# The task's non-max suppression: fixed in its Python, Web, Android and iOS APIs.
TASK_NMS_IOU = 0.3
# INT8: the adapter's own ops (colour flip and mean in; the reorder, concatenation and box corners out) stay
# float, so the decode-related outputs are not squeezed onto one int8 grid shared by box and landmark deltas.
# Its top-level tensors are named "…MediapipeGraph;N" (the network's carry its module path after a "/").
ADAPTER_SCOPE = r"MediapipeGraph;|serving_default_(location|score)_output"


class MediapipeGraph(nn.Module):
    """RGB 0–255 NHWC in, (``location``, ``score``) in the task's layout out (see the module docstring).

    Args:
        model: The FeatherFace network (NCHW, BGR − mean in; loc, conf probabilities, landmarks out).
        contract: Its decode contract (mean, priors, variances).
        imgsz: (height, width) of the input.
        box_corners: Append the decoded corners as two keypoints.
    """

    def __init__(self, model: nn.Module, contract: DecodeContract, imgsz: tuple[int, int],
                 box_corners: bool = False) -> None:
        super().__init__()
        self.model, self.box_corners = model, box_corners
        self.variance = contract.priors.variance
        self.register_buffer("mean", torch.tensor(contract.mean_bgr, dtype=torch.float32))
        self.register_buffer("priors", torch.from_numpy(generate_priors(contract.priors, *imgsz).copy())[None])

    def forward(self, input: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: A002 - the signature's name
        """(1, H, W, 3) RGB 0–255 → ``{"location": (1, N, 4 + 2K), "score": (1, N, 1)}``."""
        red, green, blue = input[..., 0:1], input[..., 1:2], input[..., 2:3]
        bgr = torch.cat([blue - self.mean[0], green - self.mean[1], red - self.mean[2]], dim=-1)
        loc, conf, landmarks = self.model(bgr.permute(0, 3, 1, 2))
        parts = [loc[..., 1:2], loc[..., 0:1], loc[..., 3:4], loc[..., 2:3]]
        for k in range(LANDMARKS):
            parts += [landmarks[..., 2 * k + 1:2 * k + 2], landmarks[..., 2 * k:2 * k + 1]]
        if self.box_corners:
            parts += self._corner_keypoints(loc)
        return {LOCATION: torch.cat(parts, dim=-1), SCORE: conf[..., 1:2]}

    def _corner_keypoints(self, loc: torch.Tensor) -> list[torch.Tensor]:
        """The decoded corners (x1, y1), (x2, y2) as keypoint deltas: (corner − anchor centre) / (v0 · anchor size)."""
        centre_var, size_var = self.variance
        anchor_xy, anchor_wh = self.priors[..., 0:2], self.priors[..., 2:4]
        centre = anchor_xy + loc[..., 0:2] * centre_var * anchor_wh
        half = anchor_wh * torch.exp(loc[..., 2:4] * size_var) * 0.5
        parts = []
        for corner in (centre - half, centre + half):
            delta = (corner - anchor_xy) / (centre_var * anchor_wh)
            parts += [delta[..., 1:2], delta[..., 0:1]]
        return parts


def export(model: nn.Module, out_path: Path, row: Format, options: MediapipeOptions,
           context: ExportContext) -> ExportResult:
    """Writes the MediaPipe-task ``.tflite`` at the row's precision (metadata, label file, our contract).

    Raises:
        ExportError: A failed conversion or quantization, or priors the task cannot take.
        BackendNotInstalledError: litert-torch / ai-edge-quantizer / ai-edge-litert missing.
    """
    timings: dict[str, float] = {}
    contract = context.stamp(task_contract(context.model_name, options, row.precision))
    lowering, _ = options.dcn_choice()
    key = ("mediapipe-fp32-conversion", id(model), options.size, lowering, options.box_corners)
    converted = context.scratch.get(key)
    if converted is None:
        context.log(f"  converting {context.model_name} for MediaPipe's ObjectDetector with litert-torch "
                    f"({options.size[0]}x{options.size[1]}, {lowering} DCN"
                    f"{', box corners as keypoints' if options.box_corners else ''})…")
        converted = context.scratch[key] = convert_task_graph(model, contract, options)
    timings["convert"] = converted.seconds
    data, extra = converted.data, {}
    if row.precision == "fp16":
        data = timed(timings, "quantize", lambda: quantize_fp16(converted.data))
        extra = {"fp16": "float16 weights (FLOAT_CASTING), float32 compute"}
    elif row.precision == "int8":
        calib = timed(timings, "calibration_set", lambda: build_calibration_set(
            options.calib_dir, contract.replace(extra={}), CalibrationConfig(num_images=options.calib_images)))
        calib = dataclasses.replace(calib, inputs=task_input_nhwc(calib.inputs, contract.mean_bgr))
        context.log(f"  calibrating on {len(calib)} images (digest {calib.digest[:12]})…")
        adapter_float = dataclasses.replace(options, keep_float=(*options.keep_float, ADAPTER_SCOPE))
        data, extra = quantize_for_export(converted.data, calib, adapter_float, contract, context, timings)
        extra["calibration"] = {k: v for k, v in calib.describe().items() if k != "files"}
    contract = contract.replace(extra={**contract.extra, **extra})
    data = attach_task_metadata(embed_contract(data, contract), task_metadata(contract, options))
    atomic_write_bytes(out_path, data)
    return ExportResult(Path(out_path), contract, timings, {"size_bytes": len(data), **extra})


def task_contract(model_name: str, options: MediapipeOptions, precision: str) -> DecodeContract:
    """Our decode contract for the file: the TFLite one, marked as the MediaPipe-task layout.

    ``output_names`` point at ``location`` (box and landmarks) and ``score``; ``extra["mediapipe"]`` says how to
    map them back (:mod:`featherface_deploy.postprocess.mediapipe_layout`).
    """
    base = build_contract(model_name, options, precision)
    keypoints = LANDMARKS + (2 if options.box_corners else 0)
    layout = {"input": "NHWC float32 RGB 0-255 (BGR and mean in the graph)", "location": LOCATION, "score": SCORE,
              "box_order": "yxhw", "keypoint_order": "yx", "keypoints": keypoints,
              "box_corners": options.box_corners, "nms_iou": TASK_NMS_IOU}
    return base.replace(source_format="mediapipe", output_names=(LOCATION, SCORE, LOCATION),
                        extra={**base.extra, CONTRACT_KEY: layout})


def task_metadata(contract: DecodeContract, options: MediapipeOptions) -> bytes:
    """The ``TFLITE_METADATA`` flatbuffer: anchors = the registry's priors for the input size, in our order.

    Raises:
        ExportError: Priors the task's fixed anchors cannot hold (clipped priors, none at this size).
    """
    if contract.priors.clip:
        raise ExportError("MediaPipe's fixed anchors are not clipped: a checkpoint with clip=True priors "
                          "cannot be decoded by the task; export --format tflite instead")
    anchors = generate_priors(contract.priors, *options.size)
    if len(anchors) == 0:
        raise ExportError(f"no priors at {options.size[0]}x{options.size[1]}: choose a larger --imgsz")
    keypoints = contract.extra[CONTRACT_KEY]["keypoints"]
    decoding = decoding_options(contract.priors.variance, len(anchors), keypoints)
    description = (f"FeatherFace face detector ({contract.model_name}, {contract.precision}) for MediaPipe's "
                   f"ObjectDetector; keypoints: 5 landmarks (image-left eye, image-right eye, nose, left and right "
                   f"mouth corners)" + ("; then the box corners (x1, y1), (x2, y2)" if keypoints > LANDMARKS else ""))
    return model_metadata(contract.model_name, description, detector_options(anchors, decoding), options.size)


def convert_task_graph(model: nn.Module, contract: DecodeContract, options: MediapipeOptions) -> ConvertedModel:
    """Converts :class:`MediapipeGraph` around ``model`` to an FP32 flatbuffer (no metadata).

    Raises:
        ExportError: The conversion failed.
    """
    litert_torch = _require_litert_torch()
    portable = MediapipeGraph(_portable(model, options), contract, options.size, options.box_corners).eval()
    example = torch.zeros((1, *options.size, 3))
    started = time.perf_counter()
    try:
        edge = litert_torch.convert(portable, sample_kwargs={INPUT_NAME: example})
        data = bytes(edge.model_content())
    except Exception as error:  # the converter raises many unrelated types; keep the cause chained
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"litert_torch.convert failed: {first_line}") from error
    return ConvertedModel(data, contract.model_name, options.size, "NHWC", time.perf_counter() - started)


def _portable(model: nn.Module, options: MediapipeOptions) -> nn.Module:
    import copy

    portable = copy.deepcopy(model).eval()
    set_dcn_lowering(portable, options.dcn_choice()[0])  # TFLite has no grid_sample
    return portable


__all__ = ["MediapipeGraph", "MediapipeOptions", "TASK_NMS_IOU", "export", "task_contract", "task_metadata"]
