"""WIDER FACE AP of the same model files on the emulated aarch64 device and on this x86 machine, side by side.

``python benchmarks/arm_vs_x86_ap.py MODEL... --limit N [--out DIR] [--device-dir DIR]`` runs, for each
model, ``featherface-deploy evaluate --remote`` on the device that ``benchmarks/arm64_device.py up`` started
(ARM kernels under QEMU) and the same ``evaluate`` locally, on the same first N images of the shared subset,
and prints a Markdown table of Easy / Medium / Hard AP; where the FP32 file of the same model and size is
listed too, a second table gives each INT8/FP16 file's AP minus FP32's (x86) on ARM and on x86. Each run's
JSON is kept as ``OUT/NAME.arm.json`` and ``OUT/NAME.x86.json``; a run whose JSON is already there is not repeated. Emulated seconds are not device
latency, so the table has no timing column.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import arm64_device
from common import default_shared, evaluate_json

SETTINGS = ("easy", "medium", "hard")


def evaluate(model: Path, widerface: Path, limit: int, remote: list[str], out: Path) -> dict:
    """The ``evaluate --json`` result of ``model`` on the device (``remote``) or here (kept in ``out``)."""
    return evaluate_json(model, widerface, limit, out, "on the device" if remote else "here", suffix=remote)


def table(rows: list[tuple[str, dict, dict]], cpu: str) -> str:
    """Markdown: one row per model, AP on ARM (emulated ``cpu``) and on x86, and ARM − x86."""
    header = ("| model | images | " + " | ".join(f"{name.title()} ARM | {name.title()} x86 | Δ" for name in SETTINGS)
              + " |")
    lines = [header, "|" + "---|" * (2 + 3 * len(SETTINGS))]
    for name, arm, x86 in rows:
        cells = [f"{arm[s]:.2f} | {x86[s]:.2f} | {arm[s] - x86[s]:+.2f}" for s in SETTINGS]
        lines.append(f"| {name} | {arm['images']} | " + " | ".join(cells) + " |")
    lines.append(f"_ARM: QEMU user-mode emulation of {cpu} (emulated device; no timings reported)._")
    return "\n".join(lines)


def budget_table(rows: list[tuple[str, dict, dict]], models: list[Path]) -> str:
    """Markdown: each reduced-precision model's AP minus its FP32 model's x86 AP (same images), on ARM and on x86.

    A model's FP32 reference is the listed FP32 file whose contract names the same model and input size.
    """
    from featherface_deploy.contract import read_sidecar

    contracts = {model.name: read_sidecar(model) for model in models}
    fp32 = {(c.model_name, tuple(c.input_size or ())): name for name, c in contracts.items() if c.precision == "fp32"}
    x86 = {name: result for name, _, result in rows}
    lines = ["| model | FP32 reference | " + " | ".join(f"{s.title()} ARM | {s.title()} x86" for s in SETTINGS) + " |",
             "|" + "---|" * (2 + 2 * len(SETTINGS))]
    for name, arm, here in rows:
        contract = contracts[name]
        reference = fp32.get((contract.model_name, tuple(contract.input_size or ())))
        if contract.precision == "fp32" or reference is None:
            continue
        base = x86[reference]
        cells = [f"{arm[s] - base[s]:+.2f} | {here[s] - base[s]:+.2f}" for s in SETTINGS]
        lines.append(f"| {name} | {reference} | " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def main(argv: list[str] | None = None) -> int:
    """Runs the comparison and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--limit", type=int, required=True, help="evaluate the first N images (emulation is slow)")
    parser.add_argument("--widerface", type=Path,
                        default=default_shared() / "data" / "widerface-val-416")
    parser.add_argument("--out", type=Path, default=Path("arm-vs-x86"), help="folder of the runs' JSON")
    parser.add_argument("--device-dir", type=Path, default=arm64_device.default_dir())
    args = parser.parse_args(argv)
    try:
        state = arm64_device.running_state(args.device_dir)
    except arm64_device.DeviceError as error:
        print(error, file=sys.stderr)
        return 2
    remote = ["--remote", state["url"], "--identity", state["identity"], "--known-hosts", state["known_hosts"],
              "--python", state["python"], "--remote-timeout", "7200"]
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in args.models:
        arm = evaluate(model, args.widerface, args.limit, remote, args.out / f"{model.name}.arm.json")
        x86 = evaluate(model, args.widerface, args.limit, [], args.out / f"{model.name}.x86.json")
        rows.append((model.name, arm, x86))
    print(table(rows, state.get("cpu", "?")))
    budget = budget_table(rows, args.models)
    if budget:
        print("\nAP minus the FP32 model's AP on x86, same images (the 1-point budget):\n")
        print(budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
