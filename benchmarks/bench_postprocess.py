"""Pre- and post-processing cost per 640×640 frame, on real FeatherFace V1 outputs of real photos, against inference.

Post-processing = the shared decode + threshold + top-k + NMS + rescale
(:func:`featherface_deploy.postprocess.decode_image`) at the evaluation
thresholds (conf ≥ 0.02, NMS IoU 0.4), the setting with the most candidates.
Preprocessing = resize + mean + pad + layout of a decoded uint8 image.

The raw outputs come from one ONNX Runtime FP32 V1 inference per image, made
before timing. Images: the calibration group photos (many faces: the hard case
for NMS). Timings are interleaved across images (round-robin) and summarised
by medians, since the host is shared.

Then the harness's own step (:class:`~featherface_deploy.harness.latency.Pipeline`:
pre, ONNX Runtime FP32 inference of V1 at 640×640 with 2 threads and spinning
off, post) runs on the first ``--wider`` images of the WIDER FACE subset
(416-pixel images, enlarged to 640) and on the calibration photos, the two
interleaved, giving pre + post as a share of inference. The
resize alone is timed with Pillow's ``BILINEAR`` and with OpenCV (when
installed), interleaved.

Usage::

    python benchmarks/bench_postprocess.py [--iters 50] [--wider 50] [--onnx V1_640.onnx] [--shared ../shared]

Writes ``benchmarks/results/postprocess.{md,csv,json}``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np

from common import RESULTS_DIR, default_shared, time_interleaved

from featherface_deploy.harness.report import Column, machine_facts, render_markdown, write_report
from featherface_deploy.calibration import list_image_files
from featherface_deploy.harness.latency import LatencyConfig, Pipeline, measure_interleaved
from featherface_deploy.postprocess import PostprocessConfig, decode_image, load_image, preprocess
from featherface_deploy.postprocess.preprocess import fit_size

SIZE = (640, 640)
COLUMNS = (Column("image", "Image"), Column("original", "Original size"), Column("candidates", "Candidates ≥ 0.02"),
           Column("detections", "Detections"), Column("pre_ms", "pre ms (median)", 2),
           Column("post_ms", "post ms (median)", 2))


def main() -> None:
    """Measures and writes the result files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--wider", type=int, default=50, help="WIDER FACE subset images in the harness split")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--onnx", type=Path, help="V1 exported at 640×640 (default: exported into a temporary folder)")
    args = parser.parse_args()

    from featherface_deploy.runtimes.ort_runtime import OrtRuntime

    with tempfile.TemporaryDirectory() as folder:
        path = args.onnx or _export_v1(args.shared, Path(folder) / "v1-640.onnx")
        runtime = OrtRuntime(path, threads=args.threads, allow_spinning=False)
    config = PostprocessConfig()
    cases = {}
    for path in list_image_files(args.shared / "data" / "calibration"):
        image = load_image(path)
        tensor, transform = preprocess(image, runtime.contract, SIZE)
        raw = runtime.infer(tensor[None])
        outputs = (raw["loc"][0], raw["conf"][0], raw["landmarks"][0])
        cases[path.name] = (image, tensor.shape[1:], transform, outputs)

    post = {name: _post(case, runtime.contract, config) for name, case in cases.items()}
    pre = {name: (lambda image=case[0]: preprocess(image, runtime.contract, SIZE)) for name, case in cases.items()}
    post_samples = time_interleaved(post, args.iters)
    pre_samples = time_interleaved(pre, args.iters)
    rows = [_row(name, case, post[name](), pre_samples[name], post_samples[name], config)
            for name, case in cases.items()]
    summary = _summary(rows)
    wider = [load_image(p) for p in sorted((args.shared / "data" / "widerface-val-416").glob("WIDER_val/images/*/*.jpg"))
             [: args.wider]]
    calibration = [case[0] for case in cases.values()]
    summary["harness"] = _harness_split(runtime, {"wider": wider, "calibration": calibration}, args.iters)
    summary["resize_ms"] = _resize_times({"wider": wider, "calibration": calibration}, args.iters)
    facts = machine_facts(threads=args.threads, imgsz=list(SIZE), iterations=args.iters)
    notes = [
        f"FeatherFace V1 raw outputs (ONNX Runtime FP32) of {len(rows)} calibration photos fitted into {SIZE[0]}×{SIZE[1]}; "
        f"post = decode + top-k + NMS + rescale at conf ≥ {config.conf_threshold}, NMS IoU {config.nms_iou}; "
        "pre = resize + mean + pad from a decoded uint8 image.",
        f"Median over images of the per-image medians ({args.iters} interleaved rounds): post "
        f"{summary['post_ms_median']:.2f} ms, worst image "
        f"{summary['post_ms_max']:.2f} ms; pre {summary['pre_ms_median']:.2f} ms.",
        *_harness_notes(summary, len(wider), args.threads),
        "Shared 2-core host: absolute values are noisy; medians of interleaved rounds are reported.",
    ]
    paths = write_report(RESULTS_DIR, "postprocess", rows, COLUMNS, facts, notes, {"summary": summary}, plot=False, exist_ok=True)
    print(render_markdown({"columns": [c.to_dict() for c in COLUMNS], "rows": rows, "notes": notes, "facts": facts}))
    print(f"wrote {paths['json']}")


