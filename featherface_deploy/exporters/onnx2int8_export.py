"""The ``onnx-int8`` row: FP32 ONNX → calibrated QDQ INT8 ONNX, with the layer choices users make.

Calibration photos are sampled from ``--calib-dir`` (:mod:`featherface_deploy.calibration`),
then :func:`~featherface_deploy.exporters.onnx2int8.quantize_onnx` (depthwise convolutions and
the DCN sampling path kept float by default). By default the result's detections are compared
with the FP32 model's on the calibration photos
(:func:`~featherface_deploy.exporters.int8_sensitivity.detection_agreement`); when the agreement
falls short of :data:`AGREEMENT_THRESHOLD`, the greedy keep-float search of
:mod:`~featherface_deploy.exporters.int8_sensitivity` runs on its own. ``--search`` forces the
search (and its sensitivity ranking), ``--no-search`` writes the plain quantization unchecked.
Whether the search ran, the agreement and the share of MACs left float go into the contract.
The pipeline then checks the INT8 file against PyTorch with the INT8 tolerances before it is written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from featherface_deploy.errors import ExportError
from featherface_deploy.exporters.common import ExportContext, ExportResult, size_pair, timed
from featherface_deploy.exporters.dcn_choice import int8_source_lowering
from featherface_deploy.exporters.onnx2int8 import Int8Options, quantize_onnx
from featherface_deploy.formats import END2END_ROWS
from featherface_deploy.metadata.onnx import read_contract

# Detection agreement with FP32 on the calibration photos, calibrated against the 1-point AP budget on the
# WIDER subset at 640×640 (README, "INT8 (ONNX, QDQ)"). V1's plain quantization agrees 0.978 and meets the AP
# budget; V2-CA's agrees 0.972 and misses it (−1.4/−1.6/−0.6): below AGREEMENT_THRESHOLD the search runs.
# Agreement does not map to AP the same way on both models (V2-CA at 0.982 still misses Medium by 0.05),
# so the search aims higher, at SEARCH_BUDGET (V2-CA ends at 0.985 after 12 rounds, 38.8% of MACs float).
# Two checkpoints only: a thin calibration.
AGREEMENT_THRESHOLD = 0.975
SEARCH_BUDGET = 0.99


@dataclass(frozen=True)
class OnnxInt8Options:
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
            reach (``None``: :data:`SEARCH_BUDGET`); an unforced search starts below
            :data:`AGREEMENT_THRESHOLD` or this budget, whichever is lower.
        quantize_bias: int32 biases with their DequantizeLinear (ORT's default; TensorRT wants ``False``).
        reduce_range: 7-bit weights, for x86 CPUs without VNNI whose 8-bit dot products saturate
            (``--reduce-range``; README, "INT8 on ARM kernels").
        imgsz: Calibration size for a dynamic-shape source (a fixed-size source uses its own).
    """

    calib_dir: str | Path | None = None
    calib_images: int = 100
    calib_method: str = "minmax"
    keep_float: tuple[str, ...] = ()
    quantize_depthwise: bool = False
    search: bool | None = None
    search_budget: float | None = None
    quantize_bias: bool = True
    reduce_range: bool = False
    imgsz: int | tuple[int, int] = (640, 640)

    def quantization(self) -> Int8Options:
        """The :class:`Int8Options` these choices mean."""
        return Int8Options(method=self.calib_method, keep_float_nodes=tuple(self.keep_float),
                           keep_float_depthwise=not self.quantize_depthwise, quantize_bias=self.quantize_bias,
                           reduce_range=self.reduce_range)

    def validate(self, row=None) -> None:
        """Raises :class:`ExportError` with the fix for a missing calibration folder or a bad value."""
        if self.calib_dir is None:
            raise ExportError("INT8 needs --calib-dir: a folder of photos like the deployment's (never the "
                              "evaluation images)")
        if self.calib_images < 1 or not 0 <= self.budget() <= 1:
            raise ExportError("calib_images must be ≥ 1 and search_budget in [0, 1]")
        if self.search is False and self.search_budget is not None:
            raise ExportError("--search-budget is the agreement the search must reach, and --no-search never "
                              "searches nor measures it: drop one of them")
        self.quantization().validate()

    def budget(self) -> float:
        """The search's agreement budget: ``search_budget``, else :data:`SEARCH_BUDGET`."""
        return SEARCH_BUDGET if self.search_budget is None else self.search_budget

    def source_options(self, source):
        """The FP32 source's options to quantize from: ``auto`` DCN → ``gather``; refuses ``native`` (no INT8 kernel)."""
        if source.end2end:
            raise ExportError("--end2end is not available for --format onnx-int8 yet (quantizing it would have to "
                              f"keep the decoding and NMS float); it applies to: {', '.join(END2END_ROWS)}")
        replaced = dataclasses.replace(source, dcn=int8_source_lowering(source.dcn))
        replaced.validate()
        return replaced

    @staticmethod
    def accepts_source(contract) -> bool:
        """Whether an FP32 ONNX file with this contract can be quantized (not with ``DeformConv``: no INT8 kernel)."""
        return contract.extra.get("dcn") != "native"


def export(source: Path, out_path: Path, row, options: OnnxInt8Options, context: ExportContext) -> ExportResult:
    """Writes the QDQ INT8 model of an FP32 ONNX file, calibrated on ``options.calib_dir``.

    Returns:
        The :class:`ExportResult` (facts: ``kept_float``, ``float_fraction``, ``calibration_digest``).

    Raises:
        ExportError: A failed step; DatasetError: no readable calibration photo.
    """
    from featherface_deploy.calibration import CalibrationConfig, build_calibration_set
    from featherface_deploy.exporters.int8_sensitivity import search_keep_float

    contract = read_contract(source)
    if not OnnxInt8Options.accepts_source(contract):
        raise ExportError(f"{source} has the native DCN (DeformConv has no INT8 kernel): quantize an export made "
                          "with --dcn portable")
    size = contract.input_size or size_pair(options.imgsz)
    timings: dict[str, float] = {}
    calib = timed(timings, "calibration_set", lambda: build_calibration_set(
        Path(options.calib_dir), contract, CalibrationConfig(num_images=options.calib_images, input_size=size)))
    context.log(f"  calibration: {len(calib)} photos from {options.calib_dir} (content hash {calib.digest[:12]})")
    if options.search is False:
        result = timed(timings, "quantize", lambda: quantize_onnx(
            source, out_path, calib, options.quantization(), contract=contract,
            extra_facts={"search": {"mode": "off", "ran": False}}))
    else:
        result = timed(timings, "quantize", lambda: search_keep_float(
            source, out_path, calib, options.quantization(), budget=options.budget(), per_round=3,
            contract=contract, log=context.log, forced=bool(options.search), threshold=AGREEMENT_THRESHOLD)[0])
    search = result.facts["search"]
    agreement = result.facts.get("agreement", {})
    context.log(f"  {len(result.kept_float)} layers kept float ({100 * result.float_fraction:.1f}% of MACs); "
                f"keep-float search {'ran' if search['ran'] else 'not run'} ({search['mode']})"
                + (f", final agreement {agreement['final']:.4f}" if agreement else ""))
    facts = {"kept_float": result.kept_float, "float_fraction": result.float_fraction,
             "calibration_digest": calib.digest, "search_ran": search["ran"], "agreement": agreement.get("final")}
    return ExportResult(Path(out_path), result.contract, timings, facts)
