"""A fleet of devices (``devices.toml``): the same artifacts timed on every device, in parallel across devices and
one after another on each (two runs on one board would share its cores and skew both).

``devices.toml``::

    [[device]]
    name = "orin"                        # the report's device column
    remote = "ssh://ubuntu@orin.local"   # or "adb:SERIAL"
    identity = "~/.ssh/id_ed25519"       # optional, and so are the rest
    python = "/usr/bin/python3"
    known_hosts = "~/.ssh/known_hosts"
    accept_new_host_key = false
    timeout = 600
    formats = ["onnx", "onnx-int8"]      # a subset of the artifacts (default: every one the device can run)

    [[device]]
    name = "pixel-8"
    remote = "adb:R58M123"
    benchmark_binary = "/data/local/tmp/benchmark_model"
    use_gpu = true

Every result obtained is kept: a device that fails (or drops) gives error rows for what it did not run.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from featherface_deploy.errors import DeviceError, FeatherFaceError
from featherface_deploy.remote.runs import BenchmarkSettings
from featherface_deploy.remote.targets import RemoteOptions, open_device

_OPTION_KEYS = {"identity": "identity", "python": "python", "known_hosts": "known_hosts",
                "accept_new_host_key": "accept_new_host_key", "timeout": "timeout_s",
                "benchmark_binary": "benchmark_binary", "use_xnnpack": "use_xnnpack", "use_gpu": "use_gpu",
                "use_nnapi": "use_nnapi"}
_SUFFIXES = {"ssh": (".onnx", ".tflite"), "adb": (".tflite",)}


@dataclass(frozen=True)
class FleetDevice:
    """One ``[[device]]`` of ``devices.toml``.

    Attributes:
        name: The report's device column.
        remote: ``ssh://…`` or ``adb[:SERIAL]``.
        options: How to reach it.
        formats: The artifacts to run there (empty: every one its runner can run).
    """

    name: str
    remote: str
    options: RemoteOptions = RemoteOptions()
    formats: tuple[str, ...] = field(default_factory=tuple)


def read_devices(path: str | Path) -> list[FleetDevice]:
    """Reads ``devices.toml``.

    Raises:
        DeviceError: The file is unreadable, has no ``[[device]]``, or an entry lacks ``name``/``remote`` or has an
            unknown key.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise DeviceError("reading devices.toml needs Python >= 3.11 or `pip install tomli`") from None
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DeviceError(f"{path}: cannot read the device list ({error})") from error
    entries = document.get("device")
    if not isinstance(entries, list) or not entries:
        raise DeviceError(f"{path}: no devices; add [[device]] tables with name and remote")
    devices = []
    for index, entry in enumerate(entries, 1):
        unknown = set(entry) - set(_OPTION_KEYS) - {"name", "remote", "formats"}
        if unknown or "name" not in entry or "remote" not in entry:
            raise DeviceError(f"{path}: device {index} needs name and remote"
                              + (f"; unknown keys: {', '.join(sorted(unknown))}" if unknown else ""))
        options = {_OPTION_KEYS[key]: _expand(key, value) for key, value in entry.items() if key in _OPTION_KEYS}
        devices.append(FleetDevice(str(entry["name"]), str(entry["remote"]), RemoteOptions(**options),
                                   tuple(entry.get("formats", ()))))
    names = [device.name for device in devices]
    if len(set(names)) != len(names):
        raise DeviceError(f"{path}: device names must differ ({', '.join(names)})")
    return devices


def run_fleet(artifacts: dict[str, Path], devices: list[FleetDevice],
              settings: BenchmarkSettings) -> tuple[list[dict], list[str]]:
    """Times every artifact on every device: devices in parallel, artifacts one after another on each.

    Args:
        artifacts: Artifact name (e.g. ``onnx-int8``) → model file.
        devices: The fleet.
        settings: Benchmark settings for every run.

    Returns:
        One row per (device, artifact, threads, batch), with ``device`` and ``artifact`` (failures as error rows),
        and the runners' notes (delegate fallbacks), each naming its device and artifact.
    """
    with ThreadPoolExecutor(max_workers=max(1, len(devices))) as pool:
        results = list(pool.map(lambda device: _run_device(device, artifacts, settings), devices))
    return [row for rows, _ in results for row in rows], [note for _, notes in results for note in notes]


def _run_device(device: FleetDevice, artifacts: dict[str, Path], settings: BenchmarkSettings):
    rows, notes = [], []
    try:
        opened = open_device(device.remote, device.options)
    except FeatherFaceError as error:
        return [_error_row(device, name, str(error)) for name in device.formats or artifacts], notes
    for name in device.formats or tuple(artifacts):
        if name not in artifacts:
            rows.append(_error_row(device, name, f"not among the artifacts ({', '.join(artifacts)})"))
            continue
        if artifacts[name].suffix not in _SUFFIXES[opened.runner]:
            continue  # e.g. ONNX on an adb device: its runner cannot run it, so it is not asked to
        try:
            report = opened.benchmark(artifacts[name], settings)
        except FeatherFaceError as error:
            rows.append(_error_row(device, name, str(error)))
            continue
        rows.extend({"device": device.name, "artifact": name, **row} for row in report.rows)
        notes.extend(f"{device.name} {name}: {note}" for note in report.notes)
    return rows, notes


def _error_row(device: FleetDevice, artifact: str, message: str) -> dict:
    return {"device": device.name, "artifact": artifact, "error": message, "skipped": f"failed: {message}"}


def _expand(key: str, value):
    return str(Path(value).expanduser()) if key in ("identity", "known_hosts") else value
