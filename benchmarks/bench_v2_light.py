"""V2-Optimized and V2-Ultra (random weights) beside V1 and V2-CA: parameters, file sizes, op census, latency.

Every model is exported through the gated pipeline (``export_model``: parity
against PyTorch on real photos before a file is kept): V1 and V2-CA from their
checkpoints in ``shared/weights``, V2-Optimized and V2-Ultra with random
weights from ``--seed`` (flagged untrained in their contracts; parity judges
the raw outputs at the FP32 limits and reports, without judging, the
detections ≥ 0.5 random weights give: ``Tolerances.for_untrained``). Then, from the converted files:

- **op census** per backend: ONNX op types; TFLite builtin ops and those that
  LiteRT's default XNNPACK delegate leaves to the reference CPU kernels (read
  from the interpreter's nodes after delegation: a node is delegated when it
  lies inside an XNNPACK partition); the MIL op types of the Core ML FP32
  package (``--coreml-imgsz``; see :data:`COREML_WATCH` for what is counted as
  outside Core ML's fast paths, and why);
- **latency**: every (model, backend) pipeline opened with ``--threads``
  threads and timed round-robin in one run (``measure_interleaved``: one step
  of each per round, ONNX Runtime's spinning off), on the calibration photos
  fitted into ``--imgsz``; medians of inference and of the whole frame
  (pre + infer + decode + NMS), and V1's median / each model's;
- the design documents' claims about the two designs, quoted beside the
  measured values (``benchmarks/claims.py`` :data:`LIGHT_CLAIMS`); the table is
  also added to ``benchmarks/results/claims.json`` (and its ``.md``/``.csv``).
  No AP: the weights are random.

Usage::

    nice -n 5 python benchmarks/bench_v2_light.py --imgsz 640 --threads 2 --iters 30 --backends onnxruntime,litert \
        --coreml-imgsz 160

Writes ``benchmarks/results/v2-light.json``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from claims import COLUMNS as CLAIM_COLUMNS
from claims import LIGHT_CLAIMS, claims_rows
from common import RESULTS_DIR, default_shared

from featherface_deploy.errors import FeatherFaceError
from featherface_deploy.formats import get_format, resolve
from featherface_deploy.harness.latency import LatencyConfig, Pipeline, measure_interleaved, open_for_timing
from featherface_deploy.harness.report import Column, machine_facts, render_markdown, write_report
from featherface_deploy.models import load_model
from featherface_deploy.models.registry import create_untrained_model
from featherface_deploy.pipeline import export_model
from featherface_deploy.postprocess import load_image

CHECKPOINTS = {"featherface-v1": "featherface-v1.pth", "featherface-v2-ca": "featherface-v2-ca.pth"}
UNTRAINED = ("featherface-v2-optimized", "featherface-v2-ultra")
SHORT = {"featherface-v1": "v1", "featherface-v2-ca": "v2ca", "featherface-v2-optimized": "v2opt",
         "featherface-v2-ultra": "v2ultra"}
BACKEND_ROWS = {"onnxruntime": "onnx", "litert": "tflite"}
PARITY_PHOTOS = 2
# MIL op types counted as outside Core ML's fast paths. Apple publishes no per-op list for the Neural
# Engine; what it documents is that an FP32-typed ML program runs on the GPU and CPU only (coremltools,
# "Typed Execution Workflow Example"), so every op of these FP32 packages is off the Neural Engine. Beyond
# that, this list flags the ops of the kinds the issue names as risky on edge runtimes: data-dependent
# indexing and sorting (gather*, scatter*, topk, argsort, non_maximum_suppression) and resampling at
# arbitrary ratios (resize*, upsample_*, crop_resize), which Core ML's compiler may split off or run on the
# CPU. This is our reading, not Apple's: the only ground truth is Xcode's performance report on a device.
COREML_WATCH = ("gather", "gather_nd", "gather_along_axis", "scatter", "scatter_nd", "scatter_along_axis", "topk",
                "argsort", "non_maximum_suppression", "resize", "resize_bilinear", "resize_nearest_neighbor",
                "upsample_bilinear", "upsample_nearest_neighbor", "crop_resize")


def main() -> None:
    """Exports, counts ops, times everything interleaved, writes the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="random weights of the untrained models")
    parser.add_argument("--backends", default="onnxruntime,litert")
    parser.add_argument("--coreml-imgsz", type=int, default=320,
                        help="Core ML census export size (the reference interpreter checks parity; 0 = skip)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-v2-light"), help="exported files (kept)")
    args = parser.parse_args()
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = set(backends) - set(BACKEND_ROWS)
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}; known: {', '.join(BACKEND_ROWS)}")
    size = (args.imgsz, args.imgsz)
    photos = sorted((args.shared / "data" / "calibration").glob("*.jpg"))
    sources = {**{name: args.shared / "weights" / file for name, file in CHECKPOINTS.items()},
               **{name: None for name in UNTRAINED}}

    models, files = {}, {}
    for name, checkpoint in sources.items():
        models[name] = _parameters(name, checkpoint, args.seed)
        for backend in backends:
            files[name, backend] = _export(name, checkpoint, BACKEND_ROWS[backend], size, args, photos)
    census = {name: _census(files, name, backends) for name in sources}
    if args.coreml_imgsz:
        for name in UNTRAINED:
            try:
                census[name]["coreml"] = _coreml_census(name, args, photos)
            except FeatherFaceError as error:  # recorded in the result, not hidden: the census says it failed
                census[name]["coreml"] = {"error": str(error).splitlines()[0]}
    latency = _latency(files, photos, size, args)
    rows = _rows(models, files, latency, backends)
    measured = _measured(models, files, latency, backends)
    claims = light_claims(measured, backends)
    payload = {**machine_facts(threads=args.threads, imgsz=list(size), iterations=args.iters, seed=args.seed,
                               images=len(photos)),
               "command": "nice -n 5 python benchmarks/bench_v2_light.py " + " ".join(
                   f"--{k.replace('_', '-')} {v}" for k, v in (("imgsz", args.imgsz), ("threads", args.threads),
                                                               ("iters", args.iters), ("backends", args.backends),
                                                               ("coreml_imgsz", args.coreml_imgsz),
                                                               ("seed", args.seed))),
               "untrained": {name: {"seed": args.seed} for name in UNTRAINED},
               "no_ap": "V2-Optimized and V2-Ultra have no trained weights: random weights give no meaningful AP, "
                        "so none is reported (their latency and op census do not depend on the weights' values)",
               "models": rows, "census": census, "claims": claims}
    out = RESULTS_DIR / "v2-light.json"
    out.write_text(json.dumps(payload, indent=1) + "\n")
    _add_to_claims_report(claims, payload)
    for row in rows:
        print(json.dumps(row))
    print(f"wrote {out}")


