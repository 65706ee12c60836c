"""FP32 vs INT8 ONNX of FeatherFace: WIDER-subset AP, file size, ORT latency, float fraction.

Models from one dynamic FP32 export:

- ``fp32``: the export itself;
- ``int8 (default)``: :func:`quantize_onnx` defaults (Conv/MatMul-only QDQ,
  symmetric int8, DCN sampling and depthwise convolutions float);
- ``int8 all convs``: the same with the depthwise convolutions quantized too;
- ``int8 search`` (with ``--search``): the layers kept float found by
  :func:`search_keep_float` on top of the default;
- ``int8 naive``: ONNX Runtime's defaults, every supported op type quantized
  (symmetric int8 too), the way a first attempt does it.

Calibration: ``<shared>/data/calibration`` only (640×640, all 24 images).
Evaluation: ``<shared>/data/widerface-val-416`` at native 416×416, conf ≥ 0.02,
NMS 0.4. Latency: one 640×640 input, ONNX Runtime CPU, 2 threads, median.
An AVX2 CPU without VNNI is not expected to run INT8 faster.

Usage: ``python benchmarks/bench_onnx_int8.py [--shared DIR] [--fp32 model.onnx] [--search]``
Writes ``benchmarks/results/onnx_int8.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import default_shared, machine_facts, median_ms, time_interleaved, write_result  # noqa: E402
from featherface_deploy.calibration import CalibrationConfig, OrtCalibrationReader, build_calibration_set  # noqa: E402
from featherface_deploy.detector import FaceDetector  # noqa: E402
from featherface_deploy.evaluation import evaluate_widerface  # noqa: E402
from featherface_deploy.exporters.int8_sensitivity import search_keep_float  # noqa: E402
from featherface_deploy.exporters.onnx_quantize import Int8Options, prepare_for_quantization, quantize_onnx  # noqa: E402
from featherface_deploy.metadata.onnx import read_contract, write_contract  # noqa: E402
from featherface_deploy.pipeline.builder import onnx_activations, open_onnx  # noqa: E402
from featherface_deploy.runtimes.ort_runtime import OrtRuntime  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--weights", default="featherface-v1", help="checkpoint name in <shared>/weights")
    parser.add_argument("--fp32", type=Path, help="an existing dynamic FP32 .onnx (exported if omitted)")
    parser.add_argument("--workdir", type=Path, help="where the models are written (a temp dir if omitted)")
    parser.add_argument("--search", action="store_true", help="also run the keep-float search (minutes)")
    parser.add_argument("--budget", type=float, default=0.97, help="detection agreement of the keep-float search")
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-int8-"))
    workdir.mkdir(parents=True, exist_ok=True)
    fp32 = args.fp32 or _export(args.shared / "weights" / f"{args.weights}.pth", workdir / "fp32.onnx")
    contract = read_contract(fp32)
    calib = build_calibration_set(args.shared / "data" / "calibration", contract,
                                  CalibrationConfig(num_images=100, seed=0, input_size=(640, 640)))
    _log(f"calibration: {len(calib)} images, digest {calib.digest[:12]}")
    started = time.perf_counter()
    default = quantize_onnx(fp32, workdir / "int8.onnx", calib)
    quantize_s = time.perf_counter() - started
    all_convs = quantize_onnx(fp32, workdir / "int8-all-convs.onnx", calib,
                              options=Int8Options(keep_float_depthwise=False))
    naive = _naive(fp32, workdir / "int8-naive.onnx", calib, workdir)
    models = {"fp32": (fp32, 0.0), "int8 (default)": (default.path, default.float_fraction),
              "int8 all convs": (all_convs.path, all_convs.float_fraction),
              "int8 naive (all ops)": (naive, 0.0)}
    payload = {"model": args.weights, "calibration": calib.describe(), "quantize_seconds": round(quantize_s, 1),
               "keep_float_nodes": list(default.kept_float)}
    if args.search:
        started = time.perf_counter()
        searched, history, _ = search_keep_float(fp32, workdir / "int8-search.onnx", calib, open_onnx,
                                                 onnx_activations, budget=args.budget, forced=True, log=_log)
        models["int8 search"] = (searched.path, searched.float_fraction)
        payload.update(search_seconds=round(time.perf_counter() - started, 1),
                       search_keep_float_nodes=list(searched.kept_float),
                       search_history=[vars(step) for step in history])
    payload["rows"] = _measure(models, args.shared / "data" / "widerface-val-416", args.iterations)
    rows = payload["rows"]
    path = write_result("onnx_int8", payload)
    print(_markdown(rows, machine_facts()))
    _log(f"wrote {path}")


def _export(checkpoint: Path, out: Path) -> Path:
    from featherface_deploy.pipeline import export_model

    _log(f"exporting {checkpoint.name} (dynamic) …")
    export_model(checkpoint, out, "onnx", {"imgsz": (640, 640), "dynamic": True}, exist_ok=True)
    return out


def _naive(fp32: Path, out: Path, calib, workdir: Path) -> Path:
    """ORT defaults over every op type it knows (symmetric int8): the measured failure mode."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    import onnx

    prepared = prepare_for_quantization(fp32, workdir / "prepared.onnx")
    quantize_static(str(prepared), str(out), OrtCalibrationReader(calib), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    proto = onnx.load(str(out))
    write_contract(proto, read_contract(fp32).replace(precision="int8", extra={"int8": {"naive": True}}))
    onnx.save(proto, str(out))
    return out


def _measure(models: dict, widerface: Path, iterations: int) -> list[dict]:
    sample = np.zeros((1, 3, 640, 640), dtype=np.float32)
    runtimes = {name: OrtRuntime(path, threads=2, allow_spinning=False) for name, (path, _) in models.items()}
    timings = time_interleaved({name: (lambda r=rt: r.infer(sample)) for name, rt in runtimes.items()}, iterations)
    rows = []
    for name, (path, fraction) in models.items():
        _log(f"evaluating {name} …")
        ap = evaluate_widerface(FaceDetector(runtimes[name]), widerface).ap.percentages
        rows.append({"model": name, "file": str(path), "size_mb": round(Path(path).stat().st_size / 1e6, 3),
                     "latency_ms_640_2threads": round(median_ms(timings[name]), 2),
                     "ap_easy": round(ap["easy"], 2), "ap_medium": round(ap["medium"], 2),
                     "ap_hard": round(ap["hard"], 2), "float_mac_fraction": round(fraction, 4)})
    return rows


def _markdown(rows: list[dict], facts: dict) -> str:
    base = rows[0]
    lines = [f"FeatherFace ONNX FP32 vs INT8 — {facts['cpu']}, onnxruntime {facts['versions'].get('onnxruntime')}",
             "", "| model | Easy | Medium | Hard | ΔAP (E/M/H) | size MB | 640² ms (2 thr) | float MACs |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        delta = "/".join(f"{row[k] - base[k]:+.2f}" for k in ("ap_easy", "ap_medium", "ap_hard"))
        lines.append(f"| {row['model']} | {row['ap_easy']:.2f} | {row['ap_medium']:.2f} | {row['ap_hard']:.2f} | "
                     f"{delta} | {row['size_mb']:.2f} | {row['latency_ms_640_2threads']:.1f} | "
                     f"{100 * row['float_mac_fraction']:.1f}% |")
    return "\n".join(lines)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
