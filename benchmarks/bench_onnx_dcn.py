"""ORT FP32 latency of FeatherFace V1 (portable vs native DCN) against RetinaFace-MNet0.25, plus V1 export time.

Usage::

    python benchmarks/bench_onnx_dcn.py [--shared ../shared] [--runs 30] [--threads 2]

Models are exported into a temporary folder, timed interleaved (one run of each
model per round, so drift affects all alike) at 640×640, model only (no pre- or
post-processing), and the median per model is reported. Writes
``benchmarks/results/onnx_dcn.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from common import default_shared, machine_facts, write_result

SIZE = (640, 640)
RATIO_TARGET = 1.5
EXPORT_TARGET_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from featherface_deploy.pipeline import export_model
    from featherface_deploy.runtimes.ort_runtime import OrtRuntime

    v1 = args.shared / "weights" / "featherface-v1.pth"
    retina = args.shared / "peers" / "retinaface-mnet025" / "mobilenet0.25_Final.pth"
    variants = {"featherface-v1 (portable DCN)": (v1, "portable", 18),
                "featherface-v1 (native DeformConv)": (v1, "native", 19),
                "retinaface-mnet025": (retina, "portable", 18)}
    runtimes, export_s, nodes = {}, {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for name, (checkpoint, dcn, opset) in variants.items():
            started = time.perf_counter()
            result = export_model(checkpoint, Path(folder) / f"{len(runtimes)}.onnx", "onnx",
                                  {"imgsz": SIZE, "dcn": dcn, "opset": opset})
            export_s[name] = time.perf_counter() - started
            counts = result.facts["node_counts"]
            nodes[name] = counts.get("simplified", counts["exported"])
            runtimes[name] = OrtRuntime(result.path, threads=args.threads, allow_spinning=False)

    x = np.random.default_rng(0).normal(0, 60, (1, 3, *SIZE)).astype(np.float32)
    for runtime in runtimes.values():
        for _ in range(args.warmup):
            runtime.infer(x)
    times = {name: [] for name in runtimes}
    for _ in range(args.runs):
        for name, runtime in runtimes.items():
            started = time.perf_counter()
            runtime.infer(x)
            times[name].append(time.perf_counter() - started)
    median_ms = {name: float(np.median(t) * 1e3) for name, t in times.items()}
    baseline = median_ms["retinaface-mnet025"]

    result = {
        "threads": args.threads, "runs": args.runs, "input": list(SIZE),
        "median_ms": median_ms,
        "ratio_to_retinaface": {name: ms / baseline for name, ms in median_ms.items()},
        "ratio_target": RATIO_TARGET,
        "export_s": export_s, "export_target_s": EXPORT_TARGET_S, "nodes": nodes,
    }
    out = write_result("onnx_dcn", result)
    facts = machine_facts()

    print(f"\nORT {facts['versions'].get('onnxruntime')} FP32, {SIZE[0]}×{SIZE[1]}, {args.threads} threads, "
          f"median of {args.runs}, {facts['cpu']}\n")
    print("| model | nodes | median ms | × RetinaFace | export s |")
    print("|---|---:|---:|---:|---:|")
    for name, ms in median_ms.items():
        print(f"| {name} | {nodes[name]} | {ms:.1f} | {ms / baseline:.2f} | {export_s[name]:.1f} |")
    print(f"\ntargets: V1/RetinaFace ≤ {RATIO_TARGET}×, V1 export < {EXPORT_TARGET_S:.0f} s; wrote {out}")


if __name__ == "__main__":
    main()
