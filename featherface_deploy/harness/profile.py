"""``profile`` reports: where a model's time goes, per layer group, DCN layer and op type, next to its floor.

:func:`profile_model` dispatches on the file's format: ONNX files get ONNX Runtime's per-node profile
(:mod:`~featherface_deploy.harness.profile_ort`) grouped by the exported graph's module paths
(:mod:`~featherface_deploy.harness.onnx_scopes`) beside the MACs and DCN sampling bytes of each group
(:mod:`~featherface_deploy.harness.onnx_floor`); TFLite files get LiteRT's delegation and invoke times
(:mod:`~featherface_deploy.harness.profile_litert`). Reports are plain dicts of rows (JSON-ready) that
:func:`report_tables` renders as Markdown.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path

from featherface_deploy.errors import FeatherFaceError
from featherface_deploy.formats import format_for_path
from featherface_deploy.harness.report import Column, markdown_table

FAMILIES = ("onnx", "tflite")
GROUP_COLUMNS = [Column("group", "Group"), Column("ms", "ms", 2), Column("share", "share %", 1),
                 Column("mmacs", "MMAC", 1), Column("gmac_per_s", "GMAC/s", 1), Column("dcn_mb", "DCN read MB", 1),
                 Column("gb_per_s", "DCN GB/s", 2)]
LAYER_COLUMNS = [Column("layer", "DCN layer")] + GROUP_COLUMNS[1:]
OP_COLUMNS = [Column("op", "Op type"), Column("nodes", "nodes"), Column("ms", "ms", 2), Column("share", "share %", 1)]
TFLITE_GROUP_COLUMNS = [Column("group", "Group"), Column("ops", "ops"), Column("xnnpack", "in XNNPACK"),
                        Column("outside", "outside"), Column("outside_types", "op types outside")]
TFLITE_OP_COLUMNS = [Column("op", "Op type outside XNNPACK"), Column("ops", "ops")]
TFLITE_TIME_COLUMNS = [Column("what", "LiteRT invoke"), Column("ms", "ms", 2)]


def profile_model(path: str | Path, size: tuple[int, int], threads: int | None, warmup: int, runs: int) -> dict:
    """Profiles an ``.onnx`` or ``.tflite`` file.

    Args:
        path: The model file.
        size: (height, width) for any-size models (fixed-size models use their own).
        threads: Inference threads.
        warmup: Untimed runs.
        runs: Timed runs (medians).

    Returns:
        The report: ``format``, ``summary`` and its tables (lists of row dicts).

    Raises:
        FeatherFaceError: A format other than ONNX or TFLite, or a file its runtime cannot read.
    """
    family = format_for_path(path).family
    if family not in FAMILIES:
        raise FeatherFaceError(f"profile takes ONNX (.onnx) or TFLite (.tflite) files; {path} is {family}")
    if family == "onnx":
        return onnx_report(path, size, threads, warmup, runs)
    return tflite_report(path, threads, warmup, runs)


def onnx_report(path: str | Path, size: tuple[int, int], threads: int | None, warmup: int, runs: int) -> dict:
    """ONNX Runtime's time per layer group, DCN layer and op type, with each group's MACs and DCN reads."""
    import onnx

    from featherface_deploy.harness.onnx_floor import node_floor
    from featherface_deploy.harness.onnx_scopes import group_of, layer_of, node_scopes, optimized_scopes
    from featherface_deploy.harness.profile_ort import profile_onnx

    from featherface_deploy.harness.int8_kernels import integer_mac_share

    with tempfile.TemporaryDirectory(prefix="featherface-profile-") as workdir:
        profile = profile_onnx(path, size, threads, warmup, runs, workdir)
        model = onnx.load(str(path))
        optimized = onnx.load(str(profile.optimized_model))
        ran = optimized_scopes(model, optimized)
        integer = integer_mac_share(model, optimized, profile.input_shape)
    floor = node_floor(model, tuple(profile.input_shape[2:]))
    exported = node_scopes(model)
    groups, layers, ops = defaultdict(_cell), defaultdict(_cell), defaultdict(_cell)
    for name, ms in profile.node_ms.items():
        module = ran.get(name, ())
        for table, key in ((groups, group_of(module)), (layers, layer_of(module)), (ops, profile.node_op[name])):
            table[key]["ms"] += ms
            table[key]["nodes"] += 1
    for name, cost in floor.items():
        module = exported.get(name, ())
        for table, key in ((groups, group_of(module)), (layers, layer_of(module))):
            table[key]["macs"] += cost["macs"]
            table[key]["dcn_bytes"] += cost["dcn_bytes"]
    total = profile.kernels_ms
    summary = {"run_ms": round(profile.run_ms, 3), "kernels_ms": round(total, 3), "runs": profile.runs,
               "warmup": warmup, "threads": profile.threads, "input_shape": list(profile.input_shape),
               "gmacs": round(sum(c["macs"] for c in floor.values()) / 1e9, 4),
               "dcn_mb": round(sum(c["dcn_bytes"] for c in floor.values()) / 1e6, 3), **integer.record()}
    return {"format": "onnx", "runtime": "onnxruntime", "summary": summary,
            "groups": _rows("group", groups, total),
            "dcn_layers": [row for row in _rows("layer", layers, total) if row["dcn_mb"]],
            "op_types": [{"op": key, "nodes": cell["nodes"], "ms": round(cell["ms"], 3),
                          "share": round(100.0 * cell["ms"] / total, 2) if total else 0.0}
                         for key, cell in sorted(ops.items(), key=lambda item: -item[1]["ms"])]}


def tflite_report(path: str | Path, threads: int | None, warmup: int, runs: int) -> dict:
    """LiteRT's XNNPACK partitions, the ops outside them per group, and the invoke times."""
    from featherface_deploy.harness.profile_litert import profile_tflite

    from featherface_deploy.exporters.tflite_graph import mac_ops

    profile = profile_tflite(path, threads, warmup, runs)
    integer = integer_kernel_macs(mac_ops(Path(path).read_bytes()), profile.ops)
    groups: dict[str, dict] = {}
    for op in profile.ops:
        row = groups.setdefault(op["group"], {"group": op["group"], "ops": 0, "xnnpack": 0, "outside": 0,
                                              "types": defaultdict(int)})
        row["ops"] += 1
        if op["partition"] is None:
            row["outside"] += 1
            row["types"][op["op"]] += 1
        else:
            row["xnnpack"] += 1
    for row in groups.values():
        types = sorted(row.pop("types").items(), key=lambda item: -item[1])
        row["outside_types"] = ", ".join(f"{op} {count}" for op, count in types) or None
    times = [("whole invoke, XNNPACK", profile.xnnpack_ms), ("whole invoke, built-in kernels only", profile.builtin_ms),
             ("ops outside XNNPACK, cut out and timed alone", profile.rest_ms),
             ("XNNPACK partitions (estimate: XNNPACK invoke − outside ops)", profile.partitions_ms)]
    summary = {"partitions": profile.partitions, "ops": len(profile.ops),
               "ops_in_xnnpack": sum(op["partition"] is not None for op in profile.ops),
               "ops_outside": sum(op["partition"] is None for op in profile.ops),
               "xnnpack_ms": round(profile.xnnpack_ms, 3), "builtin_ms": round(profile.builtin_ms, 3),
               "rest_ms": round(profile.rest_ms, 3), "partitions_ms": round(profile.partitions_ms, 3),
               "runs": profile.runs, "warmup": warmup, "threads": profile.threads,
               "input_shape": list(profile.input_shape), **integer}
    return {"format": "tflite", "runtime": "litert", "summary": summary, "groups": list(groups.values()),
            "times": [{"what": what, "ms": round(ms, 3)} for what, ms in times],
            "outside_op_types": [{"op": op, "ops": count} for op, count in profile.outside_types.most_common()],
            "ops": profile.ops}


