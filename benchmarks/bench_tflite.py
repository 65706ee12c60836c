"""TFLite (LiteRT) for FeatherFace V1: conversion time, parity, AP per precision, latency vs ONNX Runtime.

One run, all at 640×640 (the deployment size; the subset's ≤416-pixel images
are fitted into it and padded, identically for every backend):

1. Conversion of V1 to FP32, FP16 and full-integer INT8 TFLite (NHWC input),
   each with its parity check, timed end to end (target < 5 min).
2. Detection-level match of TFLite FP32 vs PyTorch on the 200 subset images
   (one-to-one, IoU ≥ 0.99, scores ≥ 0.5), via ``verify.parity``.
3. WIDER FACE Easy / Medium / Hard AP on the subset for PyTorch FP32 and TFLite
   FP32 / FP16 / INT8 (targets: FP16 within 0.1 of FP32, INT8 drop ≤ 1.0).
4. Latency of LiteRT (XNNPACK, 2 threads) vs ONNX Runtime FP32 (2 threads) on
   the same input, interleaved round-robin, medians (target ≤ 1.2×).

Usage::

    python benchmarks/bench_tflite.py [--shared ../shared] [--iters 30] [--out DIR]

Writes ``benchmarks/results/tflite.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import default_shared, median_ms, time_interleaved, write_result

from featherface_deploy import FaceDetector
from featherface_deploy.evaluation import evaluate_widerface, list_images
from featherface_deploy.verify.parity import check_parity
from featherface_deploy.verify.tolerances import Tolerances
from featherface_deploy.exporters.torch2tflite import convert_fp32, scratch_key
from featherface_deploy.models import load_model
from featherface_deploy.pipeline import export_model
from featherface_deploy.runtimes.ort_runtime import OrtRuntime
from featherface_deploy.runtimes.tflite_runtime import TfliteRuntime
from featherface_deploy.runtimes.torch_runtime import TorchRuntime

SIZE = (640, 640)
THREADS = 2
PARITY_IMAGES = 8


def main() -> None:
    """Runs the benchmark and writes the result file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None, help="Keep the exported files here (default: temp).")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_tflite_"))
    out.mkdir(parents=True, exist_ok=True)
    weights = args.shared / "weights" / "featherface-v1.pth"
    subset = args.shared / "data" / "widerface-val-416"
    calib_dir = args.shared / "data" / "calibration"
    images = [path for _, _, path in list_images(subset)]
    model = load_model(weights).model

    # 1. conversion of every variant, parity included, timed end to end
    started = time.perf_counter()
    converted = convert_fp32(model, SIZE, "NHWC", "featherface-v1")
    scratch = {scratch_key(model, SIZE, "NHWC"): converted}  # one conversion serves the three rows
    results = {}
    for precision, row, options in (("fp32", "tflite", {}), ("fp16", "tflite-fp16", {}),
                                    ("int8", "tflite-int8", {"calib_dir": calib_dir, "calib_images": 100})):
        results[precision] = export_model(model, out / f"v1_{precision}.tflite", row, {"imgsz": SIZE, **options},
                                          parity_images=images[:PARITY_IMAGES], log=print, scratch=scratch,
                                          exist_ok=True)  # --out may be a folder kept from a run
    conversion_s = time.perf_counter() - started
    print(f"conversion of all variants: {conversion_s:.1f} s (litert_torch.convert {converted.seconds:.1f} s)")

    # 2. detection-level match on the 200 images: the reference gets the identical 640×640 tensors
    reference = TorchRuntime(model, threads=THREADS, contract=results["fp32"].contract)
    fp32 = TfliteRuntime(results["fp32"].path, threads=THREADS)
    match = check_parity(fp32, reference, images, Tolerances.fp32(), raise_on_failure=False)
    print(match.format())

    # 3. AP
    ap = {"torch_fp32": evaluate_widerface(FaceDetector(reference), subset).ap}
    for precision, result in results.items():
        ap[f"tflite_{precision}"] = evaluate_widerface(
            FaceDetector(TfliteRuntime(result.path, threads=THREADS)), subset).ap
        print(f"AP tflite {precision}: {ap[f'tflite_{precision}']}")

    # 4. latency: same 640×640 tensor for all, interleaved
    onnx = export_model(model, out / "v1_fp32.onnx", "onnx", {"imgsz": SIZE}, parity_images=images[:2],
                        exist_ok=True)
    runtimes = {"onnxruntime_fp32": OrtRuntime(onnx.path, threads=THREADS, allow_spinning=False), "litert_fp32": fp32,
                "litert_fp16": TfliteRuntime(results["fp16"].path, threads=THREADS),
                "litert_int8": TfliteRuntime(results["int8"].path, threads=THREADS)}
    batch = np.random.default_rng(0).uniform(-120, 130, (1, 3, *SIZE)).astype(np.float32)
    samples = time_interleaved({name: (lambda r=r: r.infer(batch)) for name, r in runtimes.items()}, args.iters)
    latency = {name: round(median_ms(values), 2) for name, values in samples.items()}
    ratio = latency["litert_fp32"] / latency["onnxruntime_fp32"]

    payload = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "size": list(SIZE), "threads": THREADS, "iterations": args.iters,
        "conversion_s": round(conversion_s, 1), "litert_torch_convert_s": round(converted.seconds, 1),
        "export_timings_s": {p: {k: round(v, 2) for k, v in r.timings.items()} for p, r in results.items()},
        "file_bytes": {p: r.facts["size_bytes"] for p, r in results.items()} | {"onnx_fp32": onnx.path.stat().st_size},
        "parity_on_export": {p: r.parity.format() for p, r in results.items()},
        "fp32_detection_match": {"images": match.images, "reference": match.reference_detections,
                                 "candidate": match.candidate_detections, "matched": match.matched,
                                 "match_rate": match.match_rate, "min_iou": match.min_matched_iou,
                                 "max_score_diff": match.max_score_diff, "max_abs": match.max_abs,
                                 "passed": match.passed},
        "ap": {name: {"easy": a.easy, "medium": a.medium, "hard": a.hard} for name, a in ap.items()},
        "latency_ms_median": latency, "litert_fp32_over_ort_fp32": round(ratio, 3),
        "int8": results["int8"].contract.extra["int8"],
    }
    path = write_result("tflite", payload)
    print(_markdown(payload))
    print(f"wrote {path}")


