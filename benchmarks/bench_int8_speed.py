"""INT8 vs FP32 speed in ONNX Runtime and LiteRT (XNNPACK), per checkpoint, with AP and the integer-kernel share.

For each checkpoint (V1, V2-CA by default) and format (ONNX, TFLite) the script exports, at 640×640
(files already in ``--workdir`` are reused):

- ``fp32`` and ``int8``: the default exports (``export --format onnx|tflite [--int8 --calib-dir
  <shared>/data/calibration]``);
- ``int8 fused`` (ONNX only): ``--placement fused`` without the keep-float search, the Q/DQ
  placement ONNX Runtime turns into ``QLinearConv`` (its integer kernels), on the native
  ``DeformConv`` graph;
- ``int8 stage-1 head float`` (TFLite only): ``--keep-float`` of only the first two blocks of
  backbone stage 1 (:data:`STAGE1_HEAD`) instead of the whole stage, without the search: what
  it costs to take V1 past 90% of its MACs in integer kernels;
- ``… no DCN sampling`` (**timing only**, skipped with ``--no-ablation``): the same FP32 and
  integer-kernel INT8 exports of the checkpoint with each deformable convolution replaced by
  its own convolutions without the sampling (:class:`SamplingFreeDcn`): the offset/mask
  convolution is still computed, the 3×3 kernel runs as a plain convolution. Its detections mean
  nothing (no AP); its times say what the network costs when the deformable sampling, which no
  runtime runs in integer arithmetic, is taken away.

Then:

- **time**: every file of one checkpoint and one format, interleaved round-robin (the machine's
  noise hits all alike), ``--threads`` threads, ONNX Runtime with ``allow_spinning`` off;
  medians, and the ratio to the FP32 file of the same kind (> 1: faster than FP32);
- **integer share**: the share of the weight layers' MACs that ran in integer kernels
  (ONNX Runtime: from its optimized graph, :mod:`featherface_deploy.harness.int8_kernels`;
  LiteRT: the ops with int8 outputs, :func:`~featherface_deploy.exporters.tflite_graph.integer_mac_fraction`);
- **AP**: Easy/Medium/Hard on ``<shared>/data/widerface-val-416`` (the images fitted into 640),
  the first ``--limit`` images only when given; not for the ablation;
- **where ONNX Runtime's time goes** (ONNX files): its profiler's kernel time per run, summed by
  :data:`OP_CATEGORIES` (``DeformConv``, float and integer convolutions, layout changes, Q/DQ…),
  medians of ``--profile-runs`` runs.

Writes ``benchmarks/results/int8_speed.json`` with the CPU model and its instruction-set flags
(avx2, avx512_vnni, avx_vnni, amx; asimddp, i8mm on ARM) and prints the docs' tables of it.

Usage (the quiet run; make the exports first, on a busy machine if need be, with ``--runs 0 --no-ap``)::

    python benchmarks/bench_int8_speed.py --workdir /tmp/int8-speed --runs 30
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import default_shared, median_ms, print_table, time_interleaved, write_result  # noqa: E402
from docs_tools.results_tables import int8_speed  # noqa: E402

CHECKPOINTS = ("featherface-v1", "featherface-v2-ca")
FORMATS = ("onnx", "tflite")
SIZE = (640, 640)
# The first two blocks of backbone stage 1 (the stem convolution and the first depthwise block), as a scope regex.
STAGE1_HEAD = r"MobileNetV1_body/torch\.nn\.modules\.container\.Sequential_stage1/torch\.nn\.modules\.container\.Sequential_[01]/"
# ONNX Runtime's optimized-graph op types → what the profile table sums them into (anything else: "other").
OP_CATEGORIES = {
    "DeformConv": "DeformConv", "Conv": "float conv", "FusedConv": "float conv",
    "QLinearConv": "integer conv", "QLinearMatMul": "integer conv", "ConvInteger": "integer conv",
    "MatMulInteger": "integer conv", "MatMulIntegerToFloat": "integer conv",
    "MatMul": "float MatMul", "FusedMatMul": "float MatMul", "Gather": "Gather",
    "Transpose": "layout", "ReorderInput": "layout", "ReorderOutput": "layout",
    "QuantizeLinear": "Q/DQ", "DequantizeLinear": "Q/DQ",
}


@dataclass(frozen=True)
class Variant:
    """One file to time: an export row and its options, from the checkpoint or its sampling-free ablation."""

    name: str
    row: str
    options: dict = field(default_factory=dict, hash=False, compare=False)
    ablated: bool = False

    @property
    def baseline(self) -> str:
        """The FP32 variant this one is compared with."""
        return "fp32 no DCN sampling" if self.ablated else "fp32"


def variants(fmt: str, ablation: bool) -> list[Variant]:
    """What is timed for one format: FP32, the default INT8, ONNX's integer-kernel placement, the ablation."""
    int8 = {"calib_dir": None}  # filled with <shared>/data/calibration
    fused = {**int8, "placement": "fused", "search": False}
    chosen = [Variant("fp32", fmt), Variant("int8", f"{fmt}-int8", int8)]
    if fmt == "onnx":
        chosen.append(Variant("int8 fused", "onnx-int8", fused))
    else:
        chosen.append(Variant("int8 stage-1 head float", "tflite-int8",
                              {**int8, "keep_float": (STAGE1_HEAD,), "search": False}))
    if ablation:
        chosen += [Variant("fp32 no DCN sampling", fmt, ablated=True),
                   Variant("int8 no DCN sampling", f"{fmt}-int8", fused if fmt == "onnx" else {**int8, "search": False},
                           ablated=True)]
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--checkpoints", default=",".join(CHECKPOINTS), help="names in <shared>/weights")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--workdir", type=Path, help="where the exports are written or found (default: a temp dir)")
    parser.add_argument("--runs", type=int, default=30, help="timed rounds (each runs every file once); 0: export only")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, help="AP on the first N evaluation images only")
    parser.add_argument("--no-ap", action="store_true", help="skip the AP evaluation")
    parser.add_argument("--no-ablation", action="store_true", help="skip the timing-only files without DCN sampling")
    parser.add_argument("--profile-runs", type=int, default=20, help="ONNX Runtime profiler runs per ONNX file (0: none)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-int8-speed-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for checkpoint in args.checkpoints.split(","):
        for fmt in args.formats.split(","):
            files = {variant: _export(args.shared, checkpoint, fmt, variant, workdir)
                     for variant in variants(fmt, not args.no_ablation)}
            if args.runs > 0:
                rows += _measure(args, checkpoint, fmt, files)
    if not rows:
        _log(f"exports ready in {workdir}")
        return
    payload = {"size": list(SIZE), "threads": args.threads, "runs": args.runs, "ap_images": args.limit or "all",
               "rows": rows}
    path = write_result("int8_speed", payload)
    print_table(int8_speed(payload))
    _log(f"wrote {path}")


def _export(shared: Path, checkpoint: str, fmt: str, variant: Variant, workdir: Path) -> Path:
    """One variant's export, made once into ``workdir``."""
    from featherface_deploy.pipeline import export_model

    out = workdir / f"{checkpoint}-{variant.name.replace(' ', '-')}.{fmt}"
    if out.is_file():
        return out
    options: dict = {"imgsz": SIZE, **variant.options}
    if "calib_dir" in options:
        options["calib_dir"] = shared / "data" / "calibration"
    weights = shared / "weights" / f"{checkpoint}.pth"
    _log(f"exporting {checkpoint} → {variant.row} ({variant.name}) …")
    if variant.ablated:
        export_model(sampling_free_model(weights), out, variant.row, options, log=_log, require_faces=False)
    else:
        export_model(weights, out, variant.row, options, log=_log)
    return out


def sampling_free_model(weights: Path):
    """The checkpoint's model with every deformable convolution replaced by :class:`SamplingFreeDcn`."""
    from featherface_deploy.models.checkpoint import load_model
    from featherface_deploy.models.deform_conv import ModulatedDeformConv2d

    model = load_model(weights).model
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, ModulatedDeformConv2d):
                setattr(module, name, SamplingFreeDcn(child))
    return model


