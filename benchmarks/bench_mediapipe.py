"""FeatherFace through MediaPipe's ObjectDetector task: AP and latency beside our own pipeline on the same file.

For V1 and V2-CA, FP32 and INT8 (``export --format mediapipe [--int8]`` at 640×640):

1. WIDER FACE Easy / Medium / Hard AP on the subset **through the task**
   (its resize, decoding and NMS at its fixed IoU 0.3; score threshold 0.02),
   with the frame passed as it is (the task stretches it to 640×640) and
   padded to square first (the recipe in docs/formats/mediapipe.md);
2. our AP for the same file, opened raw with LiteRT (our letterbox, decoding
   and NMS), at the task's NMS 0.3 and at the authors' 0.4;
3. the task's ``detect`` latency (its preprocessing + inference + decoding +
   NMS, timed inside the worker around ``ObjectDetector.detect``) beside our
   harness's per-image latency of the same file raw (pre + infer + post), on
   the same photos, median of ``--iters`` rounds.

Usage (a quiet machine; ``python -m featherface_deploy.runtimes.mediapipe_env`` first)::

    python benchmarks/bench_mediapipe.py [--shared ../shared] [--models v1 v2-ca] [--precisions fp32 int8]
        [--limit N] [--iters 20] [--files DIR]

Writes ``benchmarks/results/mediapipe.json`` (with the CPU model and its ISA
flags) and prints a Markdown table. ``--limit 3 --iters 2 --models v1
--precisions fp32`` is the smoke test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from common import default_shared, write_result

from featherface_deploy import FaceDetector, PostprocessConfig
from featherface_deploy.evaluation import evaluate_widerface, list_images, load_ground_truth
from featherface_deploy.exporters.torch2mediapipe import TASK_NMS_IOU
from featherface_deploy.pipeline import export_model
from featherface_deploy.postprocess import load_image
from featherface_deploy.runtimes.mediapipe_runtime import MediapipeRuntime

CHECKPOINTS = {"v1": "featherface-v1.pth", "v2-ca": "featherface-v2-ca.pth"}
ROWS = {"fp32": "mediapipe", "int8": "mediapipe-int8"}
CONF = 0.02


def build_file(model: str, precision: str, shared: Path, folder: Path) -> Path:
    """The exported file (reused when it exists: the export is not what this measures)."""
    path = folder / f"featherface-{model}-{ROWS[precision]}.tflite"
    if not path.exists():
        options = {"calib_dir": str(shared / "data" / "calibration")} if precision == "int8" else {}
        export_model(shared / "weights" / CHECKPOINTS[model], path, ROWS[precision], options, log=print)
    return path


def task_ap(path: Path, root: Path, limit: int | None, pad: bool, truth) -> dict:
    """AP through the task, the frame stretched (``pad=False``) or padded to square first."""
    runtime = MediapipeRuntime(path, pad_to_square=pad)
    try:
        detector = FaceDetector(runtime, PostprocessConfig(conf_threshold=CONF, nms_iou=TASK_NMS_IOU))
        return evaluate_widerface(detector, root, limit, ground_truth=truth).ap.percentages
    finally:
        runtime.close()


def our_ap(path: Path, root: Path, limit: int | None, nms_iou: float, truth) -> dict:
    """AP of the same file through LiteRT with our preprocessing, decoding and NMS."""
    detector = FaceDetector.load(path, PostprocessConfig(conf_threshold=CONF, nms_iou=nms_iou), raw=True)
    return evaluate_widerface(detector, root, limit, ground_truth=truth).ap.percentages


def latency(path: Path, images: list, iters: int) -> dict:
    """Median ms per image: the task's detect() (timed in its worker) and our harness (pre + infer + post)."""
    import time

    task_runtime = MediapipeRuntime(path)
    task = FaceDetector(task_runtime, PostprocessConfig(conf_threshold=CONF, nms_iou=TASK_NMS_IOU))
    ours = FaceDetector.load(path, PostprocessConfig(conf_threshold=CONF, nms_iou=TASK_NMS_IOU), raw=True)
    task_ms, ours_ms, wall_ms = [], [], []
    try:
        for image in images:  # warm-up
            task(image), ours(image)
        for _ in range(iters):
            for image in images:
                started = time.perf_counter()
                task(image)
                wall_ms.append((time.perf_counter() - started) * 1000)
                task_ms.append(task_runtime.last_task_ms)
                started = time.perf_counter()
                ours(image)
                ours_ms.append((time.perf_counter() - started) * 1000)
    finally:
        task_runtime.close()
    return {"task_detect_ms": statistics.median(task_ms), "task_with_ipc_ms": statistics.median(wall_ms),
            "ours_litert_ms": statistics.median(ours_ms), "images": len(images), "iters": iters}


def main(argv: list[str] | None = None) -> int:
    """Runs the grid and writes the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--models", nargs="+", default=list(CHECKPOINTS), choices=list(CHECKPOINTS))
    parser.add_argument("--precisions", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--limit", type=int, default=None, help="first N subset images (default: all)")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--latency-images", type=int, default=10)
    parser.add_argument("--files", type=Path, default=Path("artifacts/mediapipe"), help="where the files are made")
    args = parser.parse_args(argv)
    root = args.shared / "data" / "widerface-val-416"
    truth = load_ground_truth(root)
    photos = [load_image(path) for _, _, path in list_images(root, truth)[:args.latency_images]]
    args.files.mkdir(parents=True, exist_ok=True)
    results = []
    for model in args.models:
        for precision in args.precisions:
            path = build_file(model, precision, args.shared, args.files)
            row = {"model": model, "precision": precision, "file": path.name,
                   "task_ap_stretched": task_ap(path, root, args.limit, False, truth),
                   "task_ap_padded": task_ap(path, root, args.limit, True, truth),
                   "our_ap_nms03": our_ap(path, root, args.limit, TASK_NMS_IOU, truth),
                   "our_ap_nms04": our_ap(path, root, args.limit, 0.4, truth),
                   **latency(path, photos, args.iters)}
            results.append(row)
            print(_line(row), flush=True)
    out = write_result("mediapipe", {"conf_threshold": CONF, "limit": args.limit,
                                     "input": "640x640", "rows": results,
                                     "command": "python benchmarks/bench_mediapipe.py " + " ".join(argv or sys.argv[1:])})
    print("| model | precision | task AP stretched (E/M/H) | task AP padded | ours NMS 0.3 | ours NMS 0.4 "
          "| task detect ms | ours ms |\n|---|---|---|---|---|---|---|---|")
    for row in results:
        print(_line(row))
    print(f"wrote {out}")
    return 0


def _ap(ap: dict) -> str:
    return " / ".join(f"{value:.2f}" for value in ap.values())


def _line(row: dict) -> str:
    return (f"| {row['model']} | {row['precision']} | {_ap(row['task_ap_stretched'])} | {_ap(row['task_ap_padded'])} "
            f"| {_ap(row['our_ap_nms03'])} | {_ap(row['our_ap_nms04'])} | {row['task_detect_ms']:.1f} "
            f"| {row['ours_litert_ms']:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
