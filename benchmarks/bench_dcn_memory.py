"""Peak memory of PyTorch eager FeatherFace V1 on one large image, per DCN lowering.

Each variant runs alone in a fresh child process (peak RSS is a per-process
high-water mark), one after the other: the eager ``bags`` lowering (default,
bags built in bounded row chunks), the ``grid_sample`` lowering (the previous
eager default) and the same model with plain 3×3 convolutions in place of the
DCNs (what the rest of the network needs). The child reports its peak RSS
(``ru_maxrss``), the peak RSS of the loaded model before the inference, and
the inference time.

    python benchmarks/bench_dcn_memory.py [--size 4000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import default_shared, write_result

VARIANTS = ("bags", "grid_sample", "plain")


def child(shared: Path, variant: str, size: int, threads: int) -> dict:
    """Runs one inference at ``size``×``size`` in this process; returns its peak RSS figures."""
    import torch

    from bench_dcn_torch import with_plain_convolutions
    from featherface_deploy.models import load_model
    from featherface_deploy.models.deform_conv import set_dcn_lowering

    torch.set_num_threads(threads)
    model = load_model(shared / "weights" / "featherface-v1.pth").model
    if variant == "plain":
        model = with_plain_convolutions(model)
    else:
        set_dcn_lowering(model, variant)
    x = torch.randn(1, 3, size, size)
    loaded_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    with torch.inference_mode():
        model(x)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"variant": variant, "size": size, "peak_rss_mb": round(peak_mb), "before_inference_mb": round(loaded_mb),
            "seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--size", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.shared, args.child, args.size, args.threads)))
        return

    rows = []
    for variant in args.variants:
        command = [sys.executable, __file__, "--child", variant, "--size", str(args.size),
                   "--threads", str(args.threads), "--shared", str(args.shared)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"| V1 eager, {args.size}×{args.size}, {args.threads} threads | peak RSS MB | before inference MB | s |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['variant']} | {row['peak_rss_mb']} | {row['before_inference_mb']} | {row['seconds']} |")
    write_result(f"dcn_memory_{args.size}", {"threads": args.threads, "size": args.size, "rows": rows})


if __name__ == "__main__":
    main()
