"""What ONNX Runtime and LiteRT's XNNPACK run in integer kernels on another CPU, beside this host: an op census, no times.

For each ONNX file, ONNX Runtime builds its optimized graph on the device (``optimized_model_filepath``,
the default optimization level users get) and on this host; the host weighs each with
:func:`~featherface_deploy.harness.int8_kernels.integer_mac_share` (the MACs whose weight feeds
``QLinearConv``/``QLinearMatMul``/…). For each TFLite file, LiteRT applies its default XNNPACK delegate on
the device and here; :func:`~featherface_deploy.harness.profile_litert.delegation` reads which ops each
partition owns, and the ops left outside XNNPACK are counted by type.

The other CPU is either

- ``--remote ssh://…``: ``benchmarks/arm64_device.py up``'s emulated aarch64 (QEMU user mode, Cortex-A76
  by default: ``asimddp``, no ``i8mm``), or any Linux device reachable over ssh with numpy, onnxruntime and
  ai-edge-litert; or
- ``--qemu-cpu MODEL``: this host's own Python run by ``qemu-x86_64-static -cpu MODEL`` (Debian package
  ``qemu-user-static``): ONNX Runtime and XNNPACK read that CPU model's CPUID, e.g. ``Haswell`` (AVX2, no
  AVX-512, no VNNI), so the census shows what they choose on an AVX2-only CPU.

The CPU's features are read on it: numpy's CPUID detection (``__cpu_features__``) and ``/proc/cpuinfo``
(which QEMU's x86 user mode passes through from the host: the CPUID figures are the ones to trust there).
Timings under emulation mean nothing, so none are taken. Which XNNPACK microkernels (e.g. ``qs8-qc8w-gemm
…neondot``) run is decided inside XNNPACK and is not visible through LiteRT's Python API: the census stops at
the delegated ops and their tensor types.

Usage::

    python benchmarks/arm64_device.py up            # prints the ssh URL, identity and python
    python benchmarks/int8_census.py --remote ssh://root@127.0.0.1:PORT --identity KEY \\
        --python /opt/featherface/venv/bin/python /tmp/int8-speed/featherface-v1-int8.onnx …
    python benchmarks/int8_census.py --qemu-cpu Haswell /tmp/int8-speed/featherface-v1-int8.onnx …

Writes ``benchmarks/results/int8_census_arm64.json`` (``--remote``) or ``int8_census_x86-<model>.json``
(``--qemu-cpu``) and prints the docs' table of it.
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

from benchmarks.common import print_table, write_result  # noqa: E402
from docs_tools.results_tables import int8_census  # noqa: E402

INPUT_SHAPE = (1, 3, 640, 640)
REMOTE_DIR = "/tmp/featherface-census"
# Runs on the device: ORT's optimized graph of each .onnx, LiteRT's op details of each .tflite, the CPU features.
DEVICE_SCRIPT = r"""
import json, platform, sys
report = {"machine": platform.machine(), "features": [], "cpuid": [], "files": {}}
for line in open("/proc/cpuinfo"):
    if line.lower().startswith(("features", "flags")):
        report["features"] = line.split(":", 1)[1].split()
        break
try:
    from numpy._core._multiarray_umath import __cpu_features__
    report["cpuid"] = sorted(name for name, present in __cpu_features__.items() if present)
