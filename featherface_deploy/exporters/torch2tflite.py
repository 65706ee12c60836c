"""PyTorch → TFLite (FP32, FP16, INT8) with litert-torch and ai-edge-quantizer; no TensorFlow.

One ``litert_torch.convert`` produces the FP32 flatbuffer (the slow step, about
a minute for V1); FP16 and INT8 are derived from it by ai-edge-quantizer in
seconds, so :func:`convert_fp32` can be reused for every precision.

- **FP32**: the model with its DCN forced to the portable ``gather`` lowering
  (``GATHER_ND``; TFLite has no ``grid_sample``), wrapped so the signature has
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
  float with ``keep_float`` (scope regexes over output tensor names).

Every export embeds the decode contract (TFLite metadata + sidecar JSON), is
checked against PyTorch with :func:`~featherface_deploy.exporters.parity.check_parity`
(FP32 tight, FP16 looser, INT8 after decode), and only then written atomically.
"""

from __future__ import annotations

import copy
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

import featherface_deploy
from featherface_deploy.calibration import CalibrationConfig, CalibrationSet, build_calibration_set
from featherface_deploy.contract import DecodeContract, write_sidecar
from featherface_deploy.errors import BackendNotInstalledError, ExportError, missing_backend
from featherface_deploy.file_writing import atomic_write_bytes
from featherface_deploy.exporters.common import load_source, require, size_pair, timed
from featherface_deploy.exporters.parity import ParityReport, Tolerances, check_parity
from featherface_deploy.exporters.tflite_graph import op_census, rewrite_leaky_relu
from featherface_deploy.exporters.tflite_metadata import embed_contract
from featherface_deploy.models.deform_conv import set_dcn_lowering
from featherface_deploy.models.featherface import OUTPUT_NAMES

INPUT_NAME = "input"
SIGNATURE = "serving_default"
PRECISIONS = ("fp32", "fp16", "int8")
LAYOUTS = ("NHWC", "NCHW")
SIZE_DIVISOR = 32
DCN_SAMPLING_SCOPE = "ModulatedDeformConv2d"  # tensor names carry the torch module path
# Measured on V1 (200-image subset, 640×640, 24 calibration photos), keeping one group float at a time:
# all int8 loses 1.8 / 3.5 / 3.0 AP (Easy / Medium / Hard); float I/O, heads, DCN convs, BiFPN, SSH, the
# stem alone, the backbone's depthwise convs or its activations change nothing; backbone stage1 (stride
# ≤ 8, the high-resolution layers) float brings it to 0.07 / 0.23 / 0.49 below FP32.
DEFAULT_KEEP_FLOAT = (r"MobileNetV1_body/torch\.nn\.modules\.container\.Sequential_stage1/",)
PACKAGES = ("torch", "litert-torch", "ai-edge-quantizer", "ai-edge-litert")

Log = Callable[[str], None]


@dataclass(frozen=True)
class TfliteExportConfig:
    """How to export.

    Attributes:
        imgsz: (height, width) of the static input; multiples of 32.
        precision: ``fp32``, ``fp16`` or ``int8``.
        input_layout: ``NHWC`` (Android's layout) or ``NCHW``.
        float_io: INT8 only: keep float32 input/outputs (else int8 input and outputs).
        keep_float: INT8 only: scope regexes (over output tensor names) left in float
            (default: backbone stage 1, see :data:`DEFAULT_KEEP_FLOAT`).
        keep_dcn_sampling_float: INT8 only: keep the DCN sampling path float (recommended).
        calibration: Calibration-set sampling (the input size is always ``imgsz``).
    """

    imgsz: tuple[int, int] = (640, 640)
    precision: str = "fp32"
    input_layout: str = "NHWC"
    float_io: bool = False
    keep_float: tuple[str, ...] = DEFAULT_KEEP_FLOAT
    keep_dcn_sampling_float: bool = True
    calibration: CalibrationConfig = CalibrationConfig()

    def validate(self) -> None:
        """Raises :class:`ExportError` with the fix for any unsupported value."""
        height, width = self.imgsz
        if height <= 0 or width <= 0 or height % SIZE_DIVISOR or width % SIZE_DIVISOR:
            raise ExportError(f"imgsz must be positive multiples of {SIZE_DIVISOR}, got {height}x{width}")
        if self.precision not in PRECISIONS:
            raise ExportError(f"unknown precision '{self.precision}'; choose one of: {', '.join(PRECISIONS)}")
        if self.input_layout not in LAYOUTS:
            raise ExportError(f"unknown input layout '{self.input_layout}'; choose one of: {', '.join(LAYOUTS)}")
        if self.precision != "int8" and self.float_io:
            raise ExportError("float_io applies to INT8 only (pass int8=True / --int8)")


