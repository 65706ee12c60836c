"""Pre- and post-processing cost per 640×640 frame, on real FeatherFace V1 outputs of real photos.

Post-processing = the shared decode + threshold + top-k + NMS + rescale
(:func:`featherface_deploy.postprocess.decode_image`) at the evaluation
thresholds (conf ≥ 0.02, NMS IoU 0.4), the setting with the most candidates.
Preprocessing = resize + mean + pad + layout of a decoded uint8 image.

The raw outputs come from one PyTorch V1 inference per image, made before
timing. Images: the calibration group photos (many faces: the hard case for
NMS). Timings are interleaved across images (round-robin) and summarised by
medians, since the host is shared.

Usage::

    python benchmarks/bench_postprocess.py [--iters 50] [--shared ../shared]

Writes ``benchmarks/results/postprocess.{md,csv,json}``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from common import RESULTS_DIR, default_shared, time_interleaved

from featherface_deploy.harness.report import Column, machine_facts, render_markdown, write_report
from featherface_deploy.calibration import list_image_files
from featherface_deploy.postprocess import PostprocessConfig, decode_image, load_image, preprocess

SIZE = (640, 640)
TARGET_MS = 2.0
COLUMNS = (Column("image", "Image"), Column("original", "Original size"), Column("candidates", "Candidates ≥ 0.02"),
           Column("detections", "Detections"), Column("pre_ms", "pre ms (median)", 2),
           Column("post_ms", "post ms (median)", 2))


def main() -> None:
    """Measures and writes the result files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--iters", type=int, default=50)
    args = parser.parse_args()

    from featherface_deploy.runtimes.torch_runtime import TorchRuntime

    runtime = TorchRuntime(args.shared / "weights" / "featherface-v1.pth", threads=1)
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
    facts = machine_facts(threads=1, imgsz=list(SIZE), iterations=args.iters)
    notes = [
        f"FeatherFace V1 raw outputs (PyTorch) of {len(rows)} calibration photos fitted into {SIZE[0]}×{SIZE[1]}; "
        f"post = decode + top-k + NMS + rescale at conf ≥ {config.conf_threshold}, NMS IoU {config.nms_iou}; "
        "pre = resize + mean + pad from a decoded uint8 image.",
        f"Median over images of the per-image medians ({args.iters} interleaved rounds): post "
        f"{summary['post_ms_median']:.2f} ms (target ≤ {TARGET_MS} ms: "
        f"{'met' if summary['post_ms_median'] <= TARGET_MS else 'NOT met'}), worst image "
        f"{summary['post_ms_max']:.2f} ms; pre {summary['pre_ms_median']:.2f} ms.",
        "Shared 2-core host: absolute values are noisy; medians of interleaved rounds are reported.",
    ]
    paths = write_report(RESULTS_DIR, "postprocess", rows, COLUMNS, facts, notes, {"summary": summary}, plot=False)
    print(render_markdown({"columns": [c.to_dict() for c in COLUMNS], "rows": rows, "notes": notes, "facts": facts}))
    print(f"wrote {paths['json']}")


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
            "pre_ms_median": statistics.median(r["pre_ms"] for r in rows), "target_post_ms": TARGET_MS}


if __name__ == "__main__":
    main()
