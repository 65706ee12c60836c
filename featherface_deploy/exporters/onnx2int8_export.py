"""The ``onnx-int8`` row: FP32 ONNX → calibrated QDQ INT8 ONNX, with the layer choices users make.

Calibration photos are sampled from ``--calib-dir`` (:mod:`featherface_deploy.calibration`),
then :func:`~featherface_deploy.exporters.onnx2int8.quantize_onnx` (depthwise convolutions and
the DCN sampling path kept float by default), or the greedy sensitivity search of
:mod:`~featherface_deploy.exporters.int8_sensitivity` with ``--search``. The pipeline then
checks the INT8 file against PyTorch with the INT8 tolerances before it is written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from featherface_deploy.errors import ExportError
from featherface_deploy.exporters.common import ExportContext, ExportResult, size_pair, timed
from featherface_deploy.exporters.dcn_choice import int8_source_lowering
from featherface_deploy.exporters.onnx2int8 import Int8Options, quantize_onnx
from featherface_deploy.metadata.onnx import read_contract


@dataclass(frozen=True)
class OnnxInt8Options:
    """How to calibrate and which layers to keep in float (the options of the ``onnx-int8`` row).

    Attributes:
        calib_dir: Folder of calibration photos (never the evaluation images); required.
        calib_images: Number of photos sampled (deterministically) from it.
        calib_method: ``minmax``, ``percentile`` or ``entropy``.
        keep_float: Node names or op types to keep in float, besides the depthwise convolutions.
        quantize_depthwise: Quantize the depthwise convolutions too (costs ~9 AP points on V1).
        search: Also find layers to keep in float by the greedy sensitivity search (minutes).
        search_budget: Detection agreement with FP32 (on the calibration photos) the search must reach.
        quantize_bias: int32 biases with their DequantizeLinear (ORT's default; TensorRT wants ``False``).
        imgsz: Calibration size for a dynamic-shape source (a fixed-size source uses its own).
    """

    calib_dir: str | Path | None = None
    calib_images: int = 100
    calib_method: str = "minmax"
    keep_float: tuple[str, ...] = ()
    quantize_depthwise: bool = False
    search: bool = False
    search_budget: float = 0.97
    quantize_bias: bool = True
    imgsz: int | tuple[int, int] = (640, 640)

    def quantization(self) -> Int8Options:
        """The :class:`Int8Options` these choices mean."""
        return Int8Options(method=self.calib_method, keep_float_nodes=tuple(self.keep_float),
                           keep_float_depthwise=not self.quantize_depthwise, quantize_bias=self.quantize_bias)

    def validate(self, row=None) -> None:
        """Raises :class:`ExportError` with the fix for a missing calibration folder or a bad value."""
        if self.calib_dir is None:
            raise ExportError("INT8 needs --calib-dir: a folder of photos like the deployment's (never the "
                              "evaluation images)")
        if self.calib_images < 1 or not 0 <= self.search_budget <= 1:
            raise ExportError("calib_images must be ≥ 1 and search_budget in [0, 1]")
        self.quantization().validate()

    def source_options(self, source):
        """The FP32 source's options to quantize from: ``auto`` DCN → ``gather``; refuses ``native`` (no INT8 kernel)."""
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
    if options.search:
        context.log(f"  sensitivity search (agreement budget {options.search_budget}):")
        result = timed(timings, "quantize", lambda: search_keep_float(
            source, out_path, calib, options.quantization(), budget=options.search_budget, per_round=3,
            contract=contract, log=context.log)[0])
    else:
        result = timed(timings, "quantize", lambda: quantize_onnx(source, out_path, calib, options.quantization(),
                                                                  contract=contract))
    context.log(f"  {len(result.kept_float)} layers kept float ({100 * result.float_fraction:.1f}% of MACs)")
    facts = {"kept_float": result.kept_float, "float_fraction": result.float_fraction,
             "calibration_digest": calib.digest}
    return ExportResult(Path(out_path), result.contract, timings, facts)
