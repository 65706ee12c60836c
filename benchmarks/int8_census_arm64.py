"""What ONNX Runtime and LiteRT's XNNPACK run in integer kernels on aarch64, beside this host: an op census, no times.

For each ONNX file, ONNX Runtime builds its optimized graph on the device (``optimized_model_filepath``,
the default optimization level users get) and on this host; the host weighs each with
:func:`~featherface_deploy.harness.int8_kernels.integer_mac_share` (the MACs whose weight feeds
``QLinearConv``/``QLinearMatMul``/…). For each TFLite file, LiteRT applies its default XNNPACK delegate on
the device and here; :func:`~featherface_deploy.harness.profile_litert.delegation` reads which ops each
partition owns, and the ops left outside XNNPACK are counted by type.

The device is ``benchmarks/arm64_device.py up``'s emulated aarch64 (QEMU user mode, Cortex-A76 by
default: ``asimddp``, no ``i8mm``), or any aarch64 Linux reachable over ssh with numpy, onnxruntime and
ai-edge-litert. Timings under emulation mean nothing, so none are taken. Which XNNPACK microkernels
(e.g. ``qs8-qc8w-gemm …neondot``) run is decided inside XNNPACK from the CPU's features and is not visible
through LiteRT's Python API: the census stops at the delegated ops and their tensor types.

Usage::

    python benchmarks/arm64_device.py up            # prints the ssh URL, identity and python
    python benchmarks/int8_census_arm64.py --remote ssh://root@127.0.0.1:PORT --identity KEY \\
        --python /opt/featherface/venv/bin/python /tmp/int8-speed/featherface-v1-int8.onnx …

Writes ``benchmarks/results/int8_census_arm64.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result  # noqa: E402

INPUT_SHAPE = (1, 3, 640, 640)
# Runs on the device: ORT's optimized graph of each .onnx, LiteRT's op details of each .tflite, the CPU features.
DEVICE_SCRIPT = r"""
import json, platform, sys
report = {"machine": platform.machine(), "features": "", "files": {}}
for line in open("/proc/cpuinfo"):
    if line.lower().startswith(("features", "flags")):
        report["features"] = line.split(":", 1)[1].split()
        break
for path in sys.argv[1:]:
    if path.endswith(".onnx"):
        import onnxruntime
        options = onnxruntime.SessionOptions()
        options.optimized_model_filepath = path + ".optimized.onnx"
        options.log_severity_level = 3
        onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        report["files"][path] = {"optimized": options.optimized_model_filepath}
    else:
        from ai_edge_litert.interpreter import Interpreter
        interpreter = Interpreter(model_path=path, num_threads=1)
        interpreter.allocate_tensors()
        details = [{"index": int(d["index"]), "op_name": d["op_name"], "inputs": [int(t) for t in d["inputs"]],
                    "outputs": [int(t) for t in d["outputs"]]} for d in interpreter._get_ops_details()]
        report["files"][path] = {"ops": details}
