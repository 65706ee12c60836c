"""Markdown tables of the results files in ``benchmarks/results/``: one renderer per file.

Report files (``compare``, ``bench_peers`` … written by :func:`featherface_deploy.harness.report.write_report`)
carry their own columns and notes; the focused scripts' files have their own shapes, so each has a
renderer here that picks its figures and nothing else (never a target or a verdict against one).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from featherface_deploy.harness.report import Column, markdown_table

RESULTS_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def load_results(name: str, results_dir: Path = RESULTS_DIR) -> dict:
    """Reads ``<results_dir>/<name>.json``."""
    return json.loads((results_dir / f"{name}.json").read_text())


def _columns(*specs: tuple) -> list[Column]:
    return [Column(*spec) for spec in specs]


# "(target ≤ 2.0 ms: met)": a grading against a development target, which older results files wrote into
# their notes; the documentation states measurements, not gradings.
_GRADING = re.compile(r",? ?\(target [^)]*\)")


def report_tables(payload: Mapping) -> str:
    """A report file's table(s) and notes (its environment goes into the page's environment block)."""
    parts = [markdown_table(payload["rows"], [Column(**c) for c in payload["columns"]])]
    for table in payload.get("tables", ()):
        parts += [f"**{table['title']}**", markdown_table(table["rows"], [Column(**c) for c in table["columns"]])]
    parts.append("\n".join(f"- {_GRADING.sub('', note)}" for note in payload.get("notes", ())))
    return "\n\n".join(part for part in parts if part)


def dcn_torch(payload: Mapping) -> str:
    """``bench_dcn_torch.py``: the DCN model under each eager lowering against the same model with plain convs."""
    row = {"clock": payload.get("clock", "wall"), "threads": payload["threads"], "iters": payload["iters"],
           "size": f"{payload['size']}²", **{k: payload[k] for k in ("dcn_ms", "grid_sample_ms", "plain_ms",
                                                                     "ratio", "grid_sample_ratio")}}
    return markdown_table([row], _columns(
        ("clock", "Clock"), ("threads", "Threads"), ("iters", "Iterations"), ("size", "Input"),
        ("dcn_ms", "`bags` ms", 1), ("grid_sample_ms", "`grid_sample` ms", 1), ("plain_ms", "plain 3×3 ms", 1),
        ("ratio", "`bags` / plain", 2), ("grid_sample_ratio", "`grid_sample` / plain", 2)))


def dcn_memory(payload: Mapping) -> str:
    """``bench_dcn_memory.py``: peak resident memory of one large image per lowering."""
    return markdown_table(payload["rows"], _columns(
        ("variant", "Lowering"), ("size", "Image side px"), ("before_inference_mb", "RSS before inference MB"),
        ("peak_rss_mb", "Peak RSS MB")))


def onnx_dcn(payload: Mapping) -> str:
    """``bench_onnx_dcn.py``: every DCN lowering in ONNX Runtime and LiteRT beside RetinaFace-MNet0.25."""
    rows = []
    for name, median in payload["median_ms"].items():
        graph = payload["graph"].get(name, {})
        rows.append({"model": name, "median_ms": median, "ratio": payload["ratio_to_retinaface"][name],
                     "nodes": graph.get("nodes", graph.get("operators")),
                     "delegated": graph.get("delegated"), "export_s": payload["export_s"].get(name)})
    table = markdown_table(rows, _columns(
        ("model", "Model (lowering, format)"), ("median_ms", "Median ms", 1), ("ratio", "× RetinaFace", 2),
        ("nodes", "Nodes / operators"), ("delegated", "Operators in XNNPACK"), ("export_s", "Export s", 1)))
    ratios = [{"lowering": f"`{name}`", "same": value["same_lowering"], "fastest": value["ort_fastest"]}
              for name, value in payload["litert_over_ort"].items()]
    table += "\n\n" + markdown_table(ratios, _columns(
        ("lowering", "LiteRT lowering"), ("same", "LiteRT / ORT, same lowering", 2),
        ("fastest", "LiteRT / ORT's fastest", 2)))
    return table + (f"\n\nFastest lowering: ONNX Runtime `{payload['fastest_onnx_lowering']}`, LiteRT "
                    f"`{payload['fastest_tflite_lowering']}`; input {payload['input'][0]}×{payload['input'][1]}, "
                    f"{payload['runs']} runs, ONNX Runtime thread spinning "
                    f"{'on' if payload.get('ort_allow_spinning') else 'off'}.")


def onnx_int8(payload: Mapping) -> str:
    """``bench_onnx_int8.py``: ONNX FP32 against the INT8 variants (AP, size, latency, float MAC share)."""
    return markdown_table(payload["rows"], _columns(
        ("model", "Model"), ("size_mb", "Size MB", 2), ("latency_ms_640_2threads", "Median ms (640², 2 threads)", 1),
        ("ap_easy", "Easy AP", 2), ("ap_medium", "Medium AP", 2), ("ap_hard", "Hard AP", 2),
        ("float_mac_fraction", "Float MAC share", 3)))


def int8_speed(payload: Mapping) -> str:
    """``bench_int8_speed.py``: each checkpoint's FP32 and INT8 files timed together, with AP and the integer share."""
    rows = [{**row, "checkpoint": row["checkpoint"].removeprefix("featherface-"),
             "ratio": f"{row['speedup_vs_fp32']:.2f}×", "integer": f"{100 * row['integer_mac_fraction']:.1f}%"}
            for row in payload["rows"]]
    table = markdown_table(rows, _columns(
        ("checkpoint", "Checkpoint"), ("format", "Format"), ("variant", "File"), ("median_ms", "Median ms", 1),
        ("ratio", "FP32 ms / this ms"), ("integer", "MACs in integer kernels"), ("ap_easy", "Easy AP", 2),
        ("ap_medium", "Medium AP", 2), ("ap_hard", "Hard AP", 2), ("size_mb", "MB", 2)))
    profiled = [row for row in rows if "ort_kernel_ms" in row]
    if not profiled:
        return table
    categories = sorted({c for row in profiled for c in row["ort_kernel_ms"]},
                        key=lambda c: (c == "other", -max(row["ort_kernel_ms"].get(c, 0.0) for row in profiled)))
    kernel_rows = [{"checkpoint": row["checkpoint"], "variant": row["variant"],
                    "total": sum(row["ort_kernel_ms"].values()), **row["ort_kernel_ms"]} for row in profiled]
    kernels = markdown_table(kernel_rows, _columns(
        ("checkpoint", "Checkpoint"), ("variant", "ONNX file"), ("total", "Kernels ms", 1),
        *((category, f"{category} ms", 1) for category in categories)))
    return f"{table}\n\n**ONNX Runtime kernel time per run, by op type** (its profiler; medians per node)\n\n{kernels}"