def _markdown(p: dict) -> str:
    ap = p["ap"]
    lat = p["latency_ms_median"]
    rows = ["| variant | file MB | Easy | Medium | Hard | p50 ms (2 thr) |", "|---|---|---|---|---|---|"]
    size = {"torch_fp32": None, "tflite_fp32": "fp32", "tflite_fp16": "fp16", "tflite_int8": "int8"}
    timing = {"tflite_fp32": "litert_fp32", "tflite_fp16": "litert_fp16", "tflite_int8": "litert_int8"}
    for name, a in ap.items():
        mb = f"{p['file_bytes'][size[name]] / 1e6:.2f}" if size[name] else "–"
        ms = f"{lat[timing[name]]:.1f}" if name in timing else "–"
        rows.append(f"| {name} | {mb} | {100 * a['easy']:.2f} | {100 * a['medium']:.2f} | {100 * a['hard']:.2f} | {ms} |")
    rows.append(f"| onnxruntime_fp32 | {p['file_bytes']['onnx_fp32'] / 1e6:.2f} | | | | {lat['onnxruntime_fp32']:.1f} |")
    m = p["fp32_detection_match"]
    rows.append("")
    rows.append(f"LiteRT FP32 / ORT FP32 latency: {p['litert_fp32_over_ort_fp32']:.2f}× (target ≤ 1.2×); "
                f"conversion of all variants {p['conversion_s']:.0f} s (target < 300 s); FP32 vs PyTorch on "
                f"{m['images']} images: {m['matched']}/{max(m['reference'], m['candidate'])} detections matched "
                f"(min IoU {m['min_iou']:.4f}, rate {m['match_rate']:.3f})")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