def _parameters(name: str, checkpoint: Path | None, seed: int) -> dict:
    model = load_model(checkpoint).model if checkpoint else create_untrained_model(name, seed)
    children = {child: sum(p.numel() for p in module.parameters()) for child, module in model.named_children()}
    return {"params": sum(p.numel() for p in model.parameters()), "modules": children,
            "weights": str(checkpoint.name) if checkpoint else f"random (seed {seed})"}


def _export(name: str, checkpoint: Path | None, row: str, size, args, photos) -> Path:
    """Exports one model to one row (or finds this run's earlier export in ``--work``)."""
    fmt = get_format(row)
    seed = None if checkpoint else args.seed
    path = args.work / f"{name}-{'seed%d' % seed if checkpoint is None else 'trained'}-{size[0]}{fmt.suffix}"
    if path.exists() and (path.with_name(path.name + ".json").exists() or fmt.verify_entry):
        print(f"{name} {row}: reusing {path}")
        return path
    source = checkpoint if checkpoint else create_untrained_model(name, seed)
    outcome = export_model(source, path, row, {"imgsz": size}, parity_images=photos[:PARITY_PHOTOS],
                           log=print, exist_ok=True, untrained_seed=seed)
    if not outcome.parity.passed:
        raise SystemExit(f"{name} {row}: parity failed")
    return path


def _census(files: dict, name: str, backends: list[str]) -> dict:
    found = {}
    if (name, "onnxruntime") in files:
        import onnx

        graph = onnx.load(str(files[name, "onnxruntime"])).graph
        found["onnx"] = dict(Counter(node.op_type for node in graph.node).most_common())
    if (name, "litert") in files:
        found["tflite"] = tflite_delegation(files[name, "litert"])
    return found


