"""The ``--end2end`` options every exporter that builds end-to-end files shares (a dataclass base)."""

from __future__ import annotations

from dataclasses import dataclass

from featherface_deploy.contract import End2EndSpec, end2end_setting_problems


@dataclass(frozen=True)
class End2EndOptions:
    """Decoding and NMS inside the file (:mod:`~featherface_deploy.exporters.end2end_head`).

    Attributes:
        end2end: Build the end-to-end file: RGB 0–255 input, ``detections`` and ``num_detections`` outputs.
        max_det: Rows of ``detections``.
        conf: The face probability a detection needs.
        nms_iou: The NMS IoU threshold.
        pre_nms_top_k: Candidates entering the NMS.
    """

    end2end: bool = False
    max_det: int = End2EndSpec.max_det
    conf: float = End2EndSpec.conf
    nms_iou: float = End2EndSpec.nms_iou
    pre_nms_top_k: int = End2EndSpec.pre_nms_top_k

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
