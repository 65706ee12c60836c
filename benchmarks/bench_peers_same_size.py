"""Every detector on the same pixels: each image resized once to one input size, for all detectors alike.

``bench_peers.py`` runs each detector at its own size (FeatherFace and
RetinaFace at 416×416, Ultra-Light RFB-640 at 640×480), which flatters the
detector that sees more pixels. Here, for each size asked (``--sizes``), every
image of the 200-image WIDER FACE val subset is resized once to that size
(bilinear, aspect ratio not kept — Ultra-Light's released preprocessing) and
that same array goes to every detector; detections are mapped back to the
original pixels and scored by the same evaluator, at score ≥ 0.02 and NMS IoU
0.4.

- FeatherFace V1, FeatherFace V2-CA, RetinaFace-MobileNet0.25: ONNX exported
  at exactly that size (the gated pipeline), ONNX Runtime through
  ``FaceDetector``;
- YuNet 2023mar: ``cv2.FaceDetectorYN`` with that input size;
- Ultra-Light RFB-640 / RFB-320: only at 640×480 / 320×240, the sizes their
  released graphs are fixed to (the priors are constants inside the graph), so
  they are left out of the other sizes rather than resized again.

Latency: end to end from the resized image (pre + infer + post) at score ≥ 0.5,
``--threads`` threads (ONNX Runtime spinning off, OpenCV's threads set to the
same number), all detectors of one size interleaved round-robin over the same
8 images, medians.

Usage::

    python benchmarks/bench_peers_same_size.py [--sizes 640x480,640x640,416x416] [--threads 2] [--iters 30]

Writes ``benchmarks/results/peers_same_size.{md,csv,json,png}``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
from common import RESULTS_DIR, default_shared, time_interleaved

from featherface_deploy.detector import FaceDetector
from featherface_deploy.evaluation import evaluate_widerface, list_images
from featherface_deploy.harness.artifacts import BuildSettings, build_all
from featherface_deploy.harness.peers import UltralightDetector, YuNetDetector
from featherface_deploy.harness.report import Column, machine_facts, render_markdown, write_report
from featherface_deploy.postprocess import Detections, PostprocessConfig, load_image
from featherface_deploy.postprocess.preprocess import resize_bgr

LATENCY_THRESHOLD = 0.5
CHECKPOINTS = {"FeatherFace V1": "weights/featherface-v1.pth", "FeatherFace V2-CA": "weights/featherface-v2-ca.pth",
               "RetinaFace-MNet0.25": "peers/retinaface-mnet025/mobilenet0.25_Final.pth"}
ULTRALIGHT = {(480, 640): "version-RFB-640.onnx", (240, 320): "version-RFB-320.onnx"}
COLUMNS = (Column("input", "Input (W×H)"), Column("label", "Detector"), Column("runtime", "Runtime"),
           Column("p50_ms", "p50 ms", 1), Column("p90_ms", "p90 ms", 1), Column("ap_easy", "Easy AP", 2),
           Column("ap_medium", "Medium AP", 2), Column("ap_hard", "Hard AP", 2),
           Column("ms_per_hard_ap", "ms per Hard AP point", 3))


class SameInput:
    """Resizes an image to ``size`` (H, W), runs ``detector`` on it, maps the faces back to the original pixels."""

    def __init__(self, detector, size: tuple[int, int]) -> None:
        self.detector = detector
        self.size = size

    def __call__(self, image) -> Detections:
        """Detections in the original image's pixels."""
        image = load_image(image)
        return self.on_resized(resize_bgr(image, *self.size), image.shape[:2])

    def on_resized(self, resized: np.ndarray, original: tuple[int, int]) -> Detections:
        """Runs on an already resized image whose original (height, width) was ``original``."""
        faces = self.detector(resized)
        sx, sy = original[1] / self.size[1], original[0] / self.size[0]
        return Detections((faces.boxes * np.array([sx, sy, sx, sy], np.float32)).astype(np.float32), faces.scores,
                          (faces.landmarks * np.array([sx, sy], np.float32)).astype(np.float32))


