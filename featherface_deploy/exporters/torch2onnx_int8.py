"""PyTorch → INT8 ONNX in one step: FP32 export, calibration, float-kept layers, QDQ quantization, parity.

The INT8 model is only written once it has passed a detection-level parity
check against PyTorch (INT8 tolerances: matched boxes and scores, no raw-tensor
limits). Which layers stay in float: by default the depthwise convolutions
(see :mod:`~featherface_deploy.exporters.onnx2int8`: a full quantization of
this model loses ~9 AP points, this loses < 0.5), plus any given with
``keep_float``, or those found by the greedy sensitivity search of
:mod:`~featherface_deploy.exporters.int8_sensitivity` (``search=True``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from featherface_deploy.calibration import CalibrationConfig, build_calibration_set
from featherface_deploy.contract import DecodeContract, write_sidecar
from featherface_deploy.file_writing import atomic_write_bytes
from featherface_deploy.exporters.int8_sensitivity import search_keep_float
from featherface_deploy.exporters.onnx2int8 import Int8Options, quantize_onnx
from featherface_deploy.exporters.parity import ParityReport, Tolerances, check_parity
from featherface_deploy.exporters.torch2onnx import export_onnx

Log = Callable[[str], None]


@dataclass(frozen=True)
class Int8ExportConfig:
    """How to calibrate and which layers to keep in float.

    Attributes:
        calib_dir: Folder of calibration photos (never the evaluation images).
        calib_images: Number of photos sampled (deterministically) from it.
        method: Calibration method: ``minmax``, ``percentile`` or ``entropy``.
        keep_float: Node names or op types to keep in float, besides the depthwise convolutions.
        search: Also run the greedy sensitivity search (slow: minutes) for more float layers.
        budget: Detection agreement with FP32 (on the calibration photos) the search must reach.
        keep_float_depthwise: Keep depthwise convolutions in float (the accurate default).
    """

    calib_dir: Path
    calib_images: int = 100
    method: str = "minmax"
    keep_float: tuple[str, ...] = ()
    search: bool = False
    budget: float = 0.97
    keep_float_depthwise: bool = True


@dataclass(frozen=True)
class Int8ExportResult:
    """What :func:`export_onnx_int8` wrote.

    Attributes:
        path: The INT8 ONNX model.
        sidecar: Its contract JSON.
        contract: The embedded contract (``precision="int8"``, facts under ``extra["int8"]``).
        parity: Detection-level parity against PyTorch.
        kept_float: Layers left in float (by request or by the search).
        float_fraction: Share of the Conv/MatMul MACs left in float.
        timings: Seconds per step.
    """

    path: Path
    sidecar: Path
    contract: DecodeContract
    parity: ParityReport
    kept_float: tuple[str, ...]
    float_fraction: float
    timings: dict[str, float] = field(default_factory=dict)


def export_onnx_int8(
    checkpoint: str | Path,
    out_path: str | Path,
    config: Int8ExportConfig,
    imgsz: tuple[int, int] = (640, 640),
    dynamic: bool = False,
    parity_images: Sequence[str | Path] = (),
    architecture: str | None = None,
    log: Log | None = None,
) -> Int8ExportResult:
    """Exports a checkpoint to a QDQ INT8 ONNX model (symmetric int8, TensorRT's explicit quantization).

    Args:
        checkpoint: The ``.pth`` checkpoint.
        out_path: The ``.onnx`` file to write (sidecar ``<out_path>.json``).
        config: Calibration and float-layer choices.
        imgsz: Input (height, width); also the calibration size.
        dynamic: Dynamic batch, height and width.
        parity_images: Images for the parity check; none → a synthetic image.
        architecture: Registered name (detected if omitted).
        log: Called with one line per step.

    Returns:
        The :class:`Int8ExportResult`.

    Raises:
        ExportError: Bad options or a failed step.
        ParityError: The INT8 detections disagree with PyTorch; nothing is written.
        DatasetError: The calibration folder has no readable image.
    """
    from featherface_deploy.models import load_model
    from featherface_deploy.runtimes.ort_runtime import OrtRuntime
    from featherface_deploy.runtimes.torch_runtime import TorchRuntime

    log = log or (lambda message: None)
    out_path, timings, started = Path(out_path), {}, time.perf_counter()
    options = Int8Options(method=config.method, keep_float_nodes=config.keep_float,
                          keep_float_depthwise=config.keep_float_depthwise)
    options.validate()
    with tempfile.TemporaryDirectory(prefix="featherface-int8-export-") as scratch:
        fp32 = export_onnx(checkpoint, Path(scratch) / "fp32.onnx", imgsz=imgsz, dynamic=dynamic,
                           parity_images=parity_images, architecture=architecture, log=log)
        timings["fp32"] = time.perf_counter() - started
        calib = build_calibration_set(config.calib_dir, fp32.contract,
                                      CalibrationConfig(num_images=config.calib_images, input_size=imgsz))
        log(f"calibration: {len(calib)} images from {config.calib_dir} (content hash {calib.digest[:12]})")
        quantized = Path(scratch) / "int8.onnx"
        step = time.perf_counter()
        if config.search:
            log(f"sensitivity search (agreement budget {config.budget}):")
            result, _, _ = search_keep_float(fp32.path, quantized, calib, options, budget=config.budget,
                                             per_round=3, log=log)
        else:
            result = quantize_onnx(fp32.path, quantized, calib, options=options)
        timings["quantize"] = time.perf_counter() - step
        log(f"  {len(result.kept_float)} layers kept float ({100 * result.float_fraction:.1f}% of MACs)")
        step = time.perf_counter()
        reference = TorchRuntime(load_model(checkpoint, architecture).model)
        parity = check_parity(OrtRuntime(quantized), reference, parity_images, Tolerances.int8())
        timings["parity"] = time.perf_counter() - step
        log(parity.format())
        atomic_write_bytes(out_path, quantized.read_bytes())
    sidecar = write_sidecar(result.contract, out_path)
    timings["total"] = time.perf_counter() - started
    log(f"  wrote {out_path} ({out_path.stat().st_size / 1e6:.2f} MB) and {sidecar.name} in {timings['total']:.1f} s")
    return Int8ExportResult(out_path, sidecar, result.contract, parity, result.kept_float, result.float_fraction,
                            timings)