def int8_census(payload: Mapping) -> str:
    """``int8_census.py``: what runs integer (ONNX Runtime) or in XNNPACK (LiteRT) on another CPU and here."""
    device = payload["device"]
    places = (("device", f"{device['name']} ({device['machine']}; {', '.join(device['isa_flags']) or '—'})"),
              ("host", "this host"))
    rows = []
    for row in payload["rows"]:
        for where, label in places:
            census = row[where]
            if row["format"] == "onnx":
                detail = ", ".join(f"{k} {v}" for k, v in sorted(census["integer_kernels"].items())) or "none"
            else:
                outside = ", ".join(f"{k} {v}" for k, v in census["outside_xnnpack"].items()) or "none"
                detail = f"{census['partitions']} XNNPACK partitions; outside: {outside}"
            rows.append({"file": f"`{row['file']}`", "where": label,
                         "integer": f"{100 * census['integer_mac_fraction']:.1f}%", "detail": detail})
    return markdown_table(rows, _columns(
        ("file", "File"), ("where", "Where"), ("integer", "MACs in integer kernels"),
        ("detail", "Integer kernels (ONNX Runtime) / delegation (LiteRT)")))


def int8_ap_x86_cpu(payload: Mapping) -> str:
    """``int8_ap_x86_cpu.py``: AP of the same files on this host's kernels and under QEMU's other x86 CPU model."""
    cpu = payload["emulated_cpu"]
    rows = [{"file": f"`{row['file']}`", **{f"{level}_{where}": row[where][level]
                                           for level in ("easy", "medium", "hard") for where in ("host", "emulated")}}
            for row in payload["rows"]]
    model = f"{cpu['qemu_model']} ({', '.join(cpu['isa_flags'])})"
    return markdown_table(rows, _columns(
        ("file", "File"), *((f"{level}_{where}", f"{level.title()} {label}", 2) for level in ("easy", "medium", "hard")
                            for where, label in (("host", "here"), ("emulated", model)))))


