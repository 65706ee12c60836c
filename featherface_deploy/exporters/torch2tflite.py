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
from featherface_deploy.contract import DecodeContract, End2EndSpec
from featherface_deploy.errors import BackendNotInstalledError, ExportError, missing_backend
from featherface_deploy.exporters.common import ExportContext, ExportResult, require, size_pair, timed
from featherface_deploy.exporters.dcn_choice import AUTO, FASTEST, choose_lowering
from featherface_deploy.exporters import nms_tflite
from featherface_deploy.exporters.end2end_head import end2end_model
from featherface_deploy.exporters.end2end_options import End2EndOptions
from featherface_deploy.exporters.tflite_graph import drop_outputs, op_census, rewrite_leaky_relu
from featherface_deploy.file_writing import atomic_write_bytes
from featherface_deploy.metadata.tflite import embed_contract
from featherface_deploy.models.deform_conv import set_dcn_lowering
from featherface_deploy.models.featherface import OUTPUT_NAMES
from featherface_deploy.models.registry import base_contract

if TYPE_CHECKING:
    from featherface_deploy.formats import Format

INPUT_NAME = "input"
SIGNATURE = "serving_default"
LAYOUTS = ("NHWC", "NCHW")
SIZE_DIVISOR = 32
DCN_SAMPLING_SCOPE = "ModulatedDeformConv2d"  # tensor names carry the torch module path
# Measured on V1 (200-image subset, 640×640, 24 calibration photos), keeping one group float at a time:
# all int8 loses 1.8 / 3.5 / 3.0 AP (Easy / Medium / Hard); float I/O, heads, DCN convs, BiFPN, SSH, the
# stem alone, the backbone's depthwise convs or its activations change nothing; backbone stage1 (stride
# ≤ 8, the high-resolution layers) float brings it to 0.07 / 0.23 / 0.49 below FP32.
DEFAULT_KEEP_FLOAT = (r"MobileNetV1_body/torch\.nn\.modules\.container\.Sequential_stage1/",)
PACKAGES = ("torch", "litert-torch", "ai-edge-quantizer", "ai-edge-litert")
# Detection agreement of the INT8 file with the FP32 one on the 24 calibration photos; below the threshold the
# module-group search runs, aiming at the budget. At 640×640, V1's default agrees 0.987 and meets the 1-point AP
# budget on the WIDER subset; V2-CA's agrees 0.977 and misses it (Easy −1.05): the threshold sits between them.
# The budget is the agreement V1 meets the AP budget with: V2-CA reaches 0.986 with its first SSH float (60.1% of
# MACs float, −0.76 / −0.69 / −0.32), where aiming at 0.99 kept 91.3% float for −0.36 / −0.38 / −0.40.
# Two checkpoints only: a thin calibration (README, "TFLite (LiteRT)").
AGREEMENT_THRESHOLD = 0.98
SEARCH_BUDGET = 0.985
END2END_TAIL_SCOPE = r"End2EndTail"  # the end-to-end head's decoding and NMS: its constants stay float32 in FP16



