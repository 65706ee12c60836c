"""PyTorch → TFLite (FP32, FP16, INT8) with litert-torch and ai-edge-quantizer; no TensorFlow.

One ``litert_torch.convert`` produces the FP32 flatbuffer (the slow step, about
a minute for V1); FP16 and INT8 are derived from it by ai-edge-quantizer in
seconds, so :func:`convert_fp32` can be reused for every precision.

- **FP32**: the model with its DCN in a plain-op lowering (TFLite has no
  ``grid_sample``): by default ``gather_float``, whose sampling arithmetic
  XNNPACK takes all but the one cast and row lookup of (the fastest measured,
  :mod:`~featherface_deploy.exporters.dcn_choice`), or ``gather``, wrapped so the signature has
  one input ``input`` (``NHWC`` by default, what Android apps feed; ``NCHW``
  on request) and outputs named ``loc``, ``conf``, ``landmarks``. The BiFPN's
  zero padding stays a separate ``PAD``/``CONCATENATION`` before a VALID
  ``MAX_POOL_2D`` (never folded into the pool's −inf padding).
- **FP16**: weights cast to float16 (``FLOAT_CASTING``), compute in float32.
- **INT8**: static int8 weights and activations calibrated on the shared
  calibration set (:mod:`featherface_deploy.calibration`), int8 input and
  outputs (full integer) unless ``float_io``. ``LEAKY_RELU`` is first rewritten
  to ``MAXIMUM(x, MUL(x, 0.1))`` (exact; quantizable, see
  :mod:`~featherface_deploy.exporters.tflite_graph`). The DCN sampling path
  (coordinates, floor, clamps, bilinear weights, gather) is kept float: on an
  int8 grid the sample positions move by a large fraction of a pixel. Its
  convolutions (offsets, masks, projection) stay int8. More ops can be kept
  float with ``keep_float`` (scope regexes over output tensor names). The result's
  detection agreement with the FP32 file is measured on the calibration photos and,
  when it falls short, module groups are kept float until it is met
  (:mod:`~featherface_deploy.exporters.tflite_int8_search`; ``search=False`` skips both).

Every export embeds the decode contract in the TFLite metadata
(:mod:`featherface_deploy.metadata.tflite`); the pipeline then checks the file
against PyTorch (FP32 tight, FP16 looser, INT8 after decode) before moving it
into place with its sidecar.
"""

from __future__ import annotations

import copy
import platform
import time
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

import featherface_deploy
from featherface_deploy.calibration import CalibrationConfig, CalibrationSet, build_calibration_set
from featherface_deploy.contract import OUTPUT_ROLES, DecodeContract, End2EndSpec
from featherface_deploy.errors import BackendNotInstalledError, ExportError, first_line
from featherface_deploy.exporters import nms_tflite
from featherface_deploy.exporters.common import ExportContext, ExportResult, require, timed
from featherface_deploy.exporters.dcn_choice import FASTEST
from featherface_deploy.exporters.end2end_head import end2end_model
from featherface_deploy.exporters.tflite_graph import drop_outputs
from featherface_deploy.exporters.tflite_int8_search import plain_facts, quantize_checked
from featherface_deploy.exporters.tflite_quantize import INPUT_NAME, SIGNATURE, quantize_fp16, quantize_int8
from featherface_deploy.export_options import SIZE_DIVISOR, TFLITE_AGREEMENT_THRESHOLD, TfliteOptions
from featherface_deploy.file_writing import atomic_write_bytes
from featherface_deploy.metadata.tflite import embed_contract
from featherface_deploy.models.deform_conv import set_dcn_lowering
from featherface_deploy.models.registry import base_contract

if TYPE_CHECKING:
    from featherface_deploy.formats import Format

PACKAGES = ("torch", "litert-torch", "ai-edge-quantizer", "ai-edge-litert")



@dataclass(frozen=True)
class ConvertedModel:
    """An FP32 flatbuffer straight from litert-torch (no metadata yet), reusable for every precision."""

    data: bytes
    model_name: str
    imgsz: tuple[int, int]
    input_layout: str
    seconds: float