def integer_kernel_macs(ops: list[tuple[int, str, int, str]], executed: list[dict]) -> dict:
    """Shares of a TFLite file's MACs run by integer kernels: all of them, and those XNNPACK took.

    Args:
        ops: :func:`~featherface_deploy.exporters.tflite_graph.mac_ops` of the file.
        executed: The profile's ops (``index``, ``partition``: ``None`` outside XNNPACK).
    """
    delegated = {op["index"] for op in executed if op["partition"] is not None}
    total = sum(macs for _, _, macs, _ in ops) or 1
    integer = [(index, macs) for index, _, macs, dtype in ops if dtype == "INT8"]
    return {"integer_mac_fraction": round(sum(macs for _, macs in integer) / total, 4),
            "integer_mac_fraction_xnnpack": round(sum(macs for index, macs in integer if index in delegated) / total, 4)}


def report_tables(report: dict) -> str:
    """The report as Markdown: a summary line and its tables."""
    summary = report["summary"]
    shape = "×".join(str(v) for v in summary["input_shape"])
    timing = f"input {shape}, threads {summary['threads']}, median of {summary['runs']} after {summary['warmup']}"
    if report["format"] == "onnx":
        head = (f"ONNX Runtime, {timing}: run {summary['run_ms']:.2f} ms, kernels {summary['kernels_ms']:.2f} ms; "
                f"floor {summary['gmacs']:.3f} GMAC, DCN sampling reads {summary['dcn_mb']:.1f} MB per frame; "
                f"{100 * summary['integer_mac_fraction']:.1f}% of the weight layers' MACs in integer kernels "
                f"({summary['integer_layers']} of {summary['weight_layers']} layers)")
        tables = [(report["groups"], GROUP_COLUMNS), (report["dcn_layers"], LAYER_COLUMNS),
                  (report["op_types"], OP_COLUMNS)]
    else:
        head = (f"LiteRT, {timing}: {summary['partitions']} XNNPACK partitions own {summary['ops_in_xnnpack']} of "
                f"{summary['ops']} ops; {summary['ops_outside']} run on the built-in kernels; "
                f"{100 * summary['integer_mac_fraction']:.1f}% of the MACs in integer kernels "
                f"({100 * summary['integer_mac_fraction_xnnpack']:.1f}% in XNNPACK's)")
        tables = [(report["times"], TFLITE_TIME_COLUMNS), (report["groups"], TFLITE_GROUP_COLUMNS),
                  (report["outside_op_types"], TFLITE_OP_COLUMNS)]
    return "\n\n".join([head] + [markdown_table(rows, columns) for rows, columns in tables])


def _cell() -> dict:
    return {"ms": 0.0, "nodes": 0, "macs": 0, "dcn_bytes": 0}


def _rows(key: str, table: dict, total_ms: float) -> list[dict]:
    """Rows of a group or layer table, slowest first: time, share, MACs, DCN bytes and the implied rates."""
    rows = []
    for name, cell in sorted(table.items(), key=lambda item: -item[1]["ms"]):
        seconds = cell["ms"] / 1000.0
        rows.append({key: name, "ms": round(cell["ms"], 3),
                     "share": round(100.0 * cell["ms"] / total_ms, 2) if total_ms else 0.0,
                     "macs": cell["macs"], "mmacs": round(cell["macs"] / 1e6, 3),
                     "gmac_per_s": round(cell["macs"] / seconds / 1e9, 2) if seconds and cell["macs"] else None,
                     "dcn_bytes": cell["dcn_bytes"], "dcn_mb": round(cell["dcn_bytes"] / 1e6, 3),
                     "gb_per_s": round(cell["dcn_bytes"] / seconds / 1e9, 3) if seconds and cell["dcn_bytes"] else None})
    return rows