def tflite(payload: Mapping) -> str:
    """``bench_tflite.py``: TFLite FP32/FP16/INT8 beside PyTorch and ONNX Runtime."""
    ap, latency, sizes = payload["ap"], payload["latency_ms_median"], payload["file_bytes"]
    rows = [{"model": name, "runtime": runtime, "size": sizes.get(size_key, 0) / 1e6 if size_key else None,
             "ms": latency.get(latency_key), "export_s": payload["export_timings_s"].get(size_key, {}).get("total"),
             **{f"ap_{s}": 100 * ap[ap_key][s] for s in ("easy", "medium", "hard") if ap_key in ap}}
            for name, runtime, size_key, latency_key, ap_key in (
                ("PyTorch FP32", "torch", None, None, "torch_fp32"),
                ("ONNX FP32", "onnxruntime", "onnx_fp32", "onnxruntime_fp32", None),
                ("TFLite FP32", "litert", "fp32", "litert_fp32", "tflite_fp32"),
                ("TFLite FP16", "litert", "fp16", "litert_fp16", "tflite_fp16"),
                ("TFLite INT8", "litert", "int8", "litert_int8", "tflite_int8"))]
    return markdown_table(rows, _columns(
        ("model", "Model"), ("runtime", "Runtime"), ("size", "Size MB", 2), ("ms", "Median ms", 1),
        ("export_s", "Export s", 1), ("ap_easy", "Easy AP", 2), ("ap_medium", "Medium AP", 2),
        ("ap_hard", "Hard AP", 2)))


def coreml(payload: Mapping) -> str:
    """``bench_coreml.py``: the Core ML rows through the reference interpreter (AP, size, export, parity)."""
    rows = [{"row": "torch", **payload["ap"]["torch"], "p50": payload["ms_per_image"]["torch"]["p50"]}]
    for name, row in payload["rows"].items():
        rows.append({"row": name, **payload["ap"][name], "p50": payload["ms_per_image"][name]["p50"],
                     "size_mb": row["size_mb"], "export_s": row["export_s"], "op_types": row["op_types"],
                     "match": row["parity"]["match_rate"]})
    return markdown_table(rows, _columns(
        ("row", "Row"), ("size_mb", "Size MB", 2), ("export_s", "Export s", 1), ("op_types", "MIL op types"),
        ("match", "Parity match rate", 3), ("easy", "Easy AP", 2), ("medium", "Medium AP", 2),
        ("hard", "Hard AP", 2), ("p50", "Median ms per image", 0))) + (
        f"\n\n{payload['images']} images at {payload['imgsz']}² from `{payload['weights']}`; the Core ML rows ran "
        "through the numpy reference interpreter (Linux), so their milliseconds time the interpreter, not Core ML.")


