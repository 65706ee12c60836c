"""Soak: many frames through ONNX Runtime and LiteRT, resident memory sampled, to show it stays flat.

Each runtime runs in its own child process (so one backend's memory never
shows up in the other's figures) through the same per-frame path a user's
loop takes: ``preprocess`` → ``Runtime.infer`` → ``decode_image`` (decode +
NMS), cycling through real photos. The child samples its RSS
(``/proc/self/status`` ``VmRSS``) every ``--sample-every`` frames after a
warm-up and reports the first and last sample, the largest, and the
least-squares slope in MB per 1,000 frames. Flat memory: a slope near 0 and
a last sample within a few MB of the first.

The models are exported at ``--imgsz`` with the gated pipeline: FeatherFace V1
(``$FEATHERFACE_SHARED/weights/featherface-v1.pth``) by default, or with
``--model featherface-tiny`` the seeded, untrained tiny model the tests use
(same graph kinds, a fraction of the cost per frame); ``--onnx`` / ``--tflite``
take already exported files. The frames are the first 64 WIDER FACE subset photos.

Usage::

    python benchmarks/soak.py [--model featherface-v1|featherface-tiny] [--frames 10000] [--imgsz 320]
                              [--sample-every 250] [--threads 1] [--workdir DIR] [--onnx FILE] [--tflite FILE]

Writes ``benchmarks/results/soak.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import default_shared, write_result

ROWS = {"onnxruntime": ("onnx", ".onnx"), "litert": ("tflite", ".tflite")}
MAX_PHOTOS = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("featherface-v1", "featherface-tiny"), default="featherface-v1")
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--imgsz", type=int, default=320, help="Export size (square), pixels.")
    parser.add_argument("--sample-every", type=int, default=250)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "featherface-soak",
                        help="Where the exports are kept between runs.")
    parser.add_argument("--onnx", type=Path, default=None, help="Use this .onnx instead of exporting V1.")
    parser.add_argument("--tflite", type=Path, default=None, help="Use this .tflite instead of exporting V1.")
    parser.add_argument("--child", nargs=2, metavar=("RUNTIME", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    photos = sorted((args.shared / "data" / "widerface-val-416" / "WIDER_val" / "images").rglob("*.jpg"))[:MAX_PHOTOS]
    if args.child:
        print(json.dumps(soak(args.child[0], Path(args.child[1]), photos, args)))
        return
    models = {"onnxruntime": args.onnx, "litert": args.tflite}
    rows = []
    for runtime, given in models.items():
        path = given or _export(args.model, args.shared, runtime, args.imgsz, args.workdir)
        print(f"{runtime}: {args.frames} frames of {path.name} …", file=sys.stderr, flush=True)
        command = [sys.executable, __file__, "--child", runtime, str(path), *_passed_on(args)]
        child = subprocess.run(command, capture_output=True, text=True)
        if child.returncode != 0:
            raise SystemExit(f"{runtime} soak failed:\n{child.stderr[-2000:]}")
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    path = write_result("soak", {"frames": args.frames, "imgsz": args.imgsz, "threads": args.threads,
                                 "sample_every": args.sample_every, "photos": len(photos), "rows": rows})
    print(_markdown(rows))
    print(f"wrote {path}", file=sys.stderr)


def _passed_on(args) -> list[str]:
    return ["--frames", str(args.frames), "--sample-every", str(args.sample_every), "--warmup", str(args.warmup),
            "--threads", str(args.threads), "--shared", str(args.shared)]


def _export(model: str, shared: Path, runtime: str, imgsz: int, workdir: Path) -> Path:
    """``model`` exported (and parity-checked) at ``imgsz``; reused when a previous run left it in ``workdir``."""
    from featherface_deploy.contract import sidecar_path
    from featherface_deploy.pipeline import export_model

    row, suffix = ROWS[runtime]
    path = workdir / f"{model}-{imgsz}{suffix}"
    if path.is_file() and sidecar_path(path).is_file():
        return path
    print(f"exporting {path} …", file=sys.stderr, flush=True)
    if model == "featherface-tiny":
        import torch

        from featherface_deploy.models import create_model

        torch.manual_seed(0)
        source, trained = create_model(model), False
    else:
        source, trained = shared / "weights" / "featherface-v1.pth", True
    export_model(source, path, row, {"imgsz": (imgsz, imgsz)}, exist_ok=True, require_faces=trained)
    return path


def soak(runtime: str, model: Path, photos: list[Path], args) -> dict:
    """Runs ``args.frames`` frames through ``model`` in this process; returns the RSS figures and latency."""
    from featherface_deploy.harness.latency import current_rss_mb
    from featherface_deploy.postprocess import decode_image, load_image, preprocess
    from featherface_deploy.runtimes.ort_runtime import OrtRuntime
    from featherface_deploy.runtimes.tflite_runtime import TfliteRuntime

    opened = (OrtRuntime if runtime == "onnxruntime" else TfliteRuntime)(model, threads=args.threads)
    contract = opened.contract
    images = [load_image(path) for path in photos]

    def frame(index: int) -> int:
        tensor, transform = preprocess(images[index % len(images)], contract)
        raw = opened.infer(tensor[None])
        return len(decode_image(raw["loc"][0], raw["conf"][0], raw["landmarks"][0], tensor.shape[1:],
                                contract, transform))

    for index in range(args.warmup):
        frame(index)
    samples, faces, started = [(0, current_rss_mb())], 0, time.perf_counter()
    for index in range(1, args.frames + 1):
        faces += frame(index)
        if index % args.sample_every == 0:
            samples.append((index, current_rss_mb()))
    seconds = time.perf_counter() - started
    frames, rss = np.array(samples, dtype=np.float64).T
    slope = float(np.polyfit(frames, rss, 1)[0]) * 1000.0
    return {"runtime": runtime, "model": model.name, "frames": args.frames, "seconds": round(seconds, 1),
            "ms_per_frame": round(1000.0 * seconds / args.frames, 2), "faces": faces,
            "rss_first_mb": round(rss[0], 1), "rss_last_mb": round(rss[-1], 1), "rss_max_mb": round(rss.max(), 1),
            "rss_growth_mb": round(rss[-1] - rss[0], 1), "slope_mb_per_1000_frames": round(slope, 3),
            "samples": [[int(f), round(r, 1)] for f, r in samples]}


def _markdown(rows: list[dict]) -> str:
    lines = ["| runtime | model | frames | ms/frame | RSS first MB | RSS last MB | RSS max MB | growth MB | "
             "slope MB/1k frames |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['runtime']} | {r['model']} | {r['frames']} | {r['ms_per_frame']} | {r['rss_first_mb']} | "
              f"{r['rss_last_mb']} | {r['rss_max_mb']} | {r['rss_growth_mb']} | {r['slope_mb_per_1000_frames']} |"
              for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