class SamplingFreeDcn(nn.Module):
    """A DCN layer's own convolutions without its sampling (timing only).

    The offset/mask convolution (27 channels, as in the DCN) still runs, and a 1×1 convolution of its output
    (27 × C_out MACs per pixel, ~5% of the kernel's) is added to the kernel's so that no exporter drops it;
    the deformable 3×3 kernel runs as a plain convolution. Two same-shape tensors added: an op every
    runtime's integer path takes, so the ablation adds no float island of its own.
    """

    def __init__(self, source: nn.Module) -> None:
        super().__init__()
        out_channels = source.regular_conv.out_channels
        self.offset_and_mask = nn.Conv2d(source.offset_conv.in_channels, 27, 3, padding=1)
        self.offset_and_mask.weight.data = torch.cat([source.offset_conv.weight, source.modulator_conv.weight])
        self.offset_and_mask.bias.data = torch.cat([source.offset_conv.bias, source.modulator_conv.bias])
        self.mix = nn.Conv2d(27, out_channels, 1, bias=False)
        self.mix.weight.data = torch.full((out_channels, 27, 1, 1), 1e-3)
        self.kernel = source.regular_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.kernel(x) + self.mix(self.offset_and_mask(x))


def _measure(args, checkpoint: str, fmt: str, files: dict[Variant, Path]) -> list[dict]:
    from featherface_deploy.detector import FaceDetector
    from featherface_deploy.evaluation import evaluate_widerface

    runtimes = {variant: _runtime(fmt, path, args.threads) for variant, path in files.items()}
    sample = np.random.default_rng(0).uniform(-128, 128, (1, 3, *SIZE)).astype(np.float32)  # NCHW: both runtimes
    _log(f"timing {checkpoint} {fmt}: {args.runs} interleaved rounds of {len(files)} files …")
    samples = time_interleaved({variant.name: (lambda r=runtime: r.infer(sample))
                                for variant, runtime in runtimes.items()}, args.runs, args.warmup)
    rows = []
    for variant, path in files.items():
        ms = median_ms(samples[variant.name])
        row = {"checkpoint": checkpoint, "format": fmt, "variant": variant.name, "row": variant.row,
               "options": {k: v for k, v in variant.options.items() if k != "calib_dir"},
               "dcn_sampling": not variant.ablated, "file": str(path), "size_mb": round(path.stat().st_size / 1e6, 3),
               "median_ms": round(ms, 2), "speedup_vs_fp32": round(median_ms(samples[variant.baseline]) / ms, 3),
               "integer_mac_fraction": round(_integer_share(fmt, path), 4)}
        if fmt == "onnx" and args.profile_runs > 0:
            row["ort_kernel_ms"] = ort_kernel_ms(path, args.threads, args.profile_runs)
        if not args.no_ap and not variant.ablated:
            _log(f"evaluating {checkpoint} {fmt} {variant.name} …")
            started = time.perf_counter()
            ap = evaluate_widerface(FaceDetector(runtimes[variant]), args.shared / "data" / "widerface-val-416",
                                    limit=args.limit).ap.percentages
            row.update({f"ap_{level}": round(ap[level], 2) for level in ("easy", "medium", "hard")},
                       ap_seconds=round(time.perf_counter() - started, 1))
        rows.append(row)
    return rows


def ort_kernel_ms(path: Path, threads: int, runs: int) -> dict[str, float]:
    """ONNX Runtime's kernel time per run of ``path``, summed by :data:`OP_CATEGORIES` (medians per node)."""
    from featherface_deploy.harness.profile_ort import profile_onnx

    with tempfile.TemporaryDirectory(prefix="bench-int8-profile-") as workdir:
        profile = profile_onnx(path, SIZE, threads, warmup=3, runs=runs, workdir=workdir)
    totals: dict[str, float] = {}
    for node, ms in profile.node_ms.items():
        category = OP_CATEGORIES.get(profile.node_op[node], "other")
        totals[category] = totals.get(category, 0.0) + ms
    return {category: round(ms, 2) for category, ms in sorted(totals.items(), key=lambda item: -item[1])}


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


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