def tflite_delegation(path: Path, threads: int = 2) -> dict:
    """Builtin ops of a TFLite file and those LiteRT's default XNNPACK delegate does not take.

    The interpreter (default delegates on) lists the model's nodes and one ``DELEGATE`` node per XNNPACK
    partition; a node is delegated when it lies inside a partition: reached by walking producers back from
    the partition's outputs without crossing its inputs.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    nodes = interpreter._get_ops_details()  # the only Python view of the nodes after delegation
    partitions = [node for node in nodes if node["op_name"] == "DELEGATE"]
    original = [node for node in nodes if node["op_name"] != "DELEGATE"]
    producer = {int(t): node for node in original for t in node["outputs"]}
    delegated: set[int] = set()
    for partition in partitions:
        boundary = {int(t) for t in partition["inputs"]}
        stack = [producer[int(t)] for t in partition["outputs"] if int(t) in producer]
        while stack:
            node = stack.pop()
            if node["index"] in delegated:
                continue
            delegated.add(node["index"])
            stack += [producer[int(t)] for t in node["inputs"] if int(t) not in boundary and int(t) in producer]
    left = Counter(node["op_name"] for node in original if node["index"] not in delegated)
    return {"ops": dict(Counter(node["op_name"] for node in original).most_common()), "nodes": len(original),
            "xnnpack_partitions": len(partitions), "xnnpack_nodes": len(delegated),
            "not_delegated": dict(left.most_common())}


def _coreml_census(name: str, args, photos) -> dict:
    """The MIL op types of the FP32 package (exported at ``--coreml-imgsz``, parity by the interpreter)."""
    size = (args.coreml_imgsz, args.coreml_imgsz)
    path = args.work / f"{name}-seed{args.seed}-{size[0]}.mlpackage"
    if not path.exists():
        export_model(create_untrained_model(name, args.seed), path, "coreml", {"imgsz": size},
                     parity_images=photos[:PARITY_PHOTOS], log=print, exist_ok=True, untrained_seed=args.seed)
    import coremltools as ct

    from featherface_deploy.exporters.torch2coreml import program_op_counts

    ops = program_op_counts(ct.models.MLModel(str(path), skip_model_load=True))
    return {"imgsz": list(size), "mil_ops": ops, "watch_list": {op: n for op, n in ops.items() if op in COREML_WATCH},
            "fp32": "every op: an FP32 ML program runs on GPU and CPU, not the Neural Engine "
                    "(coremltools, Typed Execution Workflow Example)"}


def _latency(files: dict, photos: list[Path], size, args) -> dict:
    images = [load_image(path) for path in photos[:8]]
    pipelines = {}
    for (name, backend), path in files.items():
        row = get_format(BACKEND_ROWS[backend])
        runtime = open_for_timing(resolve(row.runtime), path, args.threads, dict(row.runtime_options))
        pipelines[f"{name}|{backend}"] = Pipeline(runtime, images, LatencyConfig(size))
    print(f"timing {len(pipelines)} pipelines interleaved: {args.warmup} warm-up + {args.iters} rounds…")
    stats = measure_interleaved(pipelines, args.warmup, args.iters)
    return {tuple(key.split("|")): value.to_dict() for key, value in stats.items()}


def _rows(models: dict, files: dict, latency: dict, backends: list[str]) -> list[dict]:
    rows = []
    for name, info in models.items():
        for backend in backends:
            stats, base = latency[name, backend], latency["featherface-v1", backend]
            rows.append({"model": name, "weights": info["weights"], "backend": backend, "params": info["params"],
                         "file_mb": round(files[name, backend].stat().st_size / 1e6, 3),
                         "infer_ms": stats["infer_ms"], "p50_ms": stats["p50_ms"], "p90_ms": stats["p90_ms"],
                         "v1_over_model_infer": round(base["infer_ms"] / stats["infer_ms"], 2),
                         "v1_over_model_p50": round(base["p50_ms"] / stats["p50_ms"], 2)})
    return rows


def _measured(models: dict, files: dict, latency: dict, backends: list[str]) -> dict:
    measured = {}
    for name in UNTRAINED:
        short = SHORT[name]
        measured[f"params_{short}"] = models[name]["params"]
        for backend in backends:
            v1 = latency["featherface-v1", backend]["infer_ms"]
            measured[f"speed_{short}_over_v1_{backend}"] = v1 / latency[name, backend]["infer_ms"]
            measured[f"file_mb_{short}_{BACKEND_ROWS[backend]}"] = files[name, backend].stat().st_size / 1e6
    return measured


def light_claims(measured: dict, backends: list[str]) -> list[dict]:
    """The documents' claims about the two designs beside ``measured``, each row saying which backend or file."""
    how = {"params": "PyTorch model from the registry (random weights)"}
    for backend in backends:
        for short in (SHORT[name] for name in UNTRAINED):
            how[f"speed_{short}_over_v1_{backend}"] = (f"{backend} FP32: V1 median inference / the model's, "
                                                       "this run, interleaved")
            how[f"file_mb_{short}_{BACKEND_ROWS[backend]}"] = f"{BACKEND_ROWS[backend]} FP32 file of this run"
    return claims_rows(measured, how, LIGHT_CLAIMS)


def _add_to_claims_report(claims: list[dict], payload: dict) -> None:
    """Adds (or replaces) the V2-Optimized / V2-Ultra table in ``claims.json`` and re-renders its files."""
    path = RESULTS_DIR / "claims.json"
    if not path.is_file():
        print(f"{path} not found (run benchmarks/bench_peers.py first): the claims table stays in v2-light.json")
        return
    report = json.loads(path.read_text())
    title = (f"V2-Optimized and V2-Ultra — untrained (random weights, seed {payload['seed']}), so no AP; measured "
             f"{payload['date']} by `{payload['command']}` ({payload['threads']} threads, {payload['imgsz'][0]}×"
             f"{payload['imgsz'][1]}, speed = V1 median inference / the model's, interleaved in one run)")
    tables = [t for t in report.get("tables", ()) if not t["title"].startswith("V2-Optimized and V2-Ultra")]
    tables.append({"title": title, "columns": [c.to_dict() for c in CLAIM_COLUMNS], "rows": claims})
    extra = {k: v for k, v in report.items() if k not in ("name", "facts", "columns", "rows", "notes")}
    extra["tables"] = tables
    write_report(RESULTS_DIR, "claims", report["rows"], [Column(**c) for c in report["columns"]], report["facts"],
                 report.get("notes", ()), extra=extra, plot=False, exist_ok=True)
    print(render_markdown({"columns": tables[-1]["columns"], "rows": claims}))


if __name__ == "__main__":
    main()