@dataclass(frozen=True)
class TfliteOptions(End2EndOptions):
    """How to export (the options of the ``tflite``, ``tflite-fp16`` and ``tflite-int8`` rows; precision is the row's).

    Attributes:
        imgsz: (height, width) of the static input; multiples of 32.
        input_layout: ``NHWC`` (Android's layout) or ``NCHW``.
        float_io: INT8 only: keep float32 input/outputs (else int8 input and outputs).
        keep_float: INT8 only: scope regexes (over output tensor names) left in float
            (default: backbone stage 1, see :data:`DEFAULT_KEEP_FLOAT`). The DCN sampling path is always float.
        calib_dir: INT8 only: folder of calibration photos (required for INT8).
        calib_images: INT8 only: photos sampled from it.
        dcn: Lowering of the deformable convolutions: ``auto`` (the fastest measured in LiteRT),
            ``gather`` (``portable``) or ``gather_float``.
        search: INT8 only: ``None`` (default): measure the detection agreement with FP32 on the
            calibration photos and search module groups to keep float when it is below
            :data:`AGREEMENT_THRESHOLD`; ``True``: always search; ``False``: plain quantization, unchecked.
        search_budget: INT8 only: the agreement the search aims at (``None``: :data:`SEARCH_BUDGET`).
        end2end, max_det, conf, nms_iou, pre_nms_top_k: :class:`~featherface_deploy.exporters.end2end_options.End2EndOptions`
            (NMS lowered by :mod:`~featherface_deploy.exporters.nms_tflite`; RGB 0–255 input in ``input_layout``;
            the head's constants stay float32 in FP16). Not on the INT8 row (see ``docs/design/nms-lowerings.md``).
    """

    imgsz: int | tuple[int, int] = (640, 640)
    input_layout: str = "NHWC"
    float_io: bool = False
    keep_float: tuple[str, ...] = DEFAULT_KEEP_FLOAT
    calib_dir: str | Path | None = None
    calib_images: int = CalibrationConfig().num_images
    dcn: str = AUTO
    search: bool | None = None
    search_budget: float | None = None

    @property
    def size(self) -> tuple[int, int]:
        """``imgsz`` as (height, width)."""
        return size_pair(self.imgsz)

    def validate(self, row: Format) -> None:
        """Raises :class:`ExportError` with the fix for any unsupported value."""
        height, width = self.size
        if height <= 0 or width <= 0 or height % SIZE_DIVISOR or width % SIZE_DIVISOR:
            raise ExportError(f"imgsz must be positive multiples of {SIZE_DIVISOR}, got {height}x{width}")
        if self.input_layout not in LAYOUTS:
            raise ExportError(f"unknown input layout '{self.input_layout}'; choose one of: {', '.join(LAYOUTS)}")
        if row.precision == "int8" and self.calib_dir is None:
            raise ExportError("INT8 needs calibration images: pass --calib-dir DIR (calib_dir=…)")
        if self.calib_images < 1:
            raise ExportError("calib_images must be ≥ 1")
        if not 0 <= self.budget() <= 1:
            raise ExportError("search_budget must be in [0, 1]")
        if self.search is False and self.search_budget is not None:
            raise ExportError("--search-budget is the agreement the search must reach, and --no-search never "
                              "searches nor measures it: drop one of them")
        self.dcn_choice()
        if self.end2end_problems():
            raise ExportError("; ".join(self.end2end_problems()))

    def budget(self) -> float:
        """The search's agreement budget: ``search_budget``, else :data:`SEARCH_BUDGET`."""
        return SEARCH_BUDGET if self.search_budget is None else self.search_budget

    def dcn_choice(self) -> tuple[str, str]:
        """(the DCN lowering converted, how it was selected).

        Raises:
            ExportError: A lowering LiteRT cannot take.
        """
        return choose_lowering("tflite", self.dcn)


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
        data, raw_tensors = drop_outputs(data, OUTPUT_NAMES)
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
        return dict(zip(OUTPUT_NAMES, outputs))


class _End2EndSignature(nn.Module):
    """The verification build of the end-to-end model (it takes its layout itself) with named outputs:
    ``detections``, ``num_detections``, then the raw ``loc``, ``conf``, ``landmarks`` that :func:`export`
    drops from the written file's signature (their tensors stay, named in the contract)."""

    def __init__(self, model: nn.Module, spec: End2EndSpec) -> None:
        super().__init__()
        self.model, self.names = model, (*spec.outputs, *OUTPUT_NAMES)

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
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"litert_torch.convert failed: {first_line}") from error
    return ConvertedModel(data, name, tuple(imgsz), input_layout, time.perf_counter() - started)


def quantize_fp16(fp32: bytes, end2end: bool = False) -> bytes:
    """FP16 weights (``FLOAT_CASTING``): half the size, float32 compute; an end-to-end head's constants
    (priors, rank scores) stay float32."""
    quantizer, _, qtyping, algorithms = _quantizer()
    qt = quantizer.Quantizer(bytearray(fp32))
    qt.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                              algorithm_key=algorithms.FLOAT_CASTING)
    if end2end:
        qt.update_quantization_recipe(regex=END2END_TAIL_SCOPE, operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                      algorithm_key=algorithms.NO_QUANTIZE)
    return bytes(qt.quantize(enable_progress_report=False).quantized_model)


