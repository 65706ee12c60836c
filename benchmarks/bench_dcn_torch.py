"""PyTorch CPU cost of the deformable convolutions.

Times FeatherFace V1 at 640×640 with its eager DCN lowering (``bags``, the
default) and with the ``grid_sample`` lowering, against the same model with
every DCNv2 block replaced by a plain 3×3 convolution (same weights, no offsets
or masks), the three interleaved in one run. Target: DCN model ≤ 1.4× the
plain model.

    python benchmarks/bench_dcn_torch.py [--threads 2] [--iters 30] [--clock wall|cpu]

``--clock cpu`` times CPU seconds of the process (``time.process_time``)
instead of wall time: on a host where other jobs take the cores, a model made
of many small multi-threaded ops otherwise pays for every time one of its
threads waits to be scheduled.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

from common import default_shared, median_ms, time_interleaved, write_result
from featherface_deploy.models import load_model
from featherface_deploy.models.deform_conv import ModulatedDeformConv2d, set_dcn_lowering

TARGET_RATIO = 1.4


def with_plain_convolutions(model: nn.Module) -> nn.Module:
    """Returns a copy whose DCNv2 blocks are plain 3×3 convs with the same kernels."""
    plain = copy.deepcopy(model)
    for module in list(plain.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, ModulatedDeformConv2d):
                setattr(module, name, child.regular_conv)
    return plain.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(default_shared()))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    dcn = load_model(f"{args.shared}/weights/featherface-v1.pth").model
    grid_sample = copy.deepcopy(dcn)
    set_dcn_lowering(grid_sample, "grid_sample")
    models = {"bags": dcn, "grid_sample": grid_sample, "plain": with_plain_convolutions(dcn)}
    x = torch.randn(1, 3, args.size, args.size)

    def run(model):
        with torch.inference_mode():
            model(x)

    samples = time_interleaved({name: (lambda m=model: run(m)) for name, model in models.items()}, args.iters,
                               clock=time.process_time if args.clock == "cpu" else time.perf_counter)
    ms = {name: median_ms(times) for name, times in samples.items()}
    ratio = {name: ms[name] / ms["plain"] for name in ("bags", "grid_sample")}
    print(f"| model (V1, {args.size}², {args.threads} threads, {args.clock} ms, median of {args.iters}) | ms | × plain |")
    print("|---|---:|---:|")
    print(f"| DCNv2, eager `bags` lowering (default) | {ms['bags']:.1f} | {ratio['bags']:.2f} |")
    print(f"| DCNv2, eager `grid_sample` lowering | {ms['grid_sample']:.1f} | {ratio['grid_sample']:.2f} |")
    print(f"| plain 3×3 conv in place of DCN | {ms['plain']:.1f} | 1.00 |")
    print(f"target: DCN ≤ {TARGET_RATIO}× plain: {'met' if ratio['bags'] <= TARGET_RATIO else 'NOT met'}")
    name = "dcn_torch" if args.clock == "wall" else "dcn_torch_cpu"
    write_result(name, {"threads": args.threads, "iters": args.iters, "size": args.size, "clock": args.clock,
                               "dcn_ms": ms["bags"], "grid_sample_ms": ms["grid_sample"], "plain_ms": ms["plain"],
                               "ratio": ratio["bags"], "grid_sample_ratio": ratio["grid_sample"],
                               "target_ratio": TARGET_RATIO})

if __name__ == "__main__":
    main()
