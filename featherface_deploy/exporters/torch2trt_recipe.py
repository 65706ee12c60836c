"""Checkpoint → TensorRT build recipe: the ONNX the device's TensorRT needs, then the folder.

FP32/FP16: the ONNX export in the version's DCN lowering (``native``
``DeformConv`` from 10.1: onnx-tensorrt changelog "TensorRT 10.1 GA … Added support
for DeformConv"; ``portable`` before). INT8: the portable graph, since ``DeformConv``
is FP32/FP16 only (onnx-tensorrt ``docs/operators.md``), no INT8 kernel; the portable graph is
quantized in the TensorRT flavour
(:func:`~featherface_deploy.exporters.onnx2trt_int8.tensorrt_int8_options`); on
10.x/11.x the recipe builds that Q/DQ graph, on 8.x the float graph the
quantizer saw plus the calibration cache of the same scales.
:func:`~featherface_deploy.exporters.onnx2trt_recipe.write_recipe` writes the
folder. The pipeline then verifies the folder's ``model.onnx`` against PyTorch
with ONNX Runtime (on 8.x INT8 that is the float graph: its INT8 engine exists
only once the device has built it).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx

from featherface_deploy.calibration import CalibrationConfig, build_calibration_set
from featherface_deploy.contract import End2EndSpec
from featherface_deploy.errors import ExportError
from featherface_deploy.exporters.common import ExportContext, ExportResult, size_pair
from featherface_deploy.exporters.onnx2int8 import prepare_for_quantization, quantize_onnx
from featherface_deploy.exporters.onnx2trt_int8 import activation_scales, tensorrt_int8_options
from featherface_deploy.exporters.onnx2trt_recipe import MODEL_FILE, RecipeOptions, write_recipe
from featherface_deploy.exporters.torch2onnx import OnnxOptions
from featherface_deploy.exporters.torch2onnx import export as export_onnx
from featherface_deploy.formats import END2END_ROWS
from featherface_deploy.trt.versions import get_version


@dataclass(frozen=True)
class RecipeExportOptions:
    """The options of the ``trt-recipe`` rows (the precision is the row's).

    Attributes:
        imgsz: Input (height, width) of the ONNX; also the calibration size.
        trt_version: The device's TensorRT (JetPack 6.x = 10.3, JetPack 5 = 8.5, Jetson Nano = 8.2).
        workspace: Builder workspace, MiB.
        dla: Jetson DLA core (GPU fallback allowed), or ``None``.
        calib_dir: INT8: folder of calibration photos (required for INT8).
        calib_images: INT8: photos sampled from it.
        end2end: The recipe's ONNX is the end-to-end graph (decoding and NMS inside; TensorRT ≥ 8.5).
        max_det: End-to-end: rows of ``detections``.
        conf: End-to-end: the face probability a detection needs.
        nms_iou: End-to-end: the NMS IoU threshold.
        pre_nms_top_k: End-to-end: candidates entering the NMS (TensorRT: ≤ 3840, its TopK limit).
    """

    imgsz: int | tuple[int, int] = (640, 640)
    trt_version: str = "10.3"
    workspace: int = 2048
    dla: int | None = None
    calib_dir: str | Path | None = None
    calib_images: int = 100
    end2end: bool = False
    max_det: int = End2EndSpec.max_det
    conf: float = End2EndSpec.conf
    nms_iou: float = End2EndSpec.nms_iou
    pre_nms_top_k: int = End2EndSpec.pre_nms_top_k

    def onnx_options(self, dcn: str) -> OnnxOptions:
        """The ONNX export this recipe carries (the end-to-end graph when asked)."""
        return OnnxOptions(imgsz=self.imgsz, dcn=dcn, end2end=self.end2end, max_det=self.max_det, conf=self.conf,
                           nms_iou=self.nms_iou, pre_nms_top_k=self.pre_nms_top_k)

    def recipe(self, precision: str) -> RecipeOptions:
        """The :class:`RecipeOptions` of this version at ``precision``."""
        return RecipeOptions(get_version(self.trt_version), precision, self.workspace, self.dla)

    def validate(self, row) -> None:
        """Raises :class:`ExportError` for a build TensorRT cannot do, or INT8 without photos."""
        self.recipe(row.precision).validate()
        if self.end2end and row.precision == "int8":
            raise ExportError(f"--end2end is not available for --format {row.name} yet (the INT8 build would have "
                              f"to keep the decoding and NMS float); it applies to: {', '.join(END2END_ROWS)}")
        self.onnx_options("portable").validate()
        if row.precision == "int8" and self.calib_dir is None:
            raise ExportError("--int8 needs --calib-dir: a folder of photos like the deployment's")


def export(model, out_dir: Path, row, options: RecipeExportOptions, context: ExportContext) -> ExportResult:
    """Writes the recipe folder (``model.onnx`` + sidecar, ``build.sh``, README, the INT8 cache on 8.x)."""
    recipe = options.recipe(row.precision)
    version = recipe.version
    # DeformConv is FP32/FP16 only in onnx-tensorrt docs/operators.md: no INT8 kernel, so INT8 uses the portable graph
    dcn = "portable" if row.precision == "int8" else version.dcn
    with tempfile.TemporaryDirectory(prefix="featherface-trt-") as scratch:
        scratch = Path(scratch)
        onnx_options = options.onnx_options(dcn)
        onnx_options.validate()
        fp32 = export_onnx(model, scratch / "fp32.onnx", row, onnx_options, context)
        if row.precision != "int8":
            contract = fp32.contract.replace(precision=row.precision)
            write_recipe(fp32.path, out_dir, recipe, contract)
            return _result(out_dir)
        calib = build_calibration_set(Path(options.calib_dir), fp32.contract, CalibrationConfig(
            num_images=options.calib_images, input_size=size_pair(options.imgsz)))
        context.log(f"  calibration: {len(calib)} images from {options.calib_dir}; TensorRT flavour "
                    "(float biases, zero points 0)")
        int8 = quantize_onnx(fp32.path, scratch / "int8.onnx", calib, tensorrt_int8_options())
        if version.int8 == "qdq":
            write_recipe(int8.path, out_dir, recipe, int8.contract)
            return _result(out_dir)
        prepared = prepare_for_quantization(fp32.path, scratch / "prepared.onnx")  # the tensor names of the scales
        scales = activation_scales(onnx.load(str(int8.path)))
        context.log(f"  calibration cache: {len(scales)} tensors (the activations the Q/DQ flavour quantizes)")
        write_recipe(prepared, out_dir, recipe, int8.contract, calibration_scales=scales)
        return _result(out_dir)


def _result(out_dir: Path) -> ExportResult:
    from featherface_deploy.metadata.onnx import read_contract

    contract = read_contract(out_dir / MODEL_FILE)
    return ExportResult(Path(out_dir), contract, {}, {"tensorrt": contract.extra.get("tensorrt", {})})