except ImportError:
    pass
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
    parser.add_argument("--remote", help="ssh://user@host:port of the device (e.g. the emulated aarch64)")
    parser.add_argument("--qemu-cpu", help="instead: run here under qemu-x86_64-static -cpu MODEL (e.g. Haswell)")
    parser.add_argument("--identity", help="ssh private key")
    parser.add_argument("--python", help="the device's Python, with numpy, onnxruntime and ai-edge-litert "
                        "(default: python3 over ssh, this Python under QEMU)")
    parser.add_argument("--cpu-name", default="QEMU-emulated Cortex-A76 (benchmarks/arm64_device.py)",
                        help="what the device is, for the results file")
    args = parser.parse_args()
    missing = [str(path) for path in args.files if not path.is_file()]
    if missing:
        sys.exit(f"error: not a file: {', '.join(missing)}")
    if (args.remote is None) == (args.qemu_cpu is None):
        sys.exit("error: give either --remote ssh://… or --qemu-cpu MODEL")
    if args.remote:
        device, name, result = _Ssh(args.remote, args.identity), args.cpu_name, "int8_census_arm64"
    else:
        device = _QemuX86(args.qemu_cpu)
        name, result = f"QEMU-emulated x86-64 CPU model {args.qemu_cpu}", f"int8_census_x86-{args.qemu_cpu.lower()}"
    report = device.census(args.files, args.python or ("python3" if args.remote else sys.executable))
    rows = [{"file": path.name, **_pair(path, report["files"][device.path_of(path)], device)} for path in args.files]
    payload = {"device": {"name": name, "machine": report["machine"], "features": report["features"],
                          "cpuid": report["cpuid"], "isa_flags": _isa_flags(report)},
               "input_shape": list(INPUT_SHAPE), "rows": rows}
    path = write_result(result, payload)
    print_table(int8_census(payload))
    print(f"wrote {path}", file=sys.stderr)


# numpy's CPUID feature names → the flags the results files record (x86).
_CPUID_FLAGS = {"AVX2": "avx2", "AVX512F": "avx512f", "AVX512_CLX": "avx512_vnni", "AVX512_SPR": "avx512_fp16"}


def _isa_flags(report: dict) -> list[str]:
    """The instruction-set flags of the device: CPUID's on x86 (QEMU passes the host's /proc/cpuinfo through)."""
    if report["machine"] in ("x86_64", "AMD64"):
        return [flag for name, flag in _CPUID_FLAGS.items() if name in report["cpuid"]]
    return [flag for flag in ("asimddp", "i8mm", "sve", "bf16") if flag in report["features"]]


def _pair(path: Path, remote: dict, device: "_Ssh | _QemuX86") -> dict:
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


class _QemuX86:
    """This host's Python under ``qemu-x86_64-static -cpu MODEL``: the files are read where they are."""

    def __init__(self, cpu: str) -> None:
        self.cpu = cpu

    def census(self, files: list[Path], python: str) -> dict:
        """Runs :data:`DEVICE_SCRIPT` on the files under emulation; returns its report."""
        command = ["qemu-x86_64-static", "-cpu", self.cpu, python, "-c", DEVICE_SCRIPT,
                   *(str(path.resolve()) for path in files)]
        return json.loads(_run(command).stdout)

    def path_of(self, path: Path) -> str:
        """Where the report names ``path``."""
        return str(path.resolve())

    @staticmethod
    def fetch(remote: str, local: Path) -> None:
        """The optimized graph is already on this machine."""
        Path(local).write_bytes(Path(remote).read_bytes())


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
        _run(["ssh", *self.options, "-p", self.port, self.target, f"mkdir -p {REMOTE_DIR}"])
        _run(["scp", *self.options, "-P", self.port, *map(str, files), f"{self.target}:{REMOTE_DIR}/"])
        remote = " ".join(shlex.quote(self.path_of(path)) for path in files)
        command = f"{shlex.quote(python)} -c {shlex.quote(DEVICE_SCRIPT)} {remote}"
        return json.loads(_run(["ssh", *self.options, "-p", self.port, self.target, command]).stdout)

    @staticmethod
    def path_of(path: Path) -> str:
        """Where a file is copied to on the device."""
        return f"{REMOTE_DIR}/{path.name}"

    def fetch(self, remote: str, local: Path) -> None:
        """Copies one file back from the device."""
        _run(["scp", *self.options, "-P", self.port, f"{self.target}:{remote}", str(local)])



def _run(command: list[str]) -> subprocess.CompletedProcess:
    """Runs a command; exits with its stderr's end when it fails."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: {command[0]} failed (exit {result.returncode}): {result.stderr.strip()[-300:]}")
    return result


if __name__ == "__main__":
    main()
