"""Core ML: conversion time, op census, size, reference-interpreter speed and WIDER AP of FP32 / FP16 / 8-bit weights.

Converts a checkpoint to the three Core ML rows (one shared trace, timed in the
first row only), checks each written ``.mlpackage`` against PyTorch on the
calibration photos through the numpy reference interpreter (not Core ML: this
runs on Linux), then evaluates PyTorch and the three packages on the same
WIDER FACE images, fitted into ``--imgsz`` (letterboxed, as ``compare`` does).

Speed is the time per WIDER image of each evaluation (JPEG decoding, pre,
inference, decode + NMS; the first image, which also waits for the ground
truth, left out), reported as the median and the 10th / 90th percentiles, so one
noisy moment on a shared machine does not set the figure. Interpreter speed is
numpy's, not Core ML's. Conversion times are one run each.

    python benchmarks/bench_coreml.py            # all 200 images
    python benchmarks/bench_coreml.py --images 40

Writes ``benchmarks/results/coreml.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from featherface_deploy import FaceDetector
from featherface_deploy.evaluation import evaluate_widerface
from featherface_deploy.formats import FORMATS
from featherface_deploy.models import load_model
from featherface_deploy.pipeline import export_model
from featherface_deploy.runtimes.coreml_runtime import CoremlRuntime
from featherface_deploy.runtimes.torch_runtime import TorchRuntime

ROWS = tuple(row.name for row in FORMATS if row.family == "coreml")
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    shared = Path(os.environ.get("FEATHERFACE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(shared / "weights" / "featherface-v1.pth"))
    parser.add_argument("--widerface", default=str(shared / "data" / "widerface-val-416"))
    parser.add_argument("--calib-dir", default=str(shared / "data" / "calibration"))
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--images", type=int, default=200, help="WIDER images to evaluate (200 = all)")
    parser.add_argument("--out", default=str(RESULTS / "coreml.json"))
    args = parser.parse_args()

    model = load_model(args.weights).model
    scratch: dict = {}  # the three rows share one trace
    size = (args.imgsz, args.imgsz)
    parity_images = sorted(Path(args.calib_dir).glob("*.jpg"))[:3]
    reference = TorchRuntime(model)
    work = Path(tempfile.mkdtemp(prefix="bench-coreml-"))
    results = {"weights": Path(args.weights).name, "imgsz": args.imgsz, "images": args.images, "rows": {}}
    for row_name in ROWS:
        started = time.perf_counter()
        written = export_model(model, work / f"{row_name}.mlpackage", row_name, {"imgsz": size},
                               parity_images=parity_images, log=print, scratch=scratch)
        seconds = time.perf_counter() - started
        report = written.parity
        results["rows"][row_name] = {
            "export_s": round(seconds, 1), "timings": {k: round(v, 1) for k, v in written.timings.items()},
            "size_mb": round(sum(p.stat().st_size for p in written.path.rglob("*") if p.is_file()) / 1e6, 2),
            "op_counts": written.facts["op_counts"], "op_types": len(written.facts["op_counts"]),
            "parity": {"max_abs": {k: float(f"{v:.3g}") for k, v in report.max_abs.items()},
                       "match_rate": report.match_rate, "passed": report.passed},
        }
    results["conversion_total_s"] = round(sum(r["export_s"] for r in results["rows"].values()), 1)
    detectors = {"torch": FaceDetector(reference, size=size)}
    detectors.update({row: FaceDetector(CoremlRuntime(work / f"{row}.mlpackage", engine="interpreter"), size=size)
                      for row in ROWS})
    for row, detector in detectors.items():
        stamps = [time.perf_counter()]
        evaluation = evaluate_widerface(detector, args.widerface, limit=args.images,
                                        on_image=lambda: stamps.append(time.perf_counter()))
        ap = {k: round(v, 2) for k, v in evaluation.ap.percentages.items()}
        results.setdefault("ap", {})[row] = ap
        results.setdefault("ms_per_image", {})[row] = _percentiles(np.diff(stamps)[1:] * 1000)
        print(row, ap, results["ms_per_image"][row], flush=True)
    results["ap_drop_vs_torch"] = {row: {k: round(results["ap"]["torch"][k] - v, 2) for k, v in ap.items()}
                                   for row, ap in results["ap"].items() if row != "torch"}
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def _percentiles(milliseconds: np.ndarray) -> dict[str, float]:
    """Median and 10th / 90th percentiles of per-image times."""
    p10, p50, p90 = np.percentile(milliseconds, [10, 50, 90])
    return {"p50": round(float(p50), 1), "p10": round(float(p10), 1), "p90": round(float(p90), 1),
            "images": int(milliseconds.size)}


if __name__ == "__main__":
    main()
