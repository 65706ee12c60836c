"""AP of the same INT8 files on this host's kernels and on the kernels chosen for another x86 CPU model (QEMU).

ONNX Runtime and XNNPACK pick their integer kernels from the CPU's CPUID. On an AVX2 CPU without VNNI, ONNX
Runtime's u8×s8 kernels add pairs of products in 16 bits (``vpmaddubsw``), which can saturate; with VNNI they
accumulate in 32 bits. ``qemu-x86_64-static -cpu MODEL`` (Debian package ``qemu-user-static``) runs this host's
own Python with MODEL's CPUID (``Haswell``: AVX2, no AVX-512, no VNNI), so ``featherface-deploy evaluate`` under
it runs the kernels such a CPU gets. Seconds under emulation mean nothing: no timing is taken. numpy's own AVX
loops are switched off under emulation (``NPY_DISABLE_CPU_FEATURES``): one of them crashed QEMU 7.2's TCG in the
NMS's IoU matrix (a segmentation fault of the emulator, not of the model); numpy's results do not depend on them,
and ONNX Runtime and XNNPACK still read the emulated CPUID.

``python benchmarks/int8_ap_x86_cpu.py MODEL... --limit N [--cpu Haswell] [--out DIR]`` evaluates each file
here and under QEMU on the first N images of ``<shared>/data/widerface-val-416`` and writes
``benchmarks/results/int8_ap_x86-<cpu>.json`` (with the CPUID flags read under QEMU) and a Markdown table. Each
evaluation's JSON is kept in ``--out`` and reused when it is there.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import default_shared, evaluate_json, print_table, write_result  # noqa: E402
from docs_tools.results_tables import int8_ap_x86_cpu  # noqa: E402

LEVELS = ("easy", "medium", "hard")
NUMPY_SIMD_OFF = {"NPY_DISABLE_CPU_FEATURES": "AVX2 FMA3 F16C AVX"}
CPUID_SCRIPT = ("from numpy._core._multiarray_umath import __cpu_features__ as f; "
                "print(' '.join(sorted(k for k, v in f.items() if v)))")


def evaluate(model: Path, widerface: Path, limit: int, emulate: list[str], out: Path) -> dict:
    """``featherface-deploy evaluate --json`` of ``model``, here or under ``emulate`` (kept in ``out``)."""
    return evaluate_json(model, widerface, limit, out, "under QEMU" if emulate else "here", prefix=emulate,
                         env=NUMPY_SIMD_OFF if emulate else None)


def ap_of(result: dict) -> dict[str, float]:
    """Easy/Medium/Hard AP (percent) of an ``evaluate --json`` result."""
    return {level: round(result[level], 2) for level in LEVELS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--limit", type=int, default=30, help="first N evaluation images (emulation is slow)")
    parser.add_argument("--cpu", default="Haswell", help="QEMU x86-64 CPU model")
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--out", type=Path, default=Path("int8-ap-x86-cpu"), help="per-run JSON files")
    args = parser.parse_args()
    missing = [str(model) for model in args.models if not model.is_file()]
    if missing:
        sys.exit(f"error: not a file: {', '.join(missing)}")
    emulate = ["qemu-x86_64-static", "-cpu", args.cpu]
    cpuid = subprocess.run([*emulate, sys.executable, "-c", CPUID_SCRIPT], capture_output=True, text=True,
                           check=True).stdout.split()
    args.out.mkdir(parents=True, exist_ok=True)
    widerface = args.shared / "data" / "widerface-val-416"
    rows = []
    for model in args.models:
        here = evaluate(model, widerface, args.limit, [], args.out / f"{model.name}.host.json")
        there = evaluate(model, widerface, args.limit, emulate, args.out / f"{model.name}.{args.cpu}.json")
        rows.append({"file": model.name, "host": ap_of(here), "emulated": ap_of(there)})
    payload = {"emulated_cpu": {"qemu_model": args.cpu, "cpuid": cpuid,
                                "isa_flags": [flag for name, flag in (("AVX2", "avx2"), ("AVX512F", "avx512f"),
                                                                      ("AVX512_CLX", "avx512_vnni")) if name in cpuid]},
               "images": args.limit, "rows": rows}
    path = write_result(f"int8_ap_x86-{args.cpu.lower()}", payload)
    print_table(int8_ap_x86_cpu(payload))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
