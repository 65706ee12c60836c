"""Raw outputs of the same ONNX files on the emulated aarch64 device and on this x86 machine, against FP32.

``python benchmarks/arm_vs_x86_raw.py MODEL.onnx... [--images N] [--calib-dir DIR] [--out FILE]`` feeds the
first N calibration photos (preprocessed here, once) to every model with ONNX Runtime, one thread, on the device
that ``benchmarks/arm64_device.py up`` started and here, and prints per model and output how far the two
machines' outputs are apart, and how far each is from the FP32 model of the same name and size (a listed
model whose contract says ``fp32``). It is what tells kernel rounding from accumulator saturation: x86 CPUs
without VNNI pair-sum 8-bit products in 16 bits (``VPMADDUBSW``), which can saturate; ARM's dot-product
kernels accumulate in 32 bits; with 7-bit weights (``--reduce-range``) neither can overflow.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import arm64_device
from common import default_shared

ROLES = ("loc", "conf", "landmarks")
# Run on both machines: numpy and onnxruntime only (what the device's venv has).
RUNNER = '''
import sys, numpy as np, onnxruntime as ort
inputs = np.load(sys.argv[1])
out = {}
for index, path in enumerate(sys.argv[3:]):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    runs = [session.run(None, {name: inputs[i:i + 1]}) for i in range(len(inputs))]
    for k in range(3):
        out[f"{index}:{k}"] = np.concatenate([run[k] for run in runs])
np.savez(sys.argv[2], **out)
'''


def calibration_inputs(model: Path, calib_dir: Path, count: int) -> np.ndarray:
    """The first ``count`` calibration photos, preprocessed for ``model`` (its contract's size and mean)."""
    from featherface_deploy.calibration import CalibrationConfig, build_calibration_set
    from featherface_deploy.contract import read_sidecar

    calibration = build_calibration_set(calib_dir, read_sidecar(model), CalibrationConfig(num_images=count))
    return calibration.inputs[:count]


def run_on_device(state: dict, scratch: Path, models: list[Path]) -> dict:
    """Copies the runner, inputs and models to the device, runs them there and returns the outputs."""
    ssh = ["-i", state["identity"], "-o", f"UserKnownHostsFile={state['known_hosts']}", "-o", "BatchMode=yes"]
    host, port = state["url"].removeprefix("ssh://").rsplit(":", 1)
    remote = "/tmp/featherface-arm-vs-x86-raw"
    subprocess.run(["ssh", *ssh, "-p", port, host, f"rm -rf {remote} && mkdir -p {remote}"], check=True)
    files = [scratch / "runner.py", scratch / "inputs.npy", *models]
    subprocess.run(["scp", "-q", *ssh, "-P", port, *map(str, files), f"{host}:{remote}/"], check=True)
    names = " ".join(model.name for model in models)
    subprocess.run(["ssh", *ssh, "-p", port, host,
                    f"cd {remote} && {state['python']} runner.py inputs.npy arm.npz {names}"], check=True)
    subprocess.run(["scp", "-q", *ssh, "-P", port, f"{host}:{remote}/arm.npz", str(scratch)], check=True)
    return dict(np.load(scratch / "arm.npz"))


def compare(models: list[Path], arm: dict, x86: dict) -> list[dict]:
    """Per model and role: |ARM − x86| (max, mean) and the mean and max |· − FP32| of each machine."""
    from featherface_deploy.contract import read_sidecar

    contracts = [read_sidecar(model) for model in models]
    fp32 = {(c.model_name, tuple(c.input_size or ())): i for i, c in enumerate(contracts) if c.precision == "fp32"}
    rows = []
    for index, (model, contract) in enumerate(zip(models, contracts)):
        if contract.precision == "fp32":
            continue
        reference = fp32.get((contract.model_name, tuple(contract.input_size or ())))
        for k, role in enumerate(ROLES):
            a, x = arm[f"{index}:{k}"], x86[f"{index}:{k}"]
            row = {"model": model.name, "output": role, "arm_x86_max": float(np.abs(a - x).max()),
                   "arm_x86_mean": float(np.abs(a - x).mean())}
            if reference is not None:
                ref = x86[f"{reference}:{k}"]
                row.update(arm_fp32_mean=float(np.abs(a - ref).mean()), x86_fp32_mean=float(np.abs(x - ref).mean()),
                           arm_fp32_max=float(np.abs(a - ref).max()), x86_fp32_max=float(np.abs(x - ref).max()))
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    """Markdown of :func:`compare`'s rows."""
    lines = ["| model | output | max \\|ARM − x86\\| | mean \\|ARM − x86\\| | mean \\|ARM − FP32\\| | "
             "mean \\|x86 − FP32\\| | max \\|ARM − FP32\\| | max \\|x86 − FP32\\| |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        tail = [f"{row[key]:.5f}" if key in row else "—" for key in
                ("arm_fp32_mean", "x86_fp32_mean", "arm_fp32_max", "x86_fp32_max")]
        lines.append(f"| {row['model']} | {row['output']} | {row['arm_x86_max']:.5f} | {row['arm_x86_mean']:.7f} | "
                     + " | ".join(tail) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs the comparison and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("models", nargs="+", type=Path, help=".onnx files of one input size")
    parser.add_argument("--images", type=int, default=6, help="calibration photos fed to every model")
    parser.add_argument("--calib-dir", type=Path, default=default_shared() / "data" / "calibration")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--device-dir", type=Path, default=arm64_device.default_dir())
    args = parser.parse_args(argv)
    try:
        state = arm64_device.running_state(args.device_dir)
    except arm64_device.DeviceError as error:
        print(error, file=sys.stderr)
        return 2
    if any(model.suffix != ".onnx" for model in args.models):
        print("only .onnx files: the runner uses onnxruntime on both machines", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="arm-vs-x86-raw-") as folder:
        scratch = Path(folder)
        (scratch / "runner.py").write_text(RUNNER)
        np.save(scratch / "inputs.npy", calibration_inputs(args.models[0], args.calib_dir, args.images))
        arm = run_on_device(state, scratch, args.models)
        subprocess.run([sys.executable, str(scratch / "runner.py"), str(scratch / "inputs.npy"),
                        str(scratch / "x86.npz"), *map(str, args.models)], check=True)
        rows = compare(args.models, arm, dict(np.load(scratch / "x86.npz")))
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps({"images": args.images, "cpu": state.get("cpu"), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
