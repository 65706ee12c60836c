"""Checkpoint → TensorRT build recipe: the ONNX the version needs, checked against PyTorch, then the folder.

FP32/FP16: the ONNX export in the version's DCN lowering (``native``
``DeformConv`` from 10.1, ``portable`` before), parity-checked by
:func:`~featherface_deploy.exporters.torch2onnx.export_onnx`. INT8: the portable
graph quantized in the TensorRT flavour
(:func:`~featherface_deploy.exporters.onnx2trt_int8.tensorrt_int8_options`),
parity-checked with the INT8 tolerances; on 10.x/11.x the recipe builds that
Q/DQ graph, on 8.x the float graph the quantizer saw plus the calibration cache
of the same scales. :func:`~featherface_deploy.exporters.onnx2trt_recipe.write_recipe`
then writes the folder.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from featherface_deploy.calibration import CalibrationConfig, build_calibration_set
from featherface_deploy.errors import ExportError
from featherface_deploy.exporters.onnx2int8 import prepare_for_quantization, quantize_onnx, read_contract
from featherface_deploy.exporters.onnx2trt_int8 import activation_scales, tensorrt_int8_options
from featherface_deploy.exporters.onnx2trt_recipe import RecipeOptions, write_recipe
from featherface_deploy.exporters.parity import Tolerances, check_parity
from featherface_deploy.exporters.torch2onnx import export_onnx

import onnx  # noqa: E402


def export_trt_recipe(checkpoint: str | Path, out_dir: str | Path, options: RecipeOptions,
                      imgsz: tuple[int, int] = (640, 640), calib_dir: str | Path | None = None,
                      calib_images: int = 100, parity_images=(), architecture: str | None = None,
                      log: Callable[[str], None] = print) -> Path:
    """Writes the recipe folder for ``checkpoint``.

    Raises:
        ExportError: INT8 without ``calib_dir``, or any failed step.
        ParityError: The ONNX disagrees with PyTorch; nothing is written.
    """
    version = options.version
    options.validate()
    if options.precision == "int8" and calib_dir is None:
        raise ExportError("--int8 needs --calib-dir: a folder of photos like the deployment's")
    with tempfile.TemporaryDirectory(prefix="featherface-trt-") as scratch:
        scratch = Path(scratch)
        dcn = "portable" if options.precision == "int8" else version.dcn  # DeformConv has no INT8 kernel
        fp32 = export_onnx(checkpoint, scratch / "fp32.onnx", imgsz=imgsz, opset=19 if dcn == "native" else 18,
                           dcn=dcn, parity_images=list(parity_images), architecture=architecture, log=log)
        if options.precision != "int8":
            contract = fp32.contract.replace(precision=options.precision)
            return write_recipe(fp32.path, out_dir, options, contract)
        contract = read_contract(fp32.path)
        calib = build_calibration_set(calib_dir, contract, CalibrationConfig(num_images=calib_images,
                                                                            input_size=imgsz))
        log(f"calibration: {len(calib)} images from {calib_dir}; TensorRT flavour (float biases, zero points 0)")
        int8 = quantize_onnx(fp32.path, scratch / "int8.onnx", calib, options=tensorrt_int8_options())
        _check_int8_parity(checkpoint, int8.path, parity_images, architecture, log)
        if version.int8 == "qdq":
            return write_recipe(int8.path, out_dir, options, int8.contract)
        prepared = prepare_for_quantization(fp32.path, scratch / "prepared.onnx")  # the tensor names of the scales
        scales = activation_scales(onnx.load(str(int8.path)))
        log(f"  calibration cache: {len(scales)} tensors (the activations the Q/DQ flavour quantizes)")
        return write_recipe(prepared, out_dir, options, int8.contract, calibration_scales=scales)


def _check_int8_parity(checkpoint, path: Path, images, architecture, log) -> None:
    from featherface_deploy.models import load_model
    from featherface_deploy.runtimes.ort_runtime import OrtRuntime
    from featherface_deploy.runtimes.torch_runtime import TorchRuntime

    reference = TorchRuntime(load_model(checkpoint, architecture).model)
    report = check_parity(OrtRuntime(path), reference, list(images), Tolerances.int8())
    log(report.format())
