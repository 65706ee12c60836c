"""The ``--end2end`` options every exporter that builds end-to-end files shares (a dataclass base).

Declared once (:class:`~featherface_deploy.option_fields.ExportOption`): the rows whose options class derives
from :class:`End2EndOptions` take them, and ``export`` offers them as flags.
"""

from __future__ import annotations

from dataclasses import dataclass

from featherface_deploy.contract import End2EndSpec, end2end_setting_problems
from featherface_deploy.option_fields import ExportOption

END2END = ExportOption("onnx, tflite, trt-recipe: decoding and NMS inside the file: RGB 0–255 input, "
                       "`detections` and `num_detections` outputs", kind="flag", default=False)
MAX_DET = ExportOption("--end2end: rows of `detections` (the most faces one image returns)", value_type=int,
                       default=End2EndSpec.max_det)
CONF = ExportOption("--end2end: the face probability a detection needs", value_type=float,
                    default=End2EndSpec.conf)
NMS_IOU = ExportOption("--end2end: the NMS IoU threshold", value_type=float, default=End2EndSpec.nms_iou)
PRE_NMS_TOP_K = ExportOption("--end2end: candidates entering the NMS", value_type=int,
                             default=End2EndSpec.pre_nms_top_k)


@dataclass(frozen=True)
class End2EndOptions:
    """Decoding and NMS inside the file (:mod:`~featherface_deploy.exporters.end2end_head`).

    Attributes:
        end2end: Decoding and NMS inside the file (:mod:`~featherface_deploy.exporters.end2end_head`):
            RGB 0–255 input, ``detections`` and ``num_detections`` outputs.
        max_det: End-to-end: rows of ``detections``.
        conf: End-to-end: the face probability a detection needs.
        nms_iou: End-to-end: the NMS IoU threshold.
        pre_nms_top_k: End-to-end: candidates entering the NMS (TensorRT: ≤ 3840, its TopK limit).
    """

    end2end: bool = END2END.field()
    max_det: int = MAX_DET.field()
    conf: float = CONF.field()
    nms_iou: float = NMS_IOU.field()
    pre_nms_top_k: int = PRE_NMS_TOP_K.field()

    def end2end_problems(self) -> list[str]:
        """What makes the end-to-end settings unusable (empty when sound, or when ``end2end`` is off)."""
        if not self.end2end:
            return []
        return end2end_setting_problems(self.max_det, self.conf, self.nms_iou, self.pre_nms_top_k)

    def end2end_spec(self) -> End2EndSpec | None:
        """The end-to-end settings, or ``None`` for a raw-output export."""
        if not self.end2end:
            return None
        return End2EndSpec(max_det=self.max_det, conf=float(self.conf), nms_iou=float(self.nms_iou),
                           pre_nms_top_k=self.pre_nms_top_k)
