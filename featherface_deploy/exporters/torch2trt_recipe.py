"""Checkpoint → TensorRT build recipe: the ONNX the device's TensorRT needs, then the folder.

FP32/FP16: the ONNX export in the version's DCN lowering (``native``
``DeformConv`` from 10.1: onnx-tensorrt changelog "TensorRT 10.1 GA … Added support
for DeformConv"; ``portable`` before). INT8: the portable graph, since ``DeformConv``
is FP32/FP16 only (onnx-tensorrt ``docs/operators.md``), no INT8 kernel; the portable graph is
quantized in the TensorRT flavour
(:func:`~featherface_deploy.exporters.onnx2trt_int8.tensorrt_int8_options`); on
10.x/11.x the recipe builds that Q/DQ graph, on 8.x the float graph the
quantizer saw plus the calibration cache of the same scales. ``--end2end``: the end-to-end graph
(FP16/INT8: its decoding and NMS layers pinned to FP32 in ``build.sh``); at INT8 the raw network is
quantized and the float adapter and tail composed around it (10.x/11.x only).
:func:`~featherface_deploy.exporters.onnx2trt_recipe.write_recipe` writes the
folder. The pipeline then verifies the folder's ``model.onnx`` against PyTorch
with ONNX Runtime (on 8.x INT8 that is the float graph: its INT8 engine exists
only once the device has built it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx

from featherface_deploy.calibration import CalibrationConfig, build_calibration_set
from featherface_deploy.exporters.common import ExportContext, ExportResult, size_pair
from featherface_deploy.exporters.onnx_quantize import prepare_for_quantization, quantize_onnx
from featherface_deploy.exporters.onnx2int8 import compose_file
from featherface_deploy.exporters.onnx2trt_int8 import activation_scales, tensorrt_int8_options
from featherface_deploy.exporters.onnx2trt_recipe import MODEL_FILE, write_recipe
from featherface_deploy.export_options import RecipeExportOptions
from featherface_deploy.formats import get_format
from featherface_deploy.exporters.torch2onnx import export as export_onnx


def export(model, out_dir: Path, row, options: RecipeExportOptions, context: ExportContext) -> ExportResult:
    """Writes the recipe folder (``model.onnx`` + sidecar, ``build.sh``, README, the INT8 cache on 8.x)."""
    recipe = options.recipe(row.precision)
    version = recipe.version
    # DeformConv is FP32/FP16 only in onnx-tensorrt docs/operators.md: no INT8 kernel, so INT8 uses the portable graph
    dcn = "portable" if row.precision == "int8" else version.dcn
    with tempfile.TemporaryDirectory(prefix="featherface-trt-") as scratch:
        scratch = Path(scratch)
        # INT8 end to end: the raw network is quantized, then the float adapter and tail are composed around it
        onnx_options = options.onnx_options(dcn, end2end=options.end2end and row.precision != "int8")
        onnx_options.validate(get_format("onnx"))
        fp32 = export_onnx(model, scratch / "fp32.onnx", row, onnx_options, context)
        if row.precision != "int8":
            contract = fp32.contract.replace(precision=row.precision)
            write_recipe(fp32.path, out_dir, recipe, contract, run_onnx=context.run_onnx)
            return _result(out_dir)
        calib = build_calibration_set(Path(options.calib_dir), fp32.contract, CalibrationConfig(
            num_images=options.calib_images, input_size=size_pair(options.imgsz)))
        context.log(f"  calibration: {len(calib)} images from {options.calib_dir}; TensorRT flavour "
                    "(float biases, zero points 0)")
        int8 = quantize_onnx(fp32.path, scratch / "int8.onnx", calib, tensorrt_int8_options())
        if version.int8 == "qdq":
            spec = options.end2end_spec()
            contract = int8.contract if spec is None else compose_file(int8.path, int8.contract, spec)
            write_recipe(int8.path, out_dir, recipe, contract, run_onnx=context.run_onnx)
            return _result(out_dir)
        prepared = prepare_for_quantization(fp32.path, scratch / "prepared.onnx")  # the tensor names of the scales
        scales = activation_scales(onnx.load(str(int8.path)))
        context.log(f"  calibration cache: {len(scales)} tensors (the activations the Q/DQ flavour quantizes)")
        write_recipe(prepared, out_dir, recipe, int8.contract, calibration_scales=scales,
                     run_onnx=context.run_onnx)
        return _result(out_dir)


def _result(out_dir: Path) -> ExportResult:
    from featherface_deploy.metadata.onnx import read_contract

    contract = read_contract(out_dir / MODEL_FILE)
    return ExportResult(Path(out_dir), contract, {}, {"tensorrt": contract.extra.get("tensorrt", {})})