@dataclass(frozen=True)
class ConvertedModel:
    """An FP32 flatbuffer straight from litert-torch (no metadata yet), reusable for every precision."""

    data: bytes
    model_name: str
    imgsz: tuple[int, int]
    input_layout: str
    seconds: float


@dataclass(frozen=True)
class TfliteExportResult:
    """What an export produced.

    Attributes:
        path: The ``.tflite`` file.
        sidecar: Its contract JSON.
        contract: The embedded decode contract.
        parity: The parity report against PyTorch.
        timings: Seconds per step (``convert``, ``calibrate``, ``quantize``, ``parity``, ``total``).
        size_bytes: File size.
    """

    path: Path
    sidecar: Path
    contract: DecodeContract
    parity: ParityReport
    timings: dict[str, float] = field(default_factory=dict)
    size_bytes: int = 0


def export_tflite(
    checkpoint_or_model: str | Path | nn.Module,
    out_path: str | Path,
    imgsz: int | tuple[int, int] = (640, 640),
    half: bool = False,
    int8: bool = False,
    calib_dir: str | Path | None = None,
    float_io: bool = False,
    input_layout: str = "NHWC",
    keep_float: Sequence[str] | None = None,
    calibration: CalibrationConfig | CalibrationSet = CalibrationConfig(),
    parity_images: Sequence[str | Path] = (),
    tolerances: Tolerances | None = None,
    architecture: str | None = None,
    converted: ConvertedModel | None = None,
    log: Log | None = None,
) -> TfliteExportResult:
    """Exports a FeatherFace model to TFLite, checked for parity before it is written.

    Args:
        checkpoint_or_model: A ``.pth`` path or a model (its ``config.name`` names it).
        out_path: The ``.tflite`` file (its sidecar is ``<out_path>.json``).
        imgsz: Static input (height, width), or one int for a square; multiples of 32.
        half: FP16 weights.
        int8: Full-integer INT8 (needs ``calib_dir`` or a ready ``CalibrationSet``).
        calib_dir: Folder of calibration photos.
        float_io: INT8 with float32 input and outputs.
        input_layout: ``NHWC`` or ``NCHW`` input tensor.
        keep_float: INT8: scope regexes left in float; ``None`` = :data:`DEFAULT_KEEP_FLOAT`, ``()`` = none.
        calibration: Sampling config, or an already built calibration set (NHWC/NCHW as ``input_layout``).
        parity_images: Images for the parity check; none → a few calibration images (INT8) or a synthetic one.
        tolerances: Parity tolerances (default by precision).
        architecture: Registered name when loading a checkpoint.
        converted: A previous :func:`convert_fp32` result of this model to reuse.
        log: Called with one line per step.

    Raises:
        ExportError: Bad options or a failed conversion.
        ParityError: Outside tolerance; nothing is written.
        BackendNotInstalledError: litert-torch / ai-edge-quantizer / ai-edge-litert missing.
    """
    log = log or (lambda message: None)
    if half and int8:
        raise ExportError("choose one of half (FP16) and int8, not both")
    precision = "int8" if int8 else "fp16" if half else "fp32"
    if precision != "int8" and keep_float is not None:
        raise ExportError("keep_float applies to INT8 only (pass int8=True / --int8)")
    config = TfliteExportConfig(size_pair(imgsz), precision, input_layout, float_io,
                                DEFAULT_KEEP_FLOAT if keep_float is None else tuple(keep_float),
                                calibration=calibration if isinstance(calibration, CalibrationConfig)
                                else CalibrationConfig())
    config.validate()
    if int8 and calib_dir is None and not isinstance(calibration, CalibrationSet):
        raise ExportError("INT8 needs calibration images: pass calib_dir (CLI: --calib-dir DIR)")
    model, model_name = load_source(checkpoint_or_model, architecture)
    started, timings = time.perf_counter(), {}

    reused = converted is not None and (converted.imgsz, converted.input_layout) == (config.imgsz, config.input_layout)
    if not reused:
        log(f"converting {model_name} with litert-torch ({config.input_layout} {config.imgsz[0]}x{config.imgsz[1]})…")
        converted = convert_fp32(model, config.imgsz, config.input_layout, model_name)
        log(f"  litert_torch.convert: {converted.seconds:.1f} s, {len(converted.data) / 1e6:.2f} MB")
    timings["convert"] = converted.seconds  # also when reused: the cost of making this file from scratch
    contract = build_contract(model_name, config)
    data, extra, calib_images = converted.data, {}, []
    if precision == "fp16":
        data = timed(timings, "quantize", lambda: quantize_fp16(converted.data))
        extra = {"fp16": "float16 weights (FLOAT_CASTING), float32 compute"}
    elif precision == "int8":
        calib = calibration if isinstance(calibration, CalibrationSet) else timed(
            timings, "calibration_set", lambda: build_calibration_set(calib_dir, contract, config.calibration))
        if calib.params.get("input_layout") != config.input_layout:
            raise ExportError(f"the calibration set is {calib.params.get('input_layout')}, the model "
                              f"{config.input_layout}: build it with this model's contract")
        log(f"  calibrating on {len(calib)} images (digest {calib.digest[:12]})…")
        data, extra = quantize_int8(converted.data, calib, config, timings)
        extra["calibration"] = {k: v for k, v in calib.describe().items() if k != "files"}
        if calib_dir is not None:
            calib_images = [Path(calib_dir) / name for name in calib.files[:4]]
        log(f"  int8: calibrate {timings['calibrate']:.1f} s, quantize {timings['quantize']:.1f} s; "
            f"float ops left: {extra['int8']['float_ops']}")
    contract = contract.replace(extra={**contract.extra, **extra})
    data = embed_contract(data, contract)

    from featherface_deploy.runtimes.tflite_runtime import TfliteRuntime
    from featherface_deploy.runtimes.torch_runtime import TorchRuntime

    images = list(parity_images) or calib_images
    log(f"  parity vs PyTorch on {len(images) or 'a synthetic'} image(s)…")
    report = timed(timings, "parity", lambda: check_parity(
        TfliteRuntime(data, threads=2), TorchRuntime(model), images,
        tolerances or Tolerances.for_precision(precision), raise_on_failure=True))
    log(report.format())

    out_path = Path(out_path)
    atomic_write_bytes(out_path, data)
    sidecar = write_sidecar(contract, out_path)
    timings["total"] = time.perf_counter() - started + (converted.seconds if reused else 0.0)
    log(f"  wrote {out_path} ({len(data) / 1e6:.2f} MB) and {sidecar.name}")
    return TfliteExportResult(out_path, sidecar, contract, report, timings, len(data))


