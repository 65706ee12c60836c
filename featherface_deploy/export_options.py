"""The options of every exporter, each declared once as a field (:mod:`featherface_deploy.option_fields`).

One frozen dataclass per exporter (named by its rows' ``options_class``), with
``validate(row)`` (one signature for all: the row being built) checking values
before anything is built. The rows' accepted
options, the ``export`` command's options and the docs' tables are derived
from these fields. To add an option: add a field here declared with an
:class:`~featherface_deploy.option_fields.ExportOption` (a shared constant
when several exporters take it), and read it in the exporter
(``docs/design/options.md``).

This module imports no backend: a check that needs one (the Core ML target,
the installed TensorRT) imports it when it runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from featherface_deploy.errors import ExportError
from featherface_deploy.exporters.common import require, size_pair
from featherface_deploy.exporters.dcn_choice import ALIASES, AUTO, CHOICES, choose_lowering, int8_source_lowering
from featherface_deploy.exporters.end2end_options import End2EndOptions
from featherface_deploy.formats import Format, get_format
from featherface_deploy.option_fields import ExportOption, parse_mebibytes, parse_size, parse_sizes
from featherface_deploy.trt.versions import get_version, version_for_installed

if TYPE_CHECKING:
    from featherface_deploy.exporters.onnx_quantize import Int8Options
    from featherface_deploy.exporters.onnx2trt_recipe import RecipeOptions

SIZE_DIVISOR = 32
MIN_OPSET = 18  # the dynamo exporter emits opset 18 at least (17 silently becomes 18)
NATIVE_DCN_MIN_OPSET = 19  # ONNX DeformConv
DCN_LOWERINGS = (AUTO, *CHOICES["onnx"], *ALIASES)
SIMPLIFIERS = ("onnxsim", "onnxslim")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
INT8_PLACEMENTS = ("inputs", "fused")  # onnx-int8: Q/DQ on layer inputs, or inputs and outputs (ORT fuses)
LAYOUTS = ("NHWC", "NCHW")
DEFAULT_TARGET = "iOS16"
IO_DTYPES = ("fp32", "fp16")
COREML_INT8_MODES = ("weights", "activations")
W8A8_REFUSAL = (
    "--int8 activations (W8A8) is not available: coremltools calibrates activations only with Core ML "
    "predictions (linear_quantize_activations needs macOS), and coremltools.optimize.torch's LinearQuantizer "
    "cannot trace FeatherFace's BiFPN under torch 2.13; use --int8 weights (8-bit weights, float compute)")
# ML Programs need iOS15 / macOS12 / watchOS8 / tvOS15 or later; FP16 inputs need iOS16 / macOS13.
PROGRAM_FLOOR = "iOS15"
FP16_IO_FLOOR = "iOS16"

# ONNX INT8: detection agreement with FP32 on the calibration photos, calibrated against the 1-point AP budget
# on the WIDER subset at 640×640 (README, "INT8 (ONNX, QDQ)"). V1's plain quantization agrees 0.978 and meets the
# AP budget; V2-CA's agrees 0.972 and misses it (−1.4/−1.6/−0.6): below the threshold the search runs. Agreement
# does not map to AP the same way on both models (V2-CA at 0.982 still misses Medium by 0.05), so the search aims
# higher, at the budget (V2-CA ends at 0.985 after 12 rounds, 38.8% of MACs float). Two checkpoints only: a thin
# calibration.
ONNX_AGREEMENT_THRESHOLD = 0.975
ONNX_SEARCH_BUDGET = 0.99
# TFLite INT8: agreement of the INT8 file with the FP32 one on the 24 calibration photos; below the threshold the
# module-group search runs, aiming at the budget. At 640×640, V1's default agrees 0.987 and meets the 1-point AP
# budget on the WIDER subset; V2-CA's agrees 0.977 and misses it (Easy −1.05): the threshold sits between them.
# The budget is the agreement V1 meets the AP budget with: V2-CA reaches 0.986 with its first SSH float (60.1% of
# MACs float, −0.76 / −0.69 / −0.32), where aiming at 0.99 kept 91.3% float for −0.36 / −0.38 / −0.40.
# Two checkpoints only: a thin calibration (README, "TFLite (LiteRT)").
TFLITE_AGREEMENT_THRESHOLD = 0.98
TFLITE_SEARCH_BUDGET = 0.985
# Measured on V1 (200-image subset, 640×640, 24 calibration photos), keeping one group float at a time:
# all int8 loses 1.8 / 3.5 / 3.0 AP (Easy / Medium / Hard); float I/O, heads, DCN convs, BiFPN, SSH, the
# stem alone, the backbone's depthwise convs or its activations change nothing; backbone stage1 (stride
# ≤ 8, the high-resolution layers) float brings it to 0.07 / 0.23 / 0.49 below FP32.
TFLITE_DEFAULT_KEEP_FLOAT = (r"MobileNetV1_body/torch\.nn\.modules\.container\.Sequential_stage1/",)

# --- options several exporters take ---------------------------------------------------------------

IMGSZ = ExportOption("Input size N or HxW, multiples of 32", parse=parse_size, default=(640, 640))
DCN = ExportOption("onnx, tflite: deformable conv lowering: plain ops (gather = portable, gather_float) or ONNX "
                   "DeformConv (onnx)", choices=DCN_LOWERINGS, default=AUTO,
                   shown_default="auto: the one measured fastest for the format's runtime")
CALIB_DIR = ExportOption("INT8: folder of calibration photos (never evaluation images)", existing_folder=True)
CALIB_IMAGES = ExportOption("INT8: photos sampled", value_type=int, minimum=1, default=100)
KEEP_FLOAT = ExportOption("INT8: layer to keep in float (repeatable): onnx node name or op type; tflite scope regex",
                          kind="repeated", default=())
SEARCH = ExportOption("onnx-int8, tflite-int8: always run the keep-float search (by default it runs only when the "
                      "plain quantization's detection agreement with FP32 is below "
                      f"{ONNX_AGREEMENT_THRESHOLD} for ONNX, {TFLITE_AGREEMENT_THRESHOLD} for TFLite)", kind="flag")
SEARCH_BUDGET = ExportOption("onnx-int8, tflite-int8: detection agreement with FP32 on the calibration photos the "
                             "search aims at", value_type=float, minimum=0, maximum=1,
                             shown_default=f"ONNX {ONNX_SEARCH_BUDGET}, TFLite {TFLITE_SEARCH_BUDGET}")
WORKSPACE = ExportOption("engine, trt-recipe: builder workspace: 2G, 512M or plain MiB", parse=parse_mebibytes,
                         default=2048)
DLA = ExportOption("engine, trt-recipe: Jetson DLA core", value_type=int, minimum=0)


def _check_search(search: bool | None, search_budget: float | None) -> None:
    if search is False and search_budget is not None:
        raise ExportError("--search-budget is the agreement the search must reach, and --no-search never "
                          "searches nor measures it: drop one of them")


@dataclass(frozen=True)
class OnnxOptions(End2EndOptions):
    """How to export (the options of the ``onnx`` row).

    Attributes:
        imgsz: (height, width) of the example (and, if static, the only) input; multiples of 32.
        dynamic: Batch, height and width dynamic (height and width multiples of 32).
        opset: ONNX opset (≥ 18; ≥ 19 for ``dcn="native"``); ``None``: 18, or 19 with the native DCN.
        simplify: Run a graph simplifier after export.
        simplifier: ``onnxsim`` (default: faster to run, fewer nodes, ~9% faster graph) or ``onnxslim``.
        dcn: Lowering of the deformable convolutions: ``auto`` (the fastest measured in ONNX Runtime,
            ``gather`` when ``opset`` < 19), ``gather`` (``portable``), ``gather_float`` or ``native``.

    The end-to-end options (decoding and NMS inside the graph) are :class:`~featherface_deploy.exporters.end2end_options.End2EndOptions`'s.
    """

    imgsz: int | tuple[int, int] = IMGSZ.field()
    dynamic: bool = ExportOption("onnx: dynamic batch, height and width", kind="flag").field(False)
    opset: int | None = ExportOption("onnx: opset", value_type=int,
                                     shown_default=f"{MIN_OPSET}; {NATIVE_DCN_MIN_OPSET} with --dcn native").field()
    simplify: bool = ExportOption("onnx: simplify the graph", kind="switch").field(True)
    simplifier: str = ExportOption("onnx", choices=SIMPLIFIERS).field("onnxsim")
    dcn: str = DCN.field()

    @property
    def size(self) -> tuple[int, int]:
        """``imgsz`` as (height, width)."""
        return size_pair(self.imgsz)

    @property
    def resolved_opset(self) -> int:
        """The opset exported: the one asked for, else 18 (19 with the native DCN)."""
        if self.opset is not None:
            return self.opset
        return NATIVE_DCN_MIN_OPSET if self.dcn_choice()[0] == "native" else MIN_OPSET

    def dcn_choice(self) -> tuple[str, str]:
        """(the DCN lowering exported, how it was selected); see :func:`~featherface_deploy.exporters.dcn_choice.choose_lowering`.

        Raises:
            ExportError: An unknown lowering, or ``gather_float`` with dynamic shapes.
        """
        lowering, how = choose_lowering("onnx", self.dcn, self.dynamic)
        if self.dcn == AUTO and lowering == "native" and self.opset is not None and self.opset < NATIVE_DCN_MIN_OPSET:
            return "gather", f"auto: opset {self.opset} has no DeformConv"
        return lowering, how

    def validate(self, row: Format) -> None:
        """Raises :class:`ExportError` with the fix for any unsupported value."""
        height, width = self.size
        if height <= 0 or width <= 0 or height % SIZE_DIVISOR or width % SIZE_DIVISOR:
            raise ExportError(f"imgsz must be positive multiples of {SIZE_DIVISOR}, got {height}x{width} "
                              f"(e.g. 640x640 or 480x640)")
        lowering, _ = self.dcn_choice()
        if self.resolved_opset < MIN_OPSET:
            raise ExportError(f"opset {self.opset} is not supported: the dynamo exporter emits opset ≥ {MIN_OPSET}")
        if lowering == "native" and self.resolved_opset < NATIVE_DCN_MIN_OPSET:
            raise ExportError(f"dcn='native' needs ONNX DeformConv, i.e. opset ≥ {NATIVE_DCN_MIN_OPSET} "
                              f"(got {self.opset}); pass opset={NATIVE_DCN_MIN_OPSET} or dcn='portable'")
        if self.simplifier not in SIMPLIFIERS:
            raise ExportError(f"unknown simplifier '{self.simplifier}'; choose one of: {', '.join(SIMPLIFIERS)}")
        problems = self.end2end_problems()
        if self.end2end and self.dynamic:
            problems.append("--end2end needs a fixed input size (its priors are constants): drop --dynamic")
        if problems:
            raise ExportError("; ".join(problems))


@dataclass(frozen=True)
class OnnxInt8Options(End2EndOptions):
    """How to calibrate and which layers to keep in float (the options of the ``onnx-int8`` row).

    Attributes:
        calib_dir: Folder of calibration photos (never the evaluation images); required.
        calib_images: Number of photos sampled (deterministically) from it.
        calib_method: ``minmax``, ``percentile`` or ``entropy``.
        keep_float: Node names or op types to keep in float, besides the depthwise convolutions.
        quantize_depthwise: Quantize the depthwise convolutions too (costs ~9 AP points on V1).
        search: ``None`` (default): run the greedy keep-float search only when the plain quantization's
            detection agreement falls short of the budget; ``True``: always (``--search``);
            ``False``: never, and skip the agreement check (``--no-search``).
        search_budget: Detection agreement with FP32 (on the calibration photos) the search must
            reach (``None``: :data:`ONNX_SEARCH_BUDGET`); an unforced search starts below
            :data:`ONNX_AGREEMENT_THRESHOLD` or this budget, whichever is lower.
        quantize_bias: int32 biases with their DequantizeLinear (ORT's default; TensorRT wants ``False``).
            Not a user option: ``engine-int8`` sets it on its source.
        reduce_range: 7-bit weights, for x86 CPUs without VNNI whose 8-bit dot products saturate
            (``--reduce-range``; README, "INT8 on ARM kernels").
        imgsz: Calibration size for a dynamic-shape source (a fixed-size source uses its own).
        placement: ``inputs`` (Q/DQ on layer inputs only, from the ``gather`` DCN: TensorRT's pattern and the
            verified accuracy; ONNX Runtime runs float kernels) or ``fused`` (Q/DQ on inputs and outputs, from
            the native ``DeformConv``: ONNX Runtime fuses integer ``QLinearConv``; costs V1 2.4–4.0 AP points
            and was still slower than FP32 on an AVX-512 VNNI CPU, docs/design/int8-kernels.md).

    The end-to-end options are :class:`~featherface_deploy.exporters.end2end_options.End2EndOptions`'s: the raw
    network is quantized as without them (its ONNX source is exported raw), then the float input adapter and
    tail are composed around it (:mod:`~featherface_deploy.exporters.end2end_compose`).
    """

    calib_dir: str | Path | None = CALIB_DIR.field()
    calib_images: int = CALIB_IMAGES.field()
    calib_method: str = ExportOption("onnx-int8: calibration method", choices=CALIBRATION_METHODS).field("minmax")
    keep_float: tuple[str, ...] = KEEP_FLOAT.field()
    quantize_depthwise: bool = ExportOption(
        "onnx-int8: quantize the depthwise convolutions too (costs ~9 AP points on V1)", kind="flag").field(False)
    search: bool | None = SEARCH.field()
    search_budget: float | None = SEARCH_BUDGET.field()
    quantize_bias: bool = True
    reduce_range: bool = ExportOption(
        "onnx-int8: 7-bit weights, for x86 CPUs without VNNI (AVX2, AVX-512), whose 8-bit dot products can "
        "saturate", kind="flag").field(False)
    imgsz: int | tuple[int, int] = IMGSZ.field()
    placement: str = ExportOption(
        "onnx-int8: Q/DQ on layer inputs (TensorRT's pattern; ONNX Runtime runs float kernels) or fused (inputs "
        "and outputs, native DeformConv: ONNX Runtime runs integer QLinearConv; costs V1 2.4-4.0 AP points and was "
        "still slower than FP32 on an AVX-512 VNNI CPU)",
        choices=INT8_PLACEMENTS).field("inputs")

    def quantization(self) -> Int8Options:
        """The :class:`~featherface_deploy.exporters.onnx_quantize.Int8Options` these choices mean."""
        from featherface_deploy.exporters.onnx_quantize import Int8Options  # ONNX Runtime, only once quantizing

        return Int8Options(method=self.calib_method, keep_float_nodes=tuple(self.keep_float),
                           keep_float_depthwise=not self.quantize_depthwise, quantize_bias=self.quantize_bias,
                           reduce_range=self.reduce_range, placement=self.placement)

    def validate(self, row: Format) -> None:
        """Raises :class:`ExportError` with the fix for a missing calibration folder or a bad value."""
        if self.calib_dir is None:
            raise ExportError("INT8 needs --calib-dir: a folder of photos like the deployment's (never the "
                              "evaluation images)")
        if self.calib_images < 1 or not 0 <= self.budget() <= 1:
            raise ExportError("calib_images must be ≥ 1 and search_budget in [0, 1]")
        _check_search(self.search, self.search_budget)
        if self.end2end_problems():
            raise ExportError("; ".join(self.end2end_problems()))
        if self.calib_method not in CALIBRATION_METHODS:
            raise ExportError(f"unknown calibration method '{self.calib_method}'; "
                              f"choose one of: {', '.join(CALIBRATION_METHODS)}")
        if self.placement not in INT8_PLACEMENTS:
            raise ExportError(f"unknown Q/DQ placement '{self.placement}'; choose one of: {', '.join(INT8_PLACEMENTS)}")

    def budget(self) -> float:
        """The search's agreement budget: ``search_budget``, else :data:`ONNX_SEARCH_BUDGET`."""
        return ONNX_SEARCH_BUDGET if self.search_budget is None else self.search_budget

    def source_options(self, source: OnnxOptions) -> OnnxOptions:
        """The FP32 source's options to quantize from (:func:`~featherface_deploy.exporters.dcn_choice.int8_source_lowering`)."""
        replaced = dataclasses.replace(source, dcn=int8_source_lowering(source.dcn, self.placement))
        replaced.validate(get_format("onnx"))
        return replaced

    @staticmethod
    def accepts_source(contract) -> bool:
        """Whether an FP32 ONNX file with this contract can be quantized as it is by default (Q/DQ on inputs
        needs the plain-op DCN; a native source is re-exported; so is an end-to-end one: the raw network is
        quantized)."""
        return contract.extra.get("dcn") != "native" and not contract.in_graph


@dataclass(frozen=True)
class TfliteOptions(End2EndOptions):
    """How to export (the options of the ``tflite``, ``tflite-fp16`` and ``tflite-int8`` rows; precision is the row's).

    Attributes:
        imgsz: (height, width) of the static input; multiples of 32.
        input_layout: ``NHWC`` (Android's layout) or ``NCHW``.
        float_io: INT8 only: keep float32 input/outputs (else int8 input and outputs).
        keep_float: INT8 only: scope regexes (over output tensor names) left in float
            (default: backbone stage 1, see :data:`TFLITE_DEFAULT_KEEP_FLOAT`). The DCN sampling path is always float.
        calib_dir: INT8 only: folder of calibration photos (required for INT8).
        calib_images: INT8 only: photos sampled from it.
        dcn: Lowering of the deformable convolutions: ``auto`` (the fastest measured in LiteRT),
            ``gather`` (``portable``) or ``gather_float``.
        search: INT8 only: ``None`` (default): measure the detection agreement with FP32 on the
            calibration photos and search module groups to keep float when it is below
            :data:`TFLITE_AGREEMENT_THRESHOLD`; ``True``: always search; ``False``: plain quantization, unchecked.
        search_budget: INT8 only: the agreement the search aims at (``None``: :data:`TFLITE_SEARCH_BUDGET`).

    The end-to-end options are :class:`~featherface_deploy.exporters.end2end_options.End2EndOptions`'s (NMS lowered by
    :mod:`~featherface_deploy.exporters.nms_tflite`; RGB 0–255 input in ``input_layout``; the head stays float in FP16
    and INT8).
    """

    imgsz: int | tuple[int, int] = IMGSZ.field()
    input_layout: str = ExportOption("tflite", choices=LAYOUTS).field("NHWC")
    float_io: bool = ExportOption("tflite-int8: float32 input and outputs", kind="flag").field(False, only=("int8",))
    keep_float: tuple[str, ...] = KEEP_FLOAT.field(TFLITE_DEFAULT_KEEP_FLOAT, only=("int8",))
    calib_dir: str | Path | None = CALIB_DIR.field(only=("int8",))
    calib_images: int = CALIB_IMAGES.field(only=("int8",))
    dcn: str = DCN.field()
    search: bool | None = SEARCH.field(only=("int8",))
    search_budget: float | None = SEARCH_BUDGET.field(only=("int8",))

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
        _check_search(self.search, self.search_budget)
        self.dcn_choice()
        if self.end2end_problems():
            raise ExportError("; ".join(self.end2end_problems()))

    def budget(self) -> float:
        """The search's agreement budget: ``search_budget``, else :data:`TFLITE_SEARCH_BUDGET`."""
        return TFLITE_SEARCH_BUDGET if self.search_budget is None else self.search_budget

    def dcn_choice(self) -> tuple[str, str]:
        """(the DCN lowering converted, how it was selected).

        Raises:
            ExportError: A lowering LiteRT cannot take.
        """
        return choose_lowering("tflite", self.dcn)


@dataclass(frozen=True)
class MediapipeOptions:
    """How to export for MediaPipe's ObjectDetector (``mediapipe``, ``mediapipe-fp16``, ``mediapipe-int8``).

    Built through the TFLite route, always NHWC with float32 input and outputs (what the task feeds and reads).

    Attributes:
        imgsz: (height, width) of the static input; multiples of 32 (the anchors in the metadata are for it).
        dcn: Lowering of the deformable convolutions, as for ``tflite``.
        box_corners: Two extra keypoints carrying the exact float box corners (x1, y1), (x2, y2); the task's
            own boxes are truncated to integer pixels.
        keep_float: INT8 only: scope regexes left in float, as for ``tflite-int8`` (the input adapter and the
            ``location``/``score`` assembly always stay float).
        calib_dir: INT8 only: folder of calibration photos (required for INT8).
        calib_images: INT8 only: photos sampled from it.
        search: INT8 only: the keep-float search, as for ``tflite-int8``.
        search_budget: INT8 only: the agreement the search aims at (``None``: :data:`TFLITE_SEARCH_BUDGET`).
    """

    imgsz: int | tuple[int, int] = IMGSZ.field()
    dcn: str = DCN.field()
    box_corners: bool = ExportOption("mediapipe: two extra keypoints carrying the exact float box corners "
                                     "(x1, y1), (x2, y2); the task's boxes are integer pixels", kind="flag").field(False)
    keep_float: tuple[str, ...] = KEEP_FLOAT.field(TFLITE_DEFAULT_KEEP_FLOAT, only=("int8",))
    calib_dir: str | Path | None = CALIB_DIR.field(only=("int8",))
    calib_images: int = CALIB_IMAGES.field(only=("int8",))
    search: bool | None = SEARCH.field(only=("int8",))
    search_budget: float | None = SEARCH_BUDGET.field(only=("int8",))

    input_layout = "NHWC"  # MediaPipe feeds NHWC images
    float_io = True  # the task feeds float32 and reads float32 (or uint8) outputs
    end2end = False  # the task does the decoding and NMS

    @property
    def size(self) -> tuple[int, int]:
        """``imgsz`` as (height, width)."""
        return size_pair(self.imgsz)

    def validate(self, row: Format) -> None:
        """Raises :class:`ExportError` with the fix for any unsupported value."""
        TfliteOptions(imgsz=self.imgsz, dcn=self.dcn, keep_float=self.keep_float, calib_dir=self.calib_dir,
                      calib_images=self.calib_images, search=self.search, search_budget=self.search_budget,
                      float_io=True).validate(row)

    def budget(self) -> float:
        """The search's agreement budget: ``search_budget``, else :data:`TFLITE_SEARCH_BUDGET`."""
        return TFLITE_SEARCH_BUDGET if self.search_budget is None else self.search_budget

    def dcn_choice(self) -> tuple[str, str]:
        """(the DCN lowering converted, how it was selected)."""
        return choose_lowering("tflite", self.dcn)

    def end2end_spec(self) -> None:
        """Never end-to-end: the task does the decoding and NMS."""
        return None


@dataclass(frozen=True)
class CoremlOptions(End2EndOptions):
    """How to export (the options of the ``coreml``, ``coreml-fp16`` and ``coreml-int8w`` rows).

    The end-to-end options are :class:`~featherface_deploy.exporters.end2end_options.End2EndOptions`'s (NMS lowered by
    :mod:`~featherface_deploy.exporters.nms_coreml`; an RGB 0–255 NCHW tensor of a fixed size; the head stays FP32
    with float weights in the FP16 and INT8W rows).

    Attributes:
        imgsz: (height, width) of the fixed input, and the traced example; multiples of 32.
        target: Minimum deployment target (a ``coremltools.target`` name: ``iOS16``, ``macOS13``…).
        image_input: An image input (``ct.ImageType``, BGR, bias −mean) instead of a tensor.
        io_dtype: ``fp32`` (default) or ``fp16`` tensor input and outputs (FP16 rows only).
        flexible: Any height and width in ``"LO-HI"`` (multiples of 32), e.g. ``"320-1280"``.
        sizes: Only these (height, width) sizes (``EnumeratedShapes``).
        int8_mode: ``weights`` (8-bit weights) or ``activations`` (refused: :data:`W8A8_REFUSAL`).
    """

    imgsz: tuple[int, int] = IMGSZ.field()
    target: str = ExportOption("coreml: minimum deployment target (iOS16, iOS17, macOS13…)").field(DEFAULT_TARGET)
    image_input: bool = ExportOption("coreml: an image input instead of a tensor", kind="flag").field(False)
    io_dtype: str = ExportOption("coreml-fp16: tensor I/O dtype", choices=IO_DTYPES).field("fp32", only=("fp16",))
    flexible: str | None = ExportOption("coreml: any height and width in LO-HI, e.g. 320-1280").field()
    sizes: tuple[tuple[int, int], ...] = ExportOption("coreml: only these sizes, e.g. 480x640,640x640",
                                                      parse=parse_sizes).field(())
    int8_mode: str = ExportOption("coreml-int8w: what is 8-bit (`--int8 weights`; `activations` is refused)",
                                  choices=COREML_INT8_MODES, cli=False).field("weights", only=("int8",))

    def validate(self, row: Format) -> None:
        """Raises :class:`ExportError` with the fix for any unsupported value."""
        for height, width in (size_pair(self.imgsz), *self.sizes):
            check_coreml_size(height, width)
        if self.flexible is not None and self.sizes:
            raise ExportError("--flexible and --sizes exclude each other: a range of sizes, or a list")
        if self.flexible is not None:
            flexible_range(self.flexible)
        if self.io_dtype not in IO_DTYPES:
            raise ExportError(f"unknown io_dtype '{self.io_dtype}'; choose one of: {', '.join(IO_DTYPES)}")
        if self.io_dtype == "fp16" and row.precision != "fp16":
            raise ExportError("FP16 input/outputs need FP16 compute: use --format coreml-fp16 (or --half)")
        if self.io_dtype == "fp16" and self.image_input:
            raise ExportError("--image-input takes images; FP16 I/O applies to tensor inputs only")
        if self.int8_mode not in COREML_INT8_MODES:
            raise ExportError(f"unknown int8 mode '{self.int8_mode}'; choose one of: {', '.join(COREML_INT8_MODES)}")
        if self.int8_mode == "activations":
            raise ExportError(W8A8_REFUSAL)
        if self.end2end:
            problems = self.end2end_problems()
            if self.flexible is not None or self.sizes:
                problems.append("--end2end needs a fixed input size (its priors are constants): "
                                "drop --flexible / --sizes")
            if self.image_input:
                problems.append("--end2end takes an RGB 0–255 tensor (the colour flip and mean are in the graph): "
                                "drop --image-input")
            if self.io_dtype != "fp32":
                problems.append("--end2end outputs float32 detections: drop --io-dtype fp16")
            if problems:
                raise ExportError("; ".join(problems))
        target = resolve_target(self.target)
        if self.io_dtype == "fp16" and not target_at_least(target, FP16_IO_FLOOR):
            raise ExportError(f"FP16 input/outputs need a target ≥ {FP16_IO_FLOOR} (macOS13); got {self.target}")


@dataclass(frozen=True)
class EngineOptions:
    """How to build (the options of the ``engine`` rows; the precision is the row's).

    Attributes:
        workspace: Builder workspace pool, MiB.
        dla: Jetson DLA core (GPU fallback on), or ``None``.
        batch_range: (min, opt, max) batch of the optimization profile for a dynamic-batch ONNX.
        timing_cache: File to read and update with kernel timings (faster rebuilds), or ``None``.
    """

    workspace: int = WORKSPACE.field()
    dla: int | None = DLA.field()
    batch_range: tuple[int, int, int] = (1, 1, 4)
    timing_cache: Path | None = None

    def validate(self, row: Format) -> None:
        """The recipe's rules for the installed TensorRT (e.g. no FP16 flag on 11.x), checked before building."""
        trt = require("tensorrt", "tensorrt")
        _recipe_options(version_for_installed(trt.__version__), row.precision, self.workspace, self.dla).validate()


@dataclass(frozen=True)
class RecipeExportOptions(End2EndOptions):
    """The options of the ``trt-recipe`` rows (the precision is the row's).

    Attributes:
        imgsz: Input (height, width) of the ONNX; also the calibration size.
        trt_version: The device's TensorRT (JetPack 6.x = 10.3, JetPack 5 = 8.5, Jetson Nano = 8.2).
        workspace: Builder workspace, MiB.
        dla: Jetson DLA core (GPU fallback allowed), or ``None``.
        calib_dir: INT8: folder of calibration photos (required for INT8).
        calib_images: INT8: photos sampled from it.

    The end-to-end options are :class:`~featherface_deploy.exporters.end2end_options.End2EndOptions`'s (the recipe's
    ONNX is the end-to-end graph; TensorRT ≥ 8.5; ``pre_nms_top_k`` ≤ 3840, its TopK limit).
    """

    imgsz: int | tuple[int, int] = IMGSZ.field()
    trt_version: str = ExportOption("trt-recipe: the device's TensorRT (8.2, 8.5, 8.6, 10.3…)").field("10.3")
    workspace: int = WORKSPACE.field()
    dla: int | None = DLA.field()
    calib_dir: str | Path | None = CALIB_DIR.field(only=("int8",))
    calib_images: int = CALIB_IMAGES.field(only=("int8",))

    def onnx_options(self, dcn: str, end2end: bool | None = None) -> OnnxOptions:
        """The ONNX export this recipe carries (the end-to-end graph when asked; ``end2end`` overrides)."""
        end2end = self.end2end if end2end is None else end2end
        return OnnxOptions(imgsz=self.imgsz, dcn=dcn, end2end=end2end, max_det=self.max_det, conf=self.conf,
                           nms_iou=self.nms_iou, pre_nms_top_k=self.pre_nms_top_k)

    def recipe(self, precision: str) -> RecipeOptions:
        """The :class:`~featherface_deploy.exporters.onnx2trt_recipe.RecipeOptions` of this version at ``precision``."""
        return _recipe_options(get_version(self.trt_version), precision, self.workspace, self.dla)

    def validate(self, row: Format) -> None:
        """Raises :class:`ExportError` for a build TensorRT cannot do, or INT8 without photos."""
        self.recipe(row.precision).validate()
        if self.end2end and row.precision == "int8" and get_version(self.trt_version).int8 != "qdq":
            raise ExportError(f"--end2end on --format {row.name} needs TensorRT 10.x or later (Q/DQ INT8): on "
                              f"{self.trt_version} the INT8 engine is built from a calibration cache, which would "
                              "quantize the decoding and NMS too; use --trt-version 10.3, or trt-recipe-fp16")
        self.onnx_options("portable").validate(get_format("onnx"))
        if row.precision == "int8" and self.calib_dir is None:
            raise ExportError("--int8 needs --calib-dir: a folder of photos like the deployment's")


def _recipe_options(version, precision: str, workspace: int, dla: int | None) -> RecipeOptions:
    # onnx2trt_recipe needs onnx: imported when a TensorRT row is validated (its probe passed), not with the CLI
    from featherface_deploy.exporters.onnx2trt_recipe import RecipeOptions

    return RecipeOptions(version, precision, workspace, dla)


# --- Core ML values ---------------------------------------------------------------------------------

def resolve_target(name: str):
    """The ``coremltools.target`` member called ``name``, if it can hold an ML Program.

    Raises:
        ExportError: Unknown to this coremltools, or too old for ML Programs; the message lists the valid ones.
        BackendNotInstalledError: coremltools is missing.
    """
    ct = require("coremltools", "coreml")
    valid = [t.name for t in ct.target if target_at_least(t, PROGRAM_FLOOR)]
    member = ct.target.__members__.get(name)
    if member is None or not target_at_least(member, PROGRAM_FLOOR):
        raise ExportError(f"unknown or unsupported Core ML target '{name}' (coremltools {ct.__version__} "
                          f"converts ML Programs for: {', '.join(valid)})")
    return member


def flexible_range(text: str) -> tuple[int, int]:
    """Parses ``"LO-HI"`` into (LO, HI), both positive multiples of 32.

    Raises:
        ExportError: Malformed or out of order.
    """
    parts = text.split("-")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ExportError(f"--flexible takes LO-HI, e.g. 320-1280; got '{text}'")
    low, high = (int(p) for p in parts)
    check_coreml_size(low, high)
    if low > high:
        raise ExportError(f"--flexible {text}: the lower bound is above the upper one")
    return low, high


def check_coreml_size(height: int, width: int) -> None:
    """Raises :class:`ExportError` unless both are positive multiples of 32."""
    if height <= 0 or width <= 0 or height % SIZE_DIVISOR or width % SIZE_DIVISOR:
        raise ExportError(f"Core ML input sizes must be positive multiples of {SIZE_DIVISOR}, got {height}x{width} "
                          "(e.g. 640x640 or 480x640)")


def target_at_least(target, floor_name: str) -> bool:
    """Whether ``target`` is at least ``floor_name``: target values are Core ML specification versions,
    shared by the platforms of one release (iOS16 = macOS13 = 7)."""
    floor = type(target).__members__[floor_name]
    return target.value >= floor.value
