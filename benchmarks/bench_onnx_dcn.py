"""Every DCN lowering of FeatherFace V1 in ONNX Runtime and LiteRT FP32, against RetinaFace-MNet0.25, in one run.

Usage::

    python benchmarks/bench_onnx_dcn.py [--shared ../shared] [--runs 20] [--threads 2]

Exports (each with its parity check) V1 to ONNX with every lowering
(``gather``, ``gather_float``, ``native`` DeformConv), RetinaFace-MNet0.25 to
ONNX, and V1 to FP32 TFLite with every plain-op lowering; counts which TFLite
operators LiteRT's XNNPACK delegate takes and in how many partitions; then
times all of them interleaved (one run of each per round, so drift affects all
alike) at 640×640, model only (no pre- or post-processing), ONNX Runtime with
thread spinning off, and reports medians, each V1 graph's ratio to RetinaFace
and each TFLite file's ratio to ONNX Runtime on the same lowering and on ONNX
Runtime's fastest. Writes ``benchmarks/results/onnx_dcn.json`` and prints
Markdown tables.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from common import default_shared, machine_facts, median_ms, time_interleaved, write_result

from featherface_deploy.harness.profile_litert import delegation

SIZE = (640, 640)
RATIO_TARGET = 1.5
LITERT_TARGET = 1.2
EXPORT_TARGET_S = 60.0
ONNX_LOWERINGS = ("gather", "gather_float", "native")
TFLITE_LOWERINGS = ("gather", "gather_float")
RETINAFACE = "retinaface-mnet025 (onnx)"


def xnnpack_delegation(interpreter) -> dict:
    """Which operators of a LiteRT interpreter XNNPACK took: counts, partitions and the rest by type.

    Summarises :func:`featherface_deploy.harness.profile_litert.delegation`, which ``profile`` uses too.
    """
    ops, partitions = delegation(interpreter)
    rest = Counter(op["op"] for op in ops if op["partition"] is None)
    return {"operators": len(ops), "delegated": sum(op["partition"] is not None for op in ops),
            "partitions": partitions, "not_delegated": dict(rest.most_common())}


def main() -> None:
    """Exports, counts, times and writes the result file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from featherface_deploy.models import load_model
    from featherface_deploy.pipeline import export_model
    from featherface_deploy.runtimes.ort_runtime import OrtRuntime
    from featherface_deploy.runtimes.tflite_runtime import TfliteRuntime

    v1 = load_model(args.shared / "weights" / "featherface-v1.pth").model
    retina = args.shared / "peers" / "retinaface-mnet025" / "mobilenet0.25_Final.pth"
    exports = {f"v1 {lowering} (onnx)": (v1, "onnx", lowering) for lowering in ONNX_LOWERINGS}
    exports[RETINAFACE] = (retina, "onnx", "gather")  # no DCN: every lowering gives the same graph
    exports.update({f"v1 {lowering} (tflite)": (v1, "tflite", lowering) for lowering in TFLITE_LOWERINGS})
    runtimes, export_s, facts = {}, {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for index, (name, (source, row, lowering)) in enumerate(exports.items()):
            started = time.perf_counter()
            suffix = ".onnx" if row == "onnx" else ".tflite"
            result = export_model(source, Path(folder) / f"{index}{suffix}", row, {"imgsz": SIZE, "dcn": lowering})
            export_s[name] = round(time.perf_counter() - started, 1)
            print(f"{name}: exported and checked in {export_s[name]} s", flush=True)
            if row == "onnx":
                counts = result.facts["node_counts"]
                facts[name] = {"nodes": counts.get("simplified", counts["exported"])}
                runtimes[name] = OrtRuntime(result.path, threads=args.threads, allow_spinning=False)
            else:
                runtimes[name] = TfliteRuntime(result.path, threads=args.threads)
                facts[name] = xnnpack_delegation(runtimes[name].interpreter)

    x = np.random.default_rng(0).normal(0, 60, (1, 3, *SIZE)).astype(np.float32)
    samples = time_interleaved({name: (lambda r=r: r.infer(x)) for name, r in runtimes.items()}, args.runs,
                               args.warmup)
    median = {name: round(median_ms(values), 2) for name, values in samples.items()}
    baseline = median[RETINAFACE]
    onnx_v1 = {lowering: median[f"v1 {lowering} (onnx)"] for lowering in ONNX_LOWERINGS}
    best_onnx = min(onnx_v1, key=onnx_v1.get)
    litert_over_ort = {lowering: {"same_lowering": round(median[f"v1 {lowering} (tflite)"] / onnx_v1[lowering], 3),
                                  "ort_fastest": round(median[f"v1 {lowering} (tflite)"] / onnx_v1[best_onnx], 3)}
                       for lowering in TFLITE_LOWERINGS}

    payload = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "threads": args.threads, "runs": args.runs, "input": list(SIZE), "ort_allow_spinning": False,
        "median_ms": median,
        "ratio_to_retinaface": {name: round(ms / baseline, 3) for name, ms in median.items()},
        "fastest_onnx_lowering": best_onnx,
        "fastest_tflite_lowering": min(TFLITE_LOWERINGS, key=lambda low: median[f"v1 {low} (tflite)"]),
        "litert_over_ort": litert_over_ort,
        "targets": {"v1_over_retinaface": RATIO_TARGET, "litert_over_ort": LITERT_TARGET,
                    "export_s": EXPORT_TARGET_S},
        "export_s": export_s, "graph": facts,
    }
    out = write_result("onnx_dcn", payload)
    print(_markdown(payload, machine_facts()))
    print(f"wrote {out}")


def _markdown(payload: dict, facts: dict) -> str:
    versions = facts["versions"]
    lines = [f"\nORT {versions.get('onnxruntime')} / LiteRT {versions.get('ai-edge-litert', '?')} FP32, "
             f"{SIZE[0]}×{SIZE[1]}, {payload['threads']} threads, median of {payload['runs']} interleaved rounds, "
             f"{facts['cpu']}\n",
             "| model | graph | median ms | × RetinaFace | export + parity s |", "|---|---|---:|---:|---:|"]
    for name, ms in payload["median_ms"].items():
        graph = payload["graph"][name]
        shape = (f"{graph['nodes']} nodes" if "nodes" in graph else
                 f"{graph['delegated']}/{graph['operators']} ops in XNNPACK, {graph['partitions']} partitions")
        lines.append(f"| {name} | {shape} | {ms:.1f} | {payload['ratio_to_retinaface'][name]:.2f} | "
                     f"{payload['export_s'][name]:.1f} |")
    lines += ["", "| TFLite lowering | LiteRT / ORT same lowering | LiteRT / ORT fastest | not in XNNPACK |",
              "|---|---:|---:|---|"]
    for lowering, ratio in payload["litert_over_ort"].items():
        rest = payload["graph"][f"v1 {lowering} (tflite)"]["not_delegated"]
        lines.append(f"| {lowering} | {ratio['same_lowering']:.2f} | {ratio['ort_fastest']:.2f} | "
                     + ", ".join(f"{op} {n}" for op, n in rest.items()) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