def arm_vs_x86_ap(payload: Mapping) -> str:
    """``arm_vs_x86_ap.py``: AP of the same files on the emulated ARM device and on x86."""
    rows = [{"file": f"`{name}`", **{f"{machine}_{s}": sides[machine][s] for machine in ("arm", "x86")
                                     for s in ("easy", "medium", "hard")},
             "images": sides["arm"]["images"], "runtime": sides["arm"]["runtime"]}
            for name, sides in payload["rows"].items()]
    return markdown_table(rows, _columns(
        ("file", "File"), ("runtime", "Runtime"), ("images", "Images"), ("arm_easy", "ARM Easy", 2),
        ("x86_easy", "x86 Easy", 2), ("arm_medium", "ARM Medium", 2), ("x86_medium", "x86 Medium", 2),
        ("arm_hard", "ARM Hard", 2), ("x86_hard", "x86 Hard", 2))) + (
        f"\n\nARM: {payload['device']}; {payload['imgsz']}² inputs. Command: `{payload['command']}`.")


def arm_vs_x86_raw(payload: Mapping) -> str:
    """``arm_vs_x86_raw.py``: raw output differences of INT8 files, ARM against x86 and each against FP32."""
    return markdown_table(payload["rows"], _columns(
        ("model", "File"), ("output", "Output"), ("arm_x86_max", "max \\|ARM − x86\\|", 4),
        ("arm_x86_mean", "mean \\|ARM − x86\\|", 5), ("arm_fp32_max", "max \\|ARM − FP32\\|", 4),
        ("x86_fp32_max", "max \\|x86 − FP32\\|", 4), ("arm_fp32_mean", "mean \\|ARM − FP32\\|", 5),
        ("x86_fp32_mean", "mean \\|x86 − FP32\\|", 5))) + (
        f"\n\n{payload['images']} images; ARM CPU emulated: {payload['cpu']}.")


def profile(payload: Mapping) -> str:
    """``featherface-deploy profile --json``: time per layer group (ONNX Runtime) or XNNPACK share (LiteRT)."""
    if payload["runtime"] == "litert":
        table = markdown_table(payload["groups"], _columns(
            ("group", "Layer group"), ("ops", "Operators"), ("xnnpack", "In XNNPACK"), ("outside", "Outside")))
        return table + "\n\n" + markdown_table(payload["times"], _columns(("what", "Run"), ("ms", "ms", 1)))
    summary = payload["summary"]
    table = markdown_table(payload["groups"], _columns(
        ("group", "Layer group"), ("ms", "ms", 1), ("share", "Share %", 1), ("mmacs", "MMACs", 1),
        ("gmac_per_s", "GMAC/s", 2), ("dcn_mb", "DCN reads MB", 1)))
    return table + (f"\n\nWhole run {summary['run_ms']:.1f} ms, kernels {summary['kernels_ms']:.1f} ms; "
                    f"{summary['gmacs']} GMACs; {summary['runs']} runs after {summary['warmup']} warm-up, "
                    f"{summary['threads']} threads, input {'×'.join(map(str, summary['input_shape']))}.")


def remote_overhead(payload: Mapping) -> str:
    """``bench_remote_overhead.py``: ``benchmark --remote`` over loopback ssh against the same run locally."""
    s = payload["summary"]
    row = {"model": payload["model"], "rounds": len(payload["rounds"]), "remote": s["median_remote_p50_ms"],
           "local": s["median_local_p50_ms"], "ratio": s["median_ratio"], "remote_wall": s["median_remote_wall_s"],
           "local_wall": s["median_local_wall_s"]}
    return markdown_table([row], _columns(
        ("model", "Model"), ("rounds", "Rounds"), ("remote", "Remote p50 ms", 1), ("local", "Local p50 ms", 1),
        ("ratio", "Median remote / local", 3), ("remote_wall", "Remote wall s", 2),
        ("local_wall", "Local wall s", 2))) + f"\n\nCommand: `{payload['command']}`."


def soak(payload: Mapping) -> str:
    """``soak.py``: resident memory over many frames per runtime."""
    return markdown_table(payload["rows"], _columns(
        ("runtime", "Runtime"), ("model", "Model"), ("frames", "Frames"), ("ms_per_frame", "ms per frame", 1),
        ("rss_first_mb", "RSS first MB", 1), ("rss_last_mb", "RSS last MB", 1),
        ("rss_growth_mb", "Growth MB", 1), ("slope_mb_per_1000_frames", "MB per 1000 frames", 3))) + (
        f"\n\n{payload['frames']} frames at {payload['imgsz']}², {payload['threads']} thread(s), RSS sampled every "
        f"{payload['sample_every']} frames, cycling over {payload['photos']} photos.")