class _TfliteSignature(nn.Module):
    """Gives the converted graph one named input (in the chosen layout) and named outputs."""

    def __init__(self, model: nn.Module, input_layout: str) -> None:
        super().__init__()
        self.model, self.nhwc = model, input_layout == "NHWC"

    def forward(self, input: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: A002 - the signature's name
        outputs = self.model(input.permute(0, 3, 1, 2) if self.nhwc else input)
        return dict(zip(OUTPUT_NAMES, outputs))


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
                 model_name: str | None = None) -> ConvertedModel:
    """Converts a model to an FP32 TFLite flatbuffer with litert-torch (no metadata).

    Raises:
        ExportError: The conversion failed.
    """
    litert_torch = _require_litert_torch()
    portable = copy.deepcopy(model).eval()
    set_dcn_lowering(portable, "gather")  # TFLite has no grid_sample; GATHER_ND is exact
    height, width = imgsz
    example = torch.zeros((1, height, width, 3) if input_layout == "NHWC" else (1, 3, height, width))
    started = time.perf_counter()
    try:
        edge = litert_torch.convert(_TfliteSignature(portable, input_layout).eval(),
                                    sample_kwargs={INPUT_NAME: example})
        data = bytes(edge.model_content())
    except Exception as error:  # the converter raises many unrelated types; keep the cause chained
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"litert_torch.convert failed: {first_line}") from error
    name = model_name or getattr(getattr(model, "config", None), "name", None) or "custom"
    return ConvertedModel(data, name, tuple(imgsz), input_layout, time.perf_counter() - started)


def quantize_fp16(fp32: bytes) -> bytes:
    """FP16 weights (``FLOAT_CASTING``): half the size, float32 compute."""
    quantizer, _, qtyping, algorithms = _quantizer()
    qt = quantizer.Quantizer(bytearray(fp32))
    qt.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                              algorithm_key=algorithms.FLOAT_CASTING)
    return bytes(qt.quantize(enable_progress_report=False).quantized_model)


def quantize_int8(fp32: bytes, calibration: CalibrationSet, config: TfliteExportConfig,
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
    if config.keep_dcn_sampling_float:
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
        "keep_float_scopes": ([DCN_SAMPLING_SCOPE + " (except CONV_2D)"] if config.keep_dcn_sampling_float else [])
        + float_scopes,
        "float_ops": dict(sorted(float_ops.items())),
    }}


def build_contract(model_name: str, config: TfliteExportConfig) -> DecodeContract:
    """The decode contract of an exported TFLite model."""
    versions = {"featherface_deploy": featherface_deploy.__version__}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return DecodeContract(
        model_name=model_name, input_name=INPUT_NAME, output_names=OUTPUT_NAMES, input_size=config.imgsz,
        size_divisor=SIZE_DIVISOR, input_layout=config.input_layout, precision=config.precision,
        source_format="tflite", versions=versions,
        extra={"signature": SIGNATURE, "dcn": "gather", "converter": "litert-torch"},
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
    "TfliteExportConfig",
    "TfliteExportResult",
    "build_contract",
    "convert_fp32",
    "export_tflite",
    "quantize_fp16",
    "quantize_int8",
]
