"""What every end-to-end runtime shares: the letterbox in, the detections back to image pixels, the thresholds.

An end-to-end file (contract ``postprocess: "in-graph"``) takes an RGB 0–255 image in its
layout and returns ``detections`` (1, max_det, 15) and ``num_detections`` (1,). A backend
subclasses :class:`InGraphRuntime` and writes only :meth:`InGraphRuntime._run`; the letterbox,
the mapping back and the thresholds are here, in numpy, for ONNX, TFLite and Core ML alike.

**Letterbox** (the arithmetic the docs give app authors): the image is resized to fit the
input with its aspect ratio kept (:func:`~featherface_deploy.postprocess.fit_image`: ``scale =
min(H / h, W / w)``, resized to ``round(h·scale) × round(w·scale)``), put at the top-left of
a canvas filled with the mean colour (``End2EndSpec.pad_rgb``, which the graph turns into 0,
as the numpy preprocessing pads), and a box maps back by dividing x by ``resized_w / w`` and y
by ``resized_h / h`` (:class:`~featherface_deploy.postprocess.Transform`).

**Thresholds**: decoding and NMS ran in the graph with the settings baked at export. A
caller's ``PostprocessConfig`` may only tighten them where that is exact: a higher
``conf_threshold`` (filtered here; greedy NMS visits better scores first, so this equals
running the graph with it) and a smaller ``keep_top_k`` (truncated). A lower confidence, a
larger ``keep_top_k``, or another NMS IoU or pre-NMS top-k cannot be honoured without
re-exporting and are refused.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from featherface_deploy.contract import DETECTION_WIDTH, DecodeContract
from featherface_deploy.errors import ContractError, InputError
from featherface_deploy.postprocess import Detections, PostprocessConfig, fit_image
from featherface_deploy.postprocess.preprocess import Transform
from featherface_deploy.runtimes.base import DetectingRuntime, engine_call


def baked_config(contract: DecodeContract) -> PostprocessConfig:
    """The thresholds an end-to-end file was exported with, as a ``PostprocessConfig``."""
    spec = contract.end2end
    return PostprocessConfig(conf_threshold=spec.conf, nms_iou=spec.nms_iou, top_k=spec.pre_nms_top_k,
                             keep_top_k=spec.max_det)


def check_config(contract: DecodeContract, config: PostprocessConfig) -> None:
    """Refuses thresholds an end-to-end file cannot honour (see the module docstring).

    Raises:
        InputError: Names the setting, the baked value and the fix.
    """
    spec = contract.end2end
    problems = []
    if not config.conf_threshold >= spec.conf:
        problems.append(f"conf_threshold {config.conf_threshold:g} is below the {spec.conf:g} baked into the file "
                        "(only a higher one can be applied)")
    if config.nms_iou != spec.nms_iou:
        problems.append(f"nms_iou {config.nms_iou:g} differs from the {spec.nms_iou:g} the file's NMS ran with")
    if config.top_k != spec.pre_nms_top_k:
        problems.append(f"top_k {config.top_k} differs from the file's pre-NMS top-k {spec.pre_nms_top_k}")
    if config.keep_top_k > spec.max_det:
        problems.append(f"keep_top_k {config.keep_top_k} is above the file's max_det {spec.max_det}")
    if problems:
        raise InputError("post-processing ran inside this end-to-end model: " + "; ".join(problems)
                         + ". Re-export with --conf/--nms-iou/--pre-nms-top-k/--max-det, or start from "
                         "runtime.default_config() and only raise conf_threshold or lower keep_top_k")


def letterbox(image: np.ndarray, contract: DecodeContract) -> tuple[np.ndarray, Transform]:
    """Fits a BGR uint8 image into the model's input as the end-to-end file takes it.

    Returns:
        The (1, 3, H, W) or (1, H, W, 3) float32 RGB 0–255 tensor (mean-colour padding) and its transform.
    """
    resized, transform = fit_image(image, contract)
    height, width = contract.input_size
    canvas = np.empty((height, width, 3), dtype=np.float32)
    canvas[...] = np.asarray(contract.end2end.pad_rgb, dtype=np.float32)
    canvas[:resized.shape[0], :resized.shape[1]] = resized[:, :, ::-1]
    if contract.input_layout == "NCHW":
        canvas = canvas.transpose(2, 0, 1)
    return np.ascontiguousarray(canvas[None]), transform


def to_detections(rows: np.ndarray, count: int, transform: Transform,
                  config: PostprocessConfig) -> Detections:
    """The first ``count`` rows of ``detections`` as :class:`Detections` in original image pixels.

    Raises:
        ContractError: ``count`` outside [0, rows] (the file does not produce what its contract says).
    """
    if not 0 <= count <= len(rows):
        raise ContractError(f"num_detections {count} is outside [0, {len(rows)}]: the model does not follow "
                            "its end-to-end contract")
    rows = rows[:count]
    rows = rows[rows[:, 4] >= config.conf_threshold][:config.keep_top_k]
    scale = np.array([transform.scale_x, transform.scale_y], dtype=np.float32)
    return Detections(boxes=(rows[:, :4] / np.tile(scale, 2)).astype(np.float32),
                      scores=rows[:, 4].astype(np.float32),
                      landmarks=(rows[:, 5:].reshape(-1, 5, 2) / scale).astype(np.float32))


class InGraphRuntime(DetectingRuntime):
    """An end-to-end file's runtime: letterbox, :meth:`_run`, rows back to image pixels.

    Subclasses open the file, set ``contract`` (checked by :meth:`check_contract`) and implement :meth:`_run`.
    """

    postprocess = "in-graph"

    @staticmethod
    def check_contract(contract: DecodeContract, source: str) -> None:
        """Refuses a contract that is not an end-to-end one with a fixed input.

        Raises:
            ContractError: The message names the file.
        """
        if not contract.in_graph or contract.end2end is None or contract.input_size is None:
            raise ContractError(f"{source}: its contract does not describe an end-to-end model "
                                "(postprocess 'in-graph' with end2end settings and a fixed input size)")

    def default_config(self) -> PostprocessConfig:
        """The settings baked into the file."""
        return baked_config(self.contract)

    def detect(self, image: np.ndarray, config: PostprocessConfig | None = None) -> Detections:
        """Detects faces in one BGR uint8 image (see the module docstring for thresholds).

        Raises:
            InputError: Thresholds the file cannot honour, or an image that is not H×W×3 uint8.
            ContractError: The outputs do not match the contract.
        """
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InputError("detect takes an H×W×3 uint8 BGR image (use load_image)")
        config = self.default_config() if config is None else config
        check_config(self.contract, config)
        tensor, transform = letterbox(image, self.contract)
        rows, count = engine_call(self, self._run, tensor)
        spec = self.contract.end2end
        if rows.shape != (1, spec.max_det, DETECTION_WIDTH) or np.size(count) != 1:
            raise ContractError(f"{self.name}: outputs shaped {rows.shape} and {np.shape(count)}, expected "
                                f"(1, {spec.max_det}, {DETECTION_WIDTH}) and (1,) per the end-to-end contract")
        return to_detections(np.asarray(rows[0], dtype=np.float32), int(np.asarray(count).reshape(-1)[0]),
                             transform, config)

    @abstractmethod
    def _run(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Runs the file on a letterboxed tensor; returns ``detections`` and ``num_detections``."""
