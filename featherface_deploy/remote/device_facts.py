"""Facts about the machine a benchmark runs on: CPU, cores, OS, Python, runtimes, governor, temperatures.

Runs on the device (standard library only, Python ≥ 3.8). Every fact is read where the system exposes it
and left out where it does not; nothing here needs root. On a Jetson the ``nvpmodel`` power mode and the
``jetson_clocks`` state are read when those tools answer without a password.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

RUNTIME_PACKAGES = ("featherface-deploy", "numpy", "onnxruntime", "onnxruntime-gpu", "ai-edge-litert",
                    "tflite-runtime", "coremltools", "tensorrt", "pillow")
_TOOL_TIMEOUT_S = 5


def device_facts() -> dict:
    """Collects the facts of this machine (missing ones are omitted, never guessed).

    Returns:
        ``hostname``, ``os``, ``kernel``, ``machine``, ``cpu``, ``cores``, ``usable_cores``, ``memory_mb``,
        ``python``, ``versions`` and, where readable, ``model``, ``governor``, ``temperatures_c``,
        ``nvpmodel`` and ``jetson_clocks``.
    """
    facts = {
        "hostname": platform.node(),
        "os": _os_name(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_mb": _memory_mb(),
        "python": platform.python_version(),
        "versions": package_versions(),
    }
    optional = {
        "model": _read_text("/proc/device-tree/model"),
        "governor": _governors(),
        "temperatures_c": temperatures(),
        "nvpmodel": _tool_output(["nvpmodel", "-q"]),
        "jetson_clocks": _tool_output(["jetson_clocks", "--show"]),
    }
    facts.update({key: value for key, value in optional.items() if value})
    return facts


def package_versions(names: tuple = RUNTIME_PACKAGES) -> dict:
    """Installed versions of the runtime packages (those not installed are left out)."""
    from importlib import metadata

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def temperatures() -> dict:
    """Thermal-zone temperatures in °C by zone type (Linux sysfs), empty where unreadable."""
    readings = {}
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        kind, value = _read_text(zone / "type"), _read_text(zone / "temp")
        try:
            readings[kind or zone.name] = round(int(value) / 1000.0, 1)
        except (TypeError, ValueError):
            continue
    return readings


def _os_name() -> str:
    if platform.system() == "Darwin":
        return f"macOS {platform.mac_ver()[0]}"
    for line in (_read_text("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.platform()


def _cpu_model() -> str:
    text = _read_text("/proc/cpuinfo") or ""
    for field in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            if line.split(":", 1)[0].strip() == field:
                return line.split(":", 1)[1].strip()
    if platform.system() == "Darwin":
        brand = _tool_output(["sysctl", "-n", "machdep.cpu.brand_string"])
        if brand:
            return brand
    return platform.processor() or platform.machine()


def _memory_mb():
    for line in (_read_text("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024.0)
    return None


def _governors():
    values = {_read_text(path) for path in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_governor")}
    values.discard(None)
    return ",".join(sorted(values)) if values else None


def _read_text(path):
    try:
        return Path(path).read_text(errors="replace").strip().rstrip("\x00")
    except OSError:
        return None


def _tool_output(command: list):
    """A tool's stdout, or ``None`` when it is absent, fails, asks for a password or hangs."""
    if shutil.which(command[0]) is None:
        return None
    try:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, timeout=_TOOL_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = result.stdout.decode("utf-8", "replace").strip()
    return text if result.returncode == 0 and text else None