def main() -> None:
    """Runs every detector at every size, writes the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "featherface_deploy" / "bench")
    parser.add_argument("--sizes", default="640x480,640x640,416x416", help="W×H input sizes, comma separated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--limit", type=int, default=None, help="first N images only (quick check)")
    args = parser.parse_args()
    widerface = args.shared / "data" / "widerface-val-416"
    images = [load_image(path) for _, _, path in list_images(widerface)[:8]]

    rows = []
    for text in args.sizes.split(","):
        width, height = (int(v) for v in text.lower().split("x"))
        size = (height, width)
        accuracy = _detectors(args.shared, args.cache, size, args.threads, PostprocessConfig())
        deployed = _detectors(args.shared, args.cache, size, args.threads,
                              PostprocessConfig(conf_threshold=LATENCY_THRESHOLD))
        resized = [resize_bgr(image, *size) for image in images]
        calls = {label: _cycler(detector, resized, images[0].shape[:2]) for label, (detector, _) in deployed.items()}
        print(f"{width}×{height}: {len(calls)} detectors interleaved, {args.iters} rounds", file=sys.stderr)
        timings = time_interleaved(calls, args.iters, warmup=5)
        for label, (detector, runtime) in accuracy.items():
            print(f"{width}×{height}: WIDER FACE {label}", file=sys.stderr)
            ap = evaluate_widerface(detector, widerface, args.limit).ap.percentages
            p50 = 1000 * statistics.median(timings[label])
            rows.append({"input": f"{width}×{height}", "label": label, "runtime": runtime,
                         "p50_ms": round(p50, 2), "p90_ms": round(1000 * float(np.percentile(timings[label], 90)), 2),
                         **{f"ap_{k}": round(v, 2) for k, v in ap.items()},
                         "ms_per_hard_ap": round(p50 / ap["hard"], 3) if ap["hard"] else None,
                         "threads": args.threads})

    facts = machine_facts(threads=args.threads, iterations=args.iters, images=args.limit or 200)
    notes = [
        "Each image is resized once (bilinear, aspect ratio not kept) to the row's input and that same array goes "
        "to every detector; detections are mapped back to the original pixels; same evaluator, score ≥ 0.02, "
        "NMS IoU 0.4. FeatherFace and RetinaFace: ONNX exported at that size, ONNX Runtime through FaceDetector; "
        "YuNet: cv2.FaceDetectorYN at that size; Ultra-Light only at the size its graph is fixed to.",
        f"Latency: pre + infer + post from the resized image at score ≥ {LATENCY_THRESHOLD}, {args.threads} "
        "thread(s) (ONNX Runtime thread spinning off), detectors of one size interleaved round-robin over the "
        "same 8 images, median and p90; shared 2-core host, so compare rows of one size with each other.",
    ]
    write_report(RESULTS_DIR, "peers_same_size", rows, COLUMNS, facts, notes, plot=False, exist_ok=True)
    print(render_markdown({"columns": [c.to_dict() for c in COLUMNS], "rows": rows, "notes": notes, "facts": facts}))


def _detectors(shared: Path, cache: Path, size: tuple[int, int], threads: int,
               config: PostprocessConfig) -> dict[str, tuple[SameInput, str]]:
    detectors = {}
    for label, relative in CHECKPOINTS.items():
        built, failed = build_all(shared / relative, ["onnx"], cache, BuildSettings(size, log=_log))
        if failed:
            raise SystemExit(f"{label}: {failed['onnx']}")
        detector = FaceDetector.load(built["onnx"].path, config, threads=threads, allow_spinning=False)
        detectors[label] = (SameInput(detector, size), "onnxruntime")
    yunet = YuNetDetector(shared / "peers" / "yunet" / "face_detection_yunet_2023mar.onnx", config, threads=threads)
    detectors["YuNet"] = (SameInput(yunet, size), "OpenCV DNN")
    if size in ULTRALIGHT:
        name = ULTRALIGHT[size]
        ultralight = UltralightDetector(shared / "peers" / "ultralight" / name, config, threads=threads)
        detectors[f"Ultra-Light {name.split('-', 1)[1].removesuffix('.onnx')}"] = (SameInput(ultralight, size),
                                                                                   "onnxruntime")
    return detectors


def _cycler(detector: SameInput, resized: list[np.ndarray], original: tuple[int, int]):
    state = {"next": 0}

    def call():
        state["next"] = (state["next"] + 1) % len(resized)
        return detector.on_resized(resized[state["next"]], original)

    return call


def _log(message: str) -> None:
    print(message, file=sys.stderr)


if __name__ == "__main__":
    main()