def _export_v1(shared: Path, path: Path) -> Path:
    from featherface_deploy.pipeline import export_model

    return export_model(shared / "weights" / "featherface-v1.pth", path, "onnx", {"imgsz": SIZE}).path


def _harness_split(runtime, image_sets: dict[str, list], iters: int) -> dict:
    """The harness step (pre, infer, post) on each image set, interleaved; medians in ms and pre + post / infer."""
    config = LatencyConfig(imgsz=SIZE, warmup=3, iters=iters)
    stats = measure_interleaved({name: Pipeline(runtime, images, config) for name, images in image_sets.items()},
                                config.warmup, config.iters)
    return {name: {"pre_ms": s.pre_ms, "infer_ms": s.infer_ms, "post_ms": s.post_ms,
                   "share": (s.pre_ms + s.post_ms) / s.infer_ms} for name, s in stats.items()}


def _resize_times(image_sets: dict[str, list], iters: int) -> dict:
    """Median resize ms of each image set into 640×640 (aspect kept), with Pillow and, if installed, OpenCV."""
    from PIL import Image

    def pillow(image):
        height, width = fit_size(image.shape[:2], SIZE)
        return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))

    resizers = {"pillow": pillow}
    try:
        import cv2

        def opencv(image):
            height, width = fit_size(image.shape[:2], SIZE)
            enlarging = height >= image.shape[0]
            return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR if enlarging else cv2.INTER_AREA)

        resizers["opencv"] = opencv
    except ImportError:
        pass
    functions = {(name, resizer): (lambda images=images, f=resize: [f(image) for image in images])
                 for name, images in image_sets.items() for resizer, resize in resizers.items()}
    samples = time_interleaved(functions, iters)
    return {f"{name}_{resizer}": 1000 * statistics.median(times) / len(image_sets[name])
            for (name, resizer), times in samples.items()}


def _harness_notes(summary: dict, wider_images: int, threads: int) -> list[str]:
    notes = []
    for name, split in summary["harness"].items():
        label = f"{wider_images} WIDER FACE subset images (416 px, enlarged)" if name == "wider" else "calibration photos"
        notes.append(f"Harness step on {label}, ONNX Runtime FP32 V1 640×640, {threads} threads: pre "
                     f"{split['pre_ms']:.2f} ms + post {split['post_ms']:.2f} ms = {100 * split['share']:.1f}% of "
                     f"inference {split['infer_ms']:.1f} ms.")
    resize = ", ".join(f"{key.replace('_', ' ')} {ms:.2f} ms" for key, ms in summary["resize_ms"].items())
    notes.append(f"Resize alone per image (median, interleaved): {resize}.")
    return notes


def _post(case, contract, config):
    _, size, transform, (loc, conf, landmarks) = case
    return lambda: decode_image(loc, conf, landmarks, size, contract, transform, config)


def _row(name, case, faces, pre, post, config) -> dict:
    image, _, _, (_, conf, _) = case
    return {"image": name, "original": f"{image.shape[1]}×{image.shape[0]}",
            "candidates": int((conf[:, 1] >= config.conf_threshold).sum()), "detections": len(faces),
            "pre_ms": round(1000 * statistics.median(pre), 3), "post_ms": round(1000 * statistics.median(post), 3)}


def _summary(rows: list[dict]) -> dict:
    return {"post_ms_median": statistics.median(r["post_ms"] for r in rows),
            "post_ms_max": max(r["post_ms"] for r in rows),
            "pre_ms_median": statistics.median(r["pre_ms"] for r in rows)}


if __name__ == "__main__":
    main()