def export(model: nn.Module, out_path: Path, row: Format, options: TfliteOptions,
           context: ExportContext) -> ExportResult:
    """Writes a FeatherFace model as TFLite at the row's precision, the decode contract in its metadata.

    The FP32 conversion is kept in ``context.scratch`` (by model, size and layout), so the three
    rows of one run convert once.

    Returns:
        The :class:`ExportResult` (facts: ``size_bytes``, and the INT8 record).

    Raises:
        ExportError: A failed conversion or quantization.
        BackendNotInstalledError: litert-torch / ai-edge-quantizer / ai-edge-litert missing.
    """
    timings: dict[str, float] = {}
    lowering, _ = options.dcn_choice()
    spec = options.end2end_spec()
    key = scratch_key(model, options.size, options.input_layout, lowering, spec)
    converted = context.scratch.get(key)
    if converted is None:
        context.log(f"  converting {context.model_name} with litert-torch ({options.input_layout} "
                    f"{options.size[0]}x{options.size[1]}, {lowering} DCN{', end-to-end' if spec else ''})…")
        converted = context.scratch[key] = convert_fp32(model, options.size, options.input_layout,
                                                        context.model_name, lowering, spec)
        context.log(f"  litert_torch.convert: {converted.seconds:.1f} s, {len(converted.data) / 1e6:.2f} MB")
    timings["convert"] = converted.seconds  # also when reused: the cost of making this file from scratch
    contract = context.stamp(build_contract(context.model_name, options, row.precision))
    data, extra = converted.data, {}
    if row.precision == "fp16":
        data = timed(timings, "quantize", lambda: quantize_fp16(converted.data, spec is not None))
        extra = {"fp16": "float16 weights (FLOAT_CASTING), float32 compute"}
    elif row.precision == "int8":
        calibration = CalibrationConfig(num_images=options.calib_images)
        calib = timed(timings, "calibration_set",
                      lambda: build_calibration_set(options.calib_dir, contract, calibration))
        context.log(f"  calibrating on {len(calib)} images (digest {calib.digest[:12]})…")
        data, extra = quantize_for_export(converted.data, calib, options, contract, context, timings)
        extra["calibration"] = {k: v for k, v in calib.describe().items() if k != "files"}
        context.log(f"  int8: calibrate {timings['calibrate']:.1f} s, quantize {timings['quantize']:.1f} s; "
                    f"{100 * extra['int8']['float_mac_fraction']:.1f}% of MACs float; "
                    f"float ops left: {extra['int8']['float_ops']}")
    contract = contract.replace(extra={**contract.extra, **extra})
    if spec is not None:
        data, raw_tensors = drop_outputs(data, OUTPUT_ROLES)
        contract = contract.replace(end2end=replace(contract.end2end, raw_tensors=raw_tensors))
    data = embed_contract(data, contract)
    atomic_write_bytes(out_path, data)
    return ExportResult(Path(out_path), contract, timings, {"size_bytes": len(data), **extra})


def scratch_key(model: nn.Module, imgsz: tuple[int, int], input_layout: str,
                dcn: str = FASTEST["tflite"], spec: End2EndSpec | None = None) -> tuple:
    """Where :func:`export` keeps (and looks for) the FP32 conversion of ``model`` in ``context.scratch``."""
    return ("tflite-fp32-conversion", id(model), tuple(imgsz), input_layout, dcn, spec)


