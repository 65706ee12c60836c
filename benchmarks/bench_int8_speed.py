"""INT8 vs FP32 speed in ONNX Runtime and LiteRT (XNNPACK), per checkpoint, with AP and the integer-kernel share.

For each checkpoint (V1, V2-CA by default) and format (ONNX, TFLite) the script takes the
default FP32 and the default INT8 export (``export --format onnx|tflite [--int8 --calib-dir
<shared>/data/calibration]``, 640×640; files already in ``--workdir`` are reused), then:

- **time**: every file of one checkpoint, one format, interleaved round-robin (the machine's
  noise hits all alike), ``--threads`` threads, ONNX Runtime with ``allow_spinning`` off;
  medians, and the FP32/INT8 ratio (> 1: INT8 faster);
- **integer share**: the share of the weight layers' MACs that ran in integer kernels
  (ONNX Runtime: from its optimized graph, :mod:`featherface_deploy.harness.int8_kernels`;
  LiteRT: the ops with int8 outputs, :func:`~featherface_deploy.exporters.tflite_graph.integer_mac_fraction`);
- **AP**: Easy/Medium/Hard on ``<shared>/data/widerface-val-416`` (the images fitted into 640),
  the first ``--limit`` images only when given.

Writes ``benchmarks/results/int8_speed.json`` with the CPU model and its instruction-set flags
(avx2, avx512_vnni, avx_vnni, amx; asimddp, i8mm on ARM) and prints a Markdown table.

Usage (the quiet run, ≲ 15 min on 2 cores with the exports made beforehand into the workdir)::

    python benchmarks/bench_int8_speed.py --workdir /tmp/int8-speed --runs 30 --limit 100
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

CHECKPOINTS = ("featherface-v1", "featherface-v2-ca")
FORMATS = ("onnx", "tflite")
SIZE = (640, 640)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--checkpoints", default=",".join(CHECKPOINTS), help="names in <shared>/weights")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--workdir", type=Path, help="where the exports are written or found (default: a temp dir)")
    parser.add_argument("--runs", type=int, default=30, help="timed rounds (each runs every file once)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, help="AP on the first N evaluation images only")
    parser.add_argument("--no-ap", action="store_true", help="skip the AP evaluation")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-int8-speed-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for checkpoint in args.checkpoints.split(","):
        for fmt in args.formats.split(","):
            files = {precision: _export(args.shared, checkpoint, fmt, precision, workdir)
                     for precision in ("fp32", "int8")}
            rows += _measure(args, checkpoint, fmt, files)
    path = write_result("int8_speed", {"size": list(SIZE), "threads": args.threads, "runs": args.runs,
                                       "ap_images": args.limit or "all", "rows": rows})
    print(markdown(rows, machine_facts()))
    _log(f"wrote {path}")


def _export(shared: Path, checkpoint: str, fmt: str, precision: str, workdir: Path) -> Path:
    """The default export of one row, made once into ``workdir``."""
    from featherface_deploy.pipeline import export_model

    out = workdir / f"{checkpoint}-{precision}.{fmt}"
    if out.is_file():
        return out
    options: dict = {"imgsz": SIZE}
    row = fmt if precision == "fp32" else f"{fmt}-int8"
    if precision == "int8":
        options["calib_dir"] = shared / "data" / "calibration"
    _log(f"exporting {checkpoint} → {row} …")
    export_model(shared / "weights" / f"{checkpoint}.pth", out, row, options, log=_log)
    return out


def _measure(args, checkpoint: str, fmt: str, files: dict[str, Path]) -> list[dict]:
    from featherface_deploy.detector import FaceDetector
    from featherface_deploy.evaluation import evaluate_widerface

    runtimes = {precision: _runtime(fmt, path, args.threads) for precision, path in files.items()}
    sample = np.random.default_rng(0).uniform(-128, 128, (1, 3, *SIZE)).astype(np.float32)  # NCHW: both runtimes
    _log(f"timing {checkpoint} {fmt}: {args.runs} interleaved rounds …")
    samples = time_interleaved({precision: (lambda r=runtime: r.infer(sample)) for precision, runtime in runtimes.items()},
                               args.runs, args.warmup)
    fp32_ms = median_ms(samples["fp32"])
    rows = []
    for precision, path in files.items():
        row = {"checkpoint": checkpoint, "format": fmt, "precision": precision, "file": str(path),
               "size_mb": round(path.stat().st_size / 1e6, 3), "median_ms": round(median_ms(samples[precision]), 2),
               "speedup_vs_fp32": round(fp32_ms / median_ms(samples[precision]), 3),
               "integer_mac_fraction": round(_integer_share(fmt, path), 4)}
        if not args.no_ap:
            _log(f"evaluating {checkpoint} {fmt} {precision} …")
            started = time.perf_counter()
            ap = evaluate_widerface(FaceDetector(runtimes[precision]), args.shared / "data" / "widerface-val-416",
                                    limit=args.limit).ap.percentages
            row.update({f"ap_{level}": round(ap[level], 2) for level in ("easy", "medium", "hard")},
                       ap_seconds=round(time.perf_counter() - started, 1))
        rows.append(row)
    return rows


def _runtime(fmt: str, path: Path, threads: int):
    if fmt == "onnx":
        from featherface_deploy.runtimes.ort_runtime import OrtRuntime

        return OrtRuntime(path, threads=threads, allow_spinning=False)
    from featherface_deploy.runtimes.tflite_runtime import TfliteRuntime

    return TfliteRuntime(path, threads=threads)


def _integer_share(fmt: str, path: Path) -> float:
    if fmt == "tflite":
        from featherface_deploy.exporters.tflite_graph import integer_mac_fraction

        return integer_mac_fraction(path.read_bytes())
    from featherface_deploy.harness.int8_kernels import ort_integer_share

    return ort_integer_share(path, (1, 3, *SIZE)).fraction


def markdown(rows: list[dict], facts: dict) -> str:
    """The docs table: one line per file, ISA flags in the heading."""
    flags = ", ".join(facts.get("isa_flags") or []) or "?"
    lines = [f"FeatherFace FP32 vs INT8 — {facts.get('cpu', '?')} ({flags})", "",
             "| checkpoint | format | precision | ms | FP32/INT8 | MACs in integer kernels | Easy | Medium | Hard | MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ap = " | ".join(f"{row[f'ap_{level}']:.2f}" if f"ap_{level}" in row else "—"
                        for level in ("easy", "medium", "hard"))
        lines.append(f"| {row['checkpoint']} | {row['format']} | {row['precision']} | {row['median_ms']:.1f} | "
                     f"{row['speedup_vs_fp32']:.2f}× | {100 * row['integer_mac_fraction']:.1f}% | {ap} | "
                     f"{row['size_mb']:.2f} |")
    return "\n".join(lines)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