def quantize_int8(fp32: bytes, calibration: CalibrationSet, config: TfliteOptions,
                  timings: dict[str, float] | None = None) -> tuple[bytes, dict]:
    """Static int8 weights and activations, calibrated; full-integer I/O unless ``config.float_io``.

    Returns:
        The quantized flatbuffer and the facts for the contract's ``extra["int8"]``.
    """
    timings = {} if timings is None else timings
    quantizer, recipe, qtyping, algorithms = _quantizer()
    ops = qtyping.TFLOperationName
    rewritten, leaky = rewrite_leaky_relu(fp32)
    qt = quantizer.Quantizer(bytearray(rewritten), recipe.static_wi8_ai8())
    float_scopes = list(config.keep_float)
    # Later entries win: everything under the DCN scope float, then its convolutions back to int8.
    qt.update_quantization_recipe(regex=DCN_SAMPLING_SCOPE, operation_name=ops.ALL_SUPPORTED,
                                  algorithm_key=algorithms.NO_QUANTIZE)
    qt.add_static_config(regex=DCN_SAMPLING_SCOPE, operation_name=ops.CONV_2D, activation_num_bits=8,
                         weight_num_bits=8)
    for scope in float_scopes:
        qt.update_quantization_recipe(regex=scope, operation_name=ops.ALL_SUPPORTED,
                                      algorithm_key=algorithms.NO_QUANTIZE)
    if config.float_io:
        for op in (ops.INPUT, ops.OUTPUT):
            qt.update_quantization_recipe(regex=".*", operation_name=op, algorithm_key=algorithms.NO_QUANTIZE)
    feeds = {SIGNATURE: [{INPUT_NAME: batch} for batch in calibration.batches(1)]}
    result = timed(timings, "calibrate", lambda: qt.calibrate(feeds, num_threads=1))
    data = timed(timings, "quantize", lambda: bytes(
        qt.quantize(result, enable_progress_report=False).quantized_model))
    census = op_census(data)
    float_ops = {k.split(":")[0]: v for k, v in census.items() if k.endswith(":FLOAT32") and not k.startswith("DEQ")}
    return data, {"int8": {
        "tool": "ai-edge-quantizer static_wi8_ai8 (min/max, per-channel weights)",
        "io": "float32" if config.float_io else "int8",
        "leaky_relu_rewritten": leaky,
        "keep_float_scopes": [DCN_SAMPLING_SCOPE + " (except CONV_2D)", *float_scopes],
        "float_ops": dict(sorted(float_ops.items())),
    }}


def quantize_for_export(fp32: bytes, calibration: CalibrationSet, options: TfliteOptions, contract: DecodeContract,
                        context: ExportContext, timings: dict[str, float]) -> tuple[bytes, dict]:
    """INT8 as ``options.search`` asks: checked against FP32 and searched when short (default), forced, or plain."""
    from featherface_deploy.exporters.tflite_int8_search import plain_facts, quantize_checked

    if options.search is False:
        data, extra = quantize_int8(fp32, calibration, options, timings)
        return data, plain_facts(data, extra)
    if context.open_tflite is None:
        raise ExportError("the INT8 agreement check runs the file it made: export through the pipeline "
                          "(featherface_deploy.pipeline), or pass search=False (--no-search)")
    return timed(timings, "search", lambda: quantize_checked(
        fp32, calibration, options, contract, context.open_tflite, threshold=AGREEMENT_THRESHOLD,
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


# --- helpers -------------------------------------------------------------------------------------


def _quantizer():
    try:
        from ai_edge_quantizer import qtyping, quantizer, recipe
        from ai_edge_quantizer.algorithm_manager import AlgorithmName
    except ImportError as error:
        raise missing_backend("ai_edge_quantizer", "tflite-export") from error
    return quantizer, recipe, qtyping, AlgorithmName


__all__ = [
    "ConvertedModel",
    "TfliteOptions",
    "build_contract",
    "convert_fp32",
    "export",
    "scratch_key",
    "quantize_fp16",
    "quantize_int8",
]
