"""The ``onnx-int8`` row: FP32 ONNX → calibrated QDQ INT8 ONNX, with the layer choices users make.

Calibration photos are sampled from ``--calib-dir`` (:mod:`featherface_deploy.calibration`),
then :func:`~featherface_deploy.exporters.onnx_quantize.quantize_onnx` (depthwise convolutions and
the DCN sampling path kept float by default). By default the result's detections are compared
with the FP32 model's on the calibration photos
(:func:`~featherface_deploy.exporters.int8_sensitivity.onnx_file_agreement`); when the agreement
falls short of :data:`~featherface_deploy.export_options.ONNX_AGREEMENT_THRESHOLD`, the greedy keep-float search of
:mod:`~featherface_deploy.exporters.int8_sensitivity` runs on its own. ``--search`` forces the
search (and its sensitivity ranking), ``--no-search`` writes the plain quantization unchecked.
Whether the search ran, the agreement and the share of MACs left float go into the contract.
With ``--end2end`` the quantized network is wrapped in the float input adapter and tail
(:func:`~featherface_deploy.exporters.end2end_compose.compose_end2end`): the calibration, the search and
the integer-kernel share are those of the raw network. The pipeline then checks the INT8 file (its raw
view, for an end-to-end file) against PyTorch with the INT8 tolerances before it is written.
"""

from __future__ import annotations

from pathlib import Path

from featherface_deploy.calibration import CalibrationConfig, build_calibration_set
from featherface_deploy.errors import ExportError
from featherface_deploy.contract import DecodeContract, End2EndSpec, write_sidecar
from featherface_deploy.exporters.common import ExportContext, ExportResult, size_pair, timed
from featherface_deploy.exporters.int8_sensitivity import search_keep_float
from featherface_deploy.exporters.onnx_quantize import quantize_onnx, with_facts
from featherface_deploy.harness.report import cpu_isa_flags, cpu_model
from featherface_deploy.export_options import ONNX_AGREEMENT_THRESHOLD, OnnxInt8Options
from featherface_deploy.file_writing import atomic_write_bytes
from featherface_deploy.metadata.onnx import read_contract, write_contract


def export(source: Path, out_path: Path, row, options: OnnxInt8Options, context: ExportContext) -> ExportResult:
    """Writes the QDQ INT8 model of an FP32 ONNX file, calibrated on ``options.calib_dir``.

    Returns:
        The :class:`ExportResult` (facts: ``kept_float``, ``float_fraction``, ``calibration_digest``).

    Raises:
        ExportError: A failed step; DatasetError: no readable calibration photo.
    """
    contract = read_contract(source)
    if options.placement == "inputs" and contract.extra.get("dcn") == "native":
        raise ExportError(f"{source} has the native DCN (TensorRT has no DeformConv): quantize an export made "
                          "with --dcn gather, or pass --placement fused")
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
        open_onnx, activations = context.opener("open_onnx"), context.opener("onnx_activations")
        result = timed(timings, "quantize", lambda: search_keep_float(
            source, out_path, calib, open_onnx, activations, options.quantization(), budget=options.budget(),
            contract=contract, log=context.log, forced=bool(options.search), threshold=ONNX_AGREEMENT_THRESHOLD)[0])
    integer_share = context.opener("onnx_integer_share")
    share = timed(timings, "integer_kernels", lambda: integer_share(result.path, (1, 3, *size)))
    result = with_facts(result, out_path, {**share.record(), "integer_kernels_on": _cpu_line()})
    context.log(f"  ONNX Runtime runs {100 * share.fraction:.1f}% of the MACs in integer kernels here "
                f"({share.integer_layers} of {share.layers} weight layers)")
    if options.placement == "inputs":
        context.log("  (TensorRT's Q/DQ pattern: ONNX Runtime dequantizes and runs float kernels, so on a CPU the FP32 "
                    "file is the faster one; docs/design/int8-kernels.md)")
    search = result.facts["search"]
    agreement = result.facts.get("agreement", {})
    context.log(f"  {len(result.kept_float)} layers kept float ({100 * result.float_fraction:.1f}% of MACs); "
                f"keep-float search {'ran' if search['ran'] else 'not run'} ({search['mode']})"
                + (f", final agreement {agreement['final']:.4f}" if agreement else ""))
    contract = result.contract
    spec = options.end2end_spec()
    if spec is not None:
        contract = timed(timings, "end2end", lambda: compose_file(Path(out_path), contract, spec))
        context.log(f"  end-to-end: float RGB adapter and tail (decode, NMS, gather) composed around the INT8 network")
    facts = {"kept_float": result.kept_float, "float_fraction": result.float_fraction,
             "calibration_digest": calib.digest, "search_ran": search["ran"], "agreement": agreement.get("final")}
    return ExportResult(Path(out_path), contract, timings, facts)


def compose_file(path: Path, contract: DecodeContract, spec: End2EndSpec) -> DecodeContract:
    """Rewrites the quantized file at ``path`` end to end (float adapter and tail around it); returns its contract."""
    import onnx

    from featherface_deploy.exporters.end2end_compose import compose_end2end
    from featherface_deploy.exporters.torch2onnx import check_onnx

    proto = compose_end2end(onnx.load(str(path)), contract, spec)
    check_onnx(proto)
    contract = contract.replace(postprocess="in-graph", end2end=spec)
    write_contract(proto, contract)
    atomic_write_bytes(path, proto.SerializeToString())
    write_sidecar(contract, path)
    return contract


def _cpu_line() -> str:
    """The CPU the integer-kernel share was measured on, with its instruction-set flags."""
    flags = cpu_isa_flags()
    return f"ONNX Runtime CPU provider on {cpu_model()}" + (f" ({', '.join(flags)})" if flags else "")