print(json.dumps(report))
"""


class _OpsDetails:
    """Stands in for an interpreter in :func:`delegation`: the op details a device sent back."""

    def __init__(self, details: list[dict]) -> None:
        self.details = details

    def _get_ops_details(self) -> list[dict]:
        return self.details


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help=".onnx and .tflite files")
    parser.add_argument("--remote", required=True, help="ssh://user@host:port of the aarch64 device")
    parser.add_argument("--identity", help="ssh private key")
    parser.add_argument("--python", default="python3", help="the device's Python (with onnxruntime, ai-edge-litert)")
    parser.add_argument("--cpu-name", default="QEMU-emulated Cortex-A76 (benchmarks/arm64_device.py)",
                        help="what the device is, for the results file")
    args = parser.parse_args()
    missing = [str(path) for path in args.files if not path.is_file()]
    if missing:
        sys.exit(f"error: not a file: {', '.join(missing)}")
    device = _Ssh(args.remote, args.identity)
    report = device.census(args.files, args.python)
    rows = []
    for path in args.files:
        remote = report["files"][f"/tmp/featherface-census/{path.name}"]
        rows.append({"file": path.name, **_pair(path, remote, device)})
    payload = {"device": {"name": args.cpu_name, "machine": report["machine"],
                          "features": report["features"],
                          "isa_flags": [f for f in ("asimddp", "i8mm", "sve", "bf16") if f in report["features"]]},
               "input_shape": list(INPUT_SHAPE), "rows": rows}
    path = write_result("int8_census_arm64", payload)
    print(markdown(payload))
    print(f"wrote {path}", file=sys.stderr)


def _pair(path: Path, remote: dict, device: "_Ssh") -> dict:
    """The census of one file on the device and on this host."""
    if path.suffix == ".onnx":
        import onnx

        with tempfile.TemporaryDirectory() as workdir:
            local_copy = Path(workdir) / "device-optimized.onnx"
            device.fetch(remote["optimized"], local_copy)
            on_device = _onnx_census(path, onnx.load(str(local_copy)))
        from featherface_deploy.harness.int8_kernels import ort_integer_share

        here = ort_integer_share(path, INPUT_SHAPE)
        return {"format": "onnx", "device": on_device,
                "host": {"integer_mac_fraction": round(here.fraction, 4), "integer_kernels": here.kernels}}
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    return {"format": "tflite", "device": _tflite_census(path, _OpsDetails(remote["ops"])),
            "host": _tflite_census(path, interpreter)}


def _onnx_census(path: Path, optimized) -> dict:
    import onnx

    from featherface_deploy.harness.int8_kernels import integer_mac_share

    share = integer_mac_share(onnx.load(str(path)), optimized, INPUT_SHAPE)
    return {"integer_mac_fraction": round(share.fraction, 4), "integer_kernels": share.kernels}


def _tflite_census(path: Path, interpreter) -> dict:
    from featherface_deploy.exporters.tflite_graph import integer_mac_fraction
    from featherface_deploy.harness.profile_litert import delegation

    ops, partitions = delegation(interpreter)
    outside = Counter(op["op"] for op in ops if op["partition"] is None)
    return {"partitions": partitions, "ops": len(ops), "outside_xnnpack": dict(sorted(outside.items())),
            "integer_mac_fraction": round(integer_mac_fraction(path.read_bytes()), 4)}


class _Ssh:
    """The OpenSSH client towards the device (``BatchMode``; the host key of a loopback device is not kept)."""

    def __init__(self, url: str, identity: str | None) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "ssh" or not parsed.hostname:
            sys.exit(f"error: --remote must be ssh://user@host[:port], not {url}")
        self.target = f"{parsed.username}@{parsed.hostname}" if parsed.username else parsed.hostname
        self.options = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                        "-o", "LogLevel=ERROR", *(["-i", identity] if identity else [])]
        self.port = str(parsed.port or 22)

    def census(self, files: list[Path], python: str) -> dict:
        """Copies the files, runs :data:`DEVICE_SCRIPT` on them, returns its report."""
        self._run(["ssh", *self.options, "-p", self.port, self.target, "mkdir -p /tmp/featherface-census"])
        self._run(["scp", *self.options, "-P", self.port, *map(str, files), f"{self.target}:/tmp/featherface-census/"])
        remote = " ".join(shlex.quote(f"/tmp/featherface-census/{path.name}") for path in files)
        command = f"{shlex.quote(python)} -c {shlex.quote(DEVICE_SCRIPT)} {remote}"
        return json.loads(self._run(["ssh", *self.options, "-p", self.port, self.target, command]).stdout)

    def fetch(self, remote: str, local: Path) -> None:
        """Copies one file back from the device."""
        self._run(["scp", *self.options, "-P", self.port, f"{self.target}:{remote}", str(local)])

    @staticmethod
    def _run(command: list[str]) -> subprocess.CompletedProcess:
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"error: {command[0]} failed (exit {result.returncode}): {result.stderr.strip()[-300:]}")
        return result


def markdown(payload: dict) -> str:
    """One line per file: integer share and kernels (ONNX) or partitions and ops outside XNNPACK (TFLite)."""
    device = payload["device"]
    lines = [f"INT8 op census — device: {device['name']} ({device['machine']}; "
             f"{', '.join(device['isa_flags']) or 'no asimddp/i8mm'}) vs this host", "",
             "| file | where | MACs in integer kernels | integer kernels / XNNPACK partitions | ops outside XNNPACK |",
             "|---|---|---|---|---|"]
    for row in payload["rows"]:
        for where in ("device", "host"):
            census = row[where]
            if row["format"] == "onnx":
                kernels = ", ".join(f"{k} {v}" for k, v in sorted(census["integer_kernels"].items())) or "none"
                lines.append(f"| {row['file']} | {where} | {100 * census['integer_mac_fraction']:.1f}% | {kernels} | — |")
            else:
                outside = ", ".join(f"{k} {v}" for k, v in census["outside_xnnpack"].items()) or "none"
                lines.append(f"| {row['file']} | {where} | {100 * census['integer_mac_fraction']:.1f}% | "
                             f"{census['partitions']} partitions, {census['ops']} ops | {outside} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
