"""End-to-end models against raw outputs + numpy post-processing: what decoding and NMS cost in and out of the graph.

For each format asked for (``--formats onnx,tflite``), two files of the same checkpoint at
640×640 are exported through the pipeline (verified): the plain file (raw ``loc``/``conf``/
``landmarks``) and the end-to-end file (``--end2end``, the same thresholds as the numpy side:
conf 0.5, NMS IoU 0.4, pre-NMS top-k 1000, max 300). On the same photos, interleaved
round-robin (so machine noise hits all alike), it times:

- **raw**: the plain file's inference;
- **numpy**: :func:`~featherface_deploy.postprocess.decode_image` on those raw outputs with the
  same settings (threshold, top-k, decode, NMS, rescale);
- **e2e**: the end-to-end file's inference (network + in-graph post-processing).

Shares of the frame: numpy post-processing = numpy / raw; in-graph post-processing =
(e2e − raw) / raw, the graph's extra time. Target (issue 22): in-graph ≤ 5 % of inference at
640×640 with ≤ 50 faces. Letterboxing is the same work on both sides and is not timed.
ONNX Runtime runs with thread spinning off. A format whose end-to-end export is not available
here is skipped with the reason.

Usage::

    python benchmarks/bench_end2end.py [--checkpoint V1.pth] [--formats onnx,tflite] [--images DIR]
        [--iters 50] [--threads 2] [--imgsz 640] [--work DIR]

Writes ``benchmarks/results/end2end.{md,csv,json}`` (the machine facts carry the CPU model and its ISA flags).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import RESULTS_DIR, default_shared, time_interleaved

from featherface_deploy.calibration import list_image_files
from featherface_deploy.errors import FeatherFaceError
from featherface_deploy.formats import get_format, resolve
from featherface_deploy.harness.latency import open_for_timing
from featherface_deploy.harness.report import Column, machine_facts, write_report
from featherface_deploy.pipeline import export_model
from featherface_deploy.postprocess import decode_image, load_image, preprocess
from featherface_deploy.runtimes.in_graph import baked_config, letterbox
from featherface_deploy.verify.photos import default_parity_images

SHARE_TARGET = 0.05
E2E_SETTINGS = {"end2end": True, "max_det": 300, "conf": 0.5, "nms_iou": 0.4, "pre_nms_top_k": 1000}
COLUMNS = (Column("format", "Format"), Column("images", "Images"), Column("faces_max", "Faces (max)"),
           Column("raw_ms", "raw infer ms", 2), Column("numpy_post_ms", "numpy post ms", 3),
           Column("e2e_ms", "e2e infer ms", 2), Column("numpy_share", "numpy post / infer", 3),
           Column("in_graph_share", "in-graph post / infer", 3), Column("skipped", "skipped"))


def main() -> None:
    """Exports, measures and writes the result files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=default_shared() / "weights" / "featherface-v1.pth")
    parser.add_argument("--architecture", default=None, help="with --random-init: e.g. featherface-tiny (smoke test)")
    parser.add_argument("--random-init", action="store_true", help="an untrained --architecture instead of a checkpoint")
    parser.add_argument("--formats", default="onnx,tflite")
    parser.add_argument("--images", type=Path, default=default_shared() / "data" / "calibration")
    parser.add_argument("--limit", type=int, default=10, help="photos used")
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--work", type=Path, default=None, help="keep the exported files here")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()

    paths = list_image_files(args.images)[:args.limit] if args.images.is_dir() else default_parity_images()
    images = [load_image(path) for path in paths]
    source = _source(args)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-end2end-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = [_measure(fmt, source, images, args, work) for fmt in args.formats.split(",")]
    facts = machine_facts(threads=args.threads, imgsz=[args.imgsz, args.imgsz], iters=args.iters,
                          images=len(images), checkpoint=str(args.checkpoint) if not args.random_init else None,
                          spinning=False)
    notes = [f"in-graph post = (e2e − raw) / raw; target ≤ {SHARE_TARGET:.0%} at 640×640 with ≤ 50 faces",
             "interleaved round-robin on the same photos; medians; letterboxing not timed (the same on both sides)"]
    written = write_report(args.out, "end2end", rows, COLUMNS, facts, notes, plot=False)
    print("wrote " + ", ".join(str(path) for path in written.values()))


def _source(args):
    if not args.random_init:
        return args.checkpoint
    from featherface_deploy.models.registry import create_untrained_model

    return create_untrained_model(args.architecture, 0)


def _measure(fmt: str, source, images, args, work: Path) -> dict:
    """One format's row: export both files, then time raw, numpy post and e2e interleaved."""
    size = (args.imgsz, args.imgsz)
    try:
        e2e_path = _export(source, work / f"e2e{get_format(fmt).suffix}", fmt, {"imgsz": size, **E2E_SETTINGS}, args)
        raw_path = _export(source, work / f"raw{get_format(fmt).suffix}", fmt, {"imgsz": size}, args)
    except FeatherFaceError as error:
        return {"format": fmt, "skipped": str(error).splitlines()[0][:200]}
    runtime_class = resolve(get_format(fmt).runtime)
    raw = open_for_timing(runtime_class, raw_path, args.threads)
    e2e = open_for_timing(runtime_class, e2e_path, args.threads)
    config = baked_config(e2e.contract)
    prepared = [preprocess(image, raw.contract) for image in images]
    raw_inputs = [tensor[None] for tensor, _ in prepared]
    e2e_inputs = [letterbox(image, e2e.contract)[0] for image in images]
    outputs = [raw.infer(batch) for batch in raw_inputs]
    faces = [len(e2e.detect(image)) for image in images]
    samples = {"raw": [], "numpy": [], "e2e": []}
    for index in range(len(images)):
        out, batch, transform = outputs[index], raw_inputs[index], prepared[index][1]
        timed = time_interleaved({
            "raw": lambda: raw.infer(batch),
            "numpy": lambda: decode_image(out["loc"][0], out["conf"][0], out["landmarks"][0], batch.shape[2:],
                                          raw.contract, transform, config),
            # _run: the end-to-end file on its letterboxed tensor (the backend call, as raw.infer is)
            "e2e": lambda: e2e._run(e2e_inputs[index]),
        }, max(1, args.iters // len(images)))
        for name, values in timed.items():
            samples[name].extend(values)
    medians = {name: statistics.median(values) * 1e3 for name, values in samples.items()}
    return {"format": fmt, "images": len(images), "faces_max": max(faces), "raw_ms": medians["raw"],
            "numpy_post_ms": medians["numpy"], "e2e_ms": medians["e2e"],
            "numpy_share": medians["numpy"] / medians["raw"],
            "in_graph_share": (medians["e2e"] - medians["raw"]) / medians["raw"], "skipped": ""}


def _export(source, out: Path, fmt: str, options: dict, args) -> Path:
    if out.exists():
        return out
    print(f"exporting {out.name} ({fmt})…")
    export_model(source, out, fmt, options, log=print, require_faces=not args.random_init,
                 untrained_seed=0 if args.random_init else None)
    return out


if __name__ == "__main__":
    main()