class _TfliteSignature(nn.Module):
    """Gives the converted graph one named input (in the chosen layout) and named outputs."""

    def __init__(self, model: nn.Module, input_layout: str) -> None:
        super().__init__()
        self.model, self.nhwc = model, input_layout == "NHWC"

    def forward(self, input: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: A002 - the signature's name
        outputs = self.model(input.permute(0, 3, 1, 2) if self.nhwc else input)
        return dict(zip(OUTPUT_ROLES, outputs))


class _End2EndSignature(nn.Module):
    """The verification build of the end-to-end model (it takes its layout itself) with named outputs:
    ``detections``, ``num_detections``, then the raw ``loc``, ``conf``, ``landmarks`` that :func:`export`
    drops from the written file's signature (their tensors stay, named in the contract)."""

    def __init__(self, model: nn.Module, spec: End2EndSpec) -> None:
        super().__init__()
        self.model, self.names = model, (*spec.outputs, *OUTPUT_ROLES)

    def forward(self, input: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: A002 - the signature's name
        return dict(zip(self.names, self.model(input)))


def _require_litert_torch():
    """litert-torch; on Linux aarch64 the error says to convert elsewhere (its litert-converter has no wheels there)."""
    if platform.system() == "Linux" and platform.machine() == "aarch64":
        try:
            return require("litert_torch", "tflite-export", "litert-torch")
        except BackendNotInstalledError as error:
            raise BackendNotInstalledError(
                "TFLite conversion needs litert-torch, which has no Linux aarch64 wheels (nor its litert-converter "
                "dependency): convert on x86_64 Linux or macOS and copy the .tflite; it runs here with "
                "`pip install featherface-deploy[tflite]`") from error
    return require("litert_torch", "tflite-export", "litert-torch")


def convert_fp32(model: nn.Module, imgsz: tuple[int, int] = (640, 640), input_layout: str = "NHWC",
                 model_name: str | None = None, dcn: str = FASTEST["tflite"],
                 spec: End2EndSpec | None = None) -> ConvertedModel:
    """Converts a model to an FP32 TFLite flatbuffer with litert-torch (no metadata), its DCN lowered as ``dcn``.

    With ``spec``, the end-to-end verification build (:class:`_End2EndSignature`; RGB 0–255 input), its
    NMS lowered to ``NON_MAX_SUPPRESSION_V5`` (:mod:`~featherface_deploy.exporters.nms_tflite`).

    Raises:
        ExportError: The conversion failed.
    """
    litert_torch = _require_litert_torch()
    portable = copy.deepcopy(model).eval()
    set_dcn_lowering(portable, dcn)  # TFLite has no grid_sample
    height, width = imgsz
    example = torch.zeros((1, height, width, 3) if input_layout == "NHWC" else (1, 3, height, width))
    name = model_name or getattr(getattr(model, "config", None), "name", None) or "custom"
    if spec is None:
        signature = _TfliteSignature(portable, input_layout)
    else:
        nms_tflite.register()
        head = end2end_model(portable, base_contract(name, input_size=imgsz), spec, input_layout, raw_outputs=True)
        signature = _End2EndSignature(head, spec)
    started = time.perf_counter()
    try:
        edge = litert_torch.convert(signature.eval(), sample_kwargs={INPUT_NAME: example})
        data = bytes(edge.model_content())
    except Exception as error:  # the converter raises many unrelated types; keep the cause chained
        raise ExportError(f"litert_torch.convert failed: {first_line(error)}") from error
    return ConvertedModel(data, name, tuple(imgsz), input_layout, time.perf_counter() - started)


def quantize_for_export(fp32: bytes, calibration: CalibrationSet, options: TfliteOptions, contract: DecodeContract,
                        context: ExportContext, timings: dict[str, float]) -> tuple[bytes, dict]:
    """INT8 as ``options.search`` asks: checked against FP32 and searched when short (default), forced, or plain."""
    if options.search is False:
        data, extra = quantize_int8(fp32, calibration, options, timings)
        return data, plain_facts(data, extra)
    open_tflite = context.opener("open_tflite")
    return timed(timings, "search", lambda: quantize_checked(
        fp32, calibration, options, contract, open_tflite, threshold=TFLITE_AGREEMENT_THRESHOLD,
        budget=options.budget(), forced=bool(options.search), log=context.log, timings=timings))


def build_contract(model_name: str, options: TfliteOptions, precision: str) -> DecodeContract:
    """The decode contract of an exported TFLite model (the registry's defaults plus what the file fixes)."""
    versions = {"featherface_deploy": featherface_deploy.__version__}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    lowering, selected = options.dcn_choice()
    spec = options.end2end_spec()
    return base_contract(
        model_name, input_name=INPUT_NAME, input_size=options.size, size_divisor=SIZE_DIVISOR,
        input_layout=options.input_layout, precision=precision, source_format="tflite", versions=versions,
        extra={"signature": SIGNATURE, "dcn": lowering, "dcn_selected": selected, "converter": "litert-torch"},
        postprocess="in-graph" if spec else "numpy", end2end=spec,
    )


__all__ = [
    "ConvertedModel",
    "build_contract",
    "convert_fp32",
    "export",
    "scratch_key",
]