def v2_light(payload: Mapping) -> str:
    """``bench_v2_light.py``: the untrained V2 designs beside V1 and V2-CA (size, latency; no AP)."""
    table = markdown_table(payload["models"], _columns(
        ("model", "Model"), ("weights", "Weights"), ("backend", "Runtime"), ("params", "Parameters"),
        ("file_mb", "File MB", 2), ("infer_ms", "Inference ms", 1), ("p50_ms", "p50 ms", 1),
        ("v1_over_model_infer", "V1 / model, inference", 2)))
    claims = markdown_table(payload["claims"], _columns(
        ("source", "Design document"), ("quote", "Claim, quoted"), ("claimed", "Claimed"),
        ("measured", "Measured"), ("unit", "Unit"), ("how", "Measured how")))
    return f"{table}\n\n{payload['no_ap']}.\n\n**The design documents' claims, measured**\n\n{claims}\n\nCommand: `{payload['command']}`."


def mediapipe(payload: Mapping) -> str:
    """``bench_mediapipe.py``: AP through MediaPipe's task beside ours on the same file, and detect latency."""
    def ap(scores: Mapping) -> str:
        return " / ".join(f"{scores[level]:.2f}" for level in ("easy", "medium", "hard"))

    rows = [{"model": row["model"], "precision": row["precision"], "task": ap(row["task_ap_stretched"]),
             "padded": ap(row["task_ap_padded"]), "ours03": ap(row["our_ap_nms03"]), "ours04": ap(row["our_ap_nms04"]),
             "task_ms": row["task_detect_ms"], "ipc_ms": row["task_with_ipc_ms"], "ours_ms": row["ours_litert_ms"]}
            for row in payload["rows"]]
    return markdown_table(rows, _columns(
        ("model", "Model"), ("precision", "Precision"), ("task", "Task AP, stretched (E / M / H)"),
        ("padded", "Task AP, padded to square"), ("ours03", "Ours, NMS 0.3"), ("ours04", "Ours, NMS 0.4"),
        ("task_ms", "Task `detect` ms", 1), ("ipc_ms", "Task + worker IPC ms", 1), ("ours_ms", "Ours (LiteRT) ms", 1)))


RENDERERS: dict[str, Callable[[Mapping], str]] = {
    "arm_vs_x86_ap": arm_vs_x86_ap, "arm_vs_x86_raw": arm_vs_x86_raw, "coreml": coreml,
    "dcn_memory_4000": dcn_memory, "dcn_torch": dcn_torch, "dcn_torch_cpu": dcn_torch, "onnx_dcn": onnx_dcn,
    "int8_census_arm64": int8_census, "int8_census_x86-haswell": int8_census, "int8_speed": int8_speed,
    "int8_ap_x86-haswell": int8_ap_x86_cpu,
    "mediapipe": mediapipe, "onnx_int8": onnx_int8, "profile-v1-native": profile, "profile-v1-onnx": profile, "profile-v1-tflite": profile,
    "profile-v1-tflite-fp32": profile, "profile-v1-tflite-int8": profile,
    "remote_overhead": remote_overhead, "soak": soak, "tflite": tflite, "v2-light": v2_light,
}


def render_results(name: str, results_dir: Path = RESULTS_DIR) -> str:
    """The Markdown of results file ``name``: its own renderer, or its report columns.

    Raises:
        KeyError: A file without report columns and without a renderer here.
    """
    payload = load_results(name, results_dir)
    if name in RENDERERS:
        return RENDERERS[name](payload)
    if "columns" in payload:
        return report_tables(payload)
    raise KeyError(f"benchmarks/results/{name}.json has no report columns and no renderer in docs_tools.results_tables")
