"""The adb runner: a ``.tflite`` pushed to an Android device and timed there by TFLite's ``benchmark_model``.

No package registry ships ``benchmark_model``: the user builds or downloads it and passes its path with
``--benchmark-binary`` (a host file is pushed; any other path is taken as one on the device). The model is pushed
to ``/data/local/tmp/featherface-deploy/<sha256 prefix>.tflite`` only when the device lacks it. One run per thread
count; its output is parsed by :mod:`.benchmark_model_output` into the same rows as the ssh runner's, and every
delegate fallback the tool reports becomes a note of the report.

This path times the interpreter only (random inputs, no preprocessing or decode): ``benchmark_model`` has no hook
for them. Detection and AP on Android need an app; they are not measured here.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from featherface_deploy.errors import ConnectionLostError, DeviceError
from featherface_deploy.remote.benchmark_model_output import parse_benchmark_model_output
from featherface_deploy.remote.runs import BenchmarkSettings, DeviceReport

DEVICE_FOLDER = "/data/local/tmp/featherface-deploy"
SMALL_STEP_TIMEOUT_S = 60.0
_LOST = ("device offline", "no devices/emulators found", "device not found", "error: closed")
_FACT_PROPERTIES = {"model": "ro.product.model", "manufacturer": "ro.product.manufacturer",
                    "android": "ro.build.version.release", "sdk": "ro.build.version.sdk",
                    "soc": "ro.soc.model", "board": "ro.board.platform", "abi": "ro.product.cpu.abi"}


@dataclass(frozen=True)
class BenchmarkModelOptions:
    """``benchmark_model`` flags.

    Attributes:
        binary: ``benchmark_model`` on the host (pushed) or on the device.
        use_xnnpack: ``--use_xnnpack=true|false``; ``None`` leaves the tool's default.
        use_gpu: ``--use_gpu=true``.
        use_nnapi: ``--use_nnapi=true``.
    """

    binary: str
    use_xnnpack: bool | None = None
    use_gpu: bool = False
    use_nnapi: bool = False


def benchmark_model_command(binary: str, model: str, threads: int, warmup: int, iters: int,
                            options: BenchmarkModelOptions) -> list[str]:
    """The ``benchmark_model`` command line for one thread count (paths on the device)."""
    command = [binary, f"--graph={model}", f"--num_threads={threads}", f"--warmup_runs={warmup}",
               f"--num_runs={iters}"]
    if options.use_xnnpack is not None:
        command.append(f"--use_xnnpack={'true' if options.use_xnnpack else 'false'}")
    if options.use_gpu:
        command.append("--use_gpu=true")
    if options.use_nnapi:
        command.append("--use_nnapi=true")
    return command


def attached_devices(listing: str) -> dict[str, str]:
    """Serial → state (``device``, ``unauthorized``, ``offline``…) from ``adb devices`` output."""
    devices = {}
    for line in listing.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and not line.startswith("*"):
            devices[parts[0]] = parts[1]
    return devices


class AdbDevice:
    """An Android device reached with ``adb`` (``--remote adb`` or ``adb:SERIAL``).

    Args:
        serial: The device's serial (``None``: the only one attached).
        options: ``benchmark_model`` path and flags.
        timeout_s: Limit of each push or run.
        adb: The ``adb`` executable.

    Raises:
        DeviceError: ``adb`` is not installed.
    """

    runner = "adb"

    def __init__(self, serial: str | None, options: BenchmarkModelOptions, timeout_s: float = 600.0,
                 adb: str = "adb") -> None:
        if shutil.which(adb) is None:
            raise DeviceError("`adb` not found: install Android's platform tools (Debian: apt-get install adb)")
        self.serial = serial
        self.options = options
        self.timeout_s = timeout_s
        self.adb = adb

    @property
    def name(self) -> str:
        """The device as messages name it."""
        return f"adb:{self.serial}" if self.serial else "adb"

    def check_attached(self) -> str:
        """The serial to use, after checking that exactly that device is attached and authorised.

        Raises:
            DeviceError: No device, several without a serial, the serial absent, or not authorised.
        """
        devices = attached_devices(self._adb("list devices", ["devices"], SMALL_STEP_TIMEOUT_S, serial=False))
        if not devices:
            raise DeviceError(f"{self.name}: no Android device attached (`adb devices` lists none); connect one "
                              "with USB debugging on, or `adb connect HOST:PORT`")
        if self.serial is None and len(devices) > 1:
            raise DeviceError(f"{self.name}: {len(devices)} devices attached ({', '.join(devices)}); choose one "
                              "with --remote adb:SERIAL")
        serial = self.serial or next(iter(devices))
        if serial not in devices:
            raise DeviceError(f"{self.name}: device {serial} is not attached (attached: {', '.join(devices)})")
        if devices[serial] != "device":
            raise DeviceError(f"{self.name}: device {serial} is {devices[serial]}; unlock it and accept the USB "
                              "debugging prompt" if devices[serial] == "unauthorized" else
                              f"{self.name}: device {serial} is {devices[serial]}")
        self.serial = serial
        return serial

    def benchmark(self, model: str | Path, settings: BenchmarkSettings, images=None) -> DeviceReport:
        """Times a ``.tflite`` with ``benchmark_model`` at each thread count.

        Args:
            model: The ``.tflite`` file.
            settings: Thread counts, warm-up and timed runs (batch and image size: the model's own).
            images: Not used: ``benchmark_model`` feeds random inputs (refused when given).

        Raises:
            DeviceError: Not a ``.tflite``, images given, no device, or a push failed.
        """
        model = Path(model)
        if model.suffix != ".tflite":
            raise DeviceError(f"{self.name}: benchmark_model runs .tflite files, not {model.name}")
        if images:
            raise DeviceError(f"{self.name}: benchmark_model feeds random inputs; --images does not apply to adb")
        self.check_attached()
        report = DeviceReport(self.name, self.runner, facts=self._facts())
        binary = self._binary_on_device()
        remote_model = self._push_once(model)
        for threads in settings.threads:
            for batch in settings.batches:
                row = {"threads": threads, "batch": batch}
                if batch != 1:
                    report.add_error(row, "benchmark_model runs the model's own batch size only")
                    continue
                step = f"benchmark_model threads {threads}"
                command = benchmark_model_command(binary, remote_model, threads, settings.warmup, settings.iters,
                                                  self.options)
                try:
                    parsed = self._run_benchmark_model(step, command)
                except ConnectionLostError as error:
                    report.add_error(row, str(error))
                    break
                except DeviceError as error:
                    report.add_error(row, str(error))
                    continue
                report.rows.append({**row, **parsed.to_row(), "file_mb": round(model.stat().st_size / 1e6, 3)})
                report.notes.extend(f"threads {threads}: delegate fallback: {line}" for line in parsed.fallbacks)
        return report

    def _run_benchmark_model(self, step: str, command: list[str]):
        """Runs the tool and parses its output; a failed run's error quotes what the tool printed."""
        status, output = self._adb(step, ["shell", shlex.join(command)], self.timeout_s, check=False)
        try:
            return parse_benchmark_model_output(output)
        except DeviceError as error:
            raise DeviceError(f"{self.name}: {step} (exit status {status}): {error}") from None

    def _binary_on_device(self) -> str:
        local = Path(self.options.binary)
        if not local.is_file():
            return self.options.binary
        remote = f"{DEVICE_FOLDER}/benchmark_model"
        self._adb("create the device folder", ["shell", f"mkdir -p {DEVICE_FOLDER}"], SMALL_STEP_TIMEOUT_S)
        self._adb("push benchmark_model", ["push", str(local), remote], self.timeout_s)
        self._adb("make benchmark_model executable", ["shell", f"chmod 755 {remote}"], SMALL_STEP_TIMEOUT_S)
        return remote

    def _push_once(self, model: Path) -> str:
        digest = hashlib.sha256(model.read_bytes()).hexdigest()[:16]
        remote = f"{DEVICE_FOLDER}/{digest}.tflite"
        present = self._adb("check the model cache", ["shell", f"test -f {remote} && echo present || echo absent"],
                            SMALL_STEP_TIMEOUT_S)
        if "present" not in present:
            self._adb("create the device folder", ["shell", f"mkdir -p {DEVICE_FOLDER}"], SMALL_STEP_TIMEOUT_S)
            self._adb(f"push {model.name}", ["push", str(model), f"{remote}.partial"], self.timeout_s)
            self._adb("finish the model push", ["shell", f"mv {remote}.partial {remote}"], SMALL_STEP_TIMEOUT_S)
        return remote

    def _facts(self) -> dict:
        facts = {}
        for key, prop in _FACT_PROPERTIES.items():
            value = self._adb(f"read {prop}", ["shell", f"getprop {prop}"], SMALL_STEP_TIMEOUT_S).strip()
            if value:
                facts[key] = value
        facts["cores"] = self._adb("count cores", ["shell", "nproc"], SMALL_STEP_TIMEOUT_S).strip() or None
        governor = self._adb("read the governor", ["shell", "cat /sys/devices/system/cpu/cpu0/cpufreq/"
                                                   "scaling_governor 2>/dev/null || true"], SMALL_STEP_TIMEOUT_S)
        if governor.strip():
            facts["governor"] = governor.strip()
        return {key: value for key, value in facts.items() if value}

    def _adb(self, step: str, args: list[str], timeout_s: float, serial: bool = True, check: bool = True):
        """Runs ``adb``; returns its stdout, or with ``check=False`` (exit status, stdout + stderr).

        Raises:
            ConnectionLostError: adb lost the device.
            DeviceError: adb failed (``check``) or ran past ``timeout_s``.
        """
        command = [self.adb] + (["-s", self.serial] if serial and self.serial else []) + args
        try:
            result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s,
                                    check=False)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{self.name}: {step}: no answer within {timeout_s:g} s (raise --remote-timeout)") from None
        stdout = result.stdout.decode("utf-8", "replace")
        stderr = result.stderr.decode("utf-8", "replace")
        if any(marker in stderr for marker in _LOST):
            raise ConnectionLostError(f"{self.name}: {step}: {stderr.strip().splitlines()[-1]}")
        if not check:
            return result.returncode, stdout + "\n" + stderr
        if result.returncode != 0:
            last = (stderr.strip() or stdout.strip() or "no message").splitlines()[-1]
            raise DeviceError(f"{self.name}: {step}: adb exit status {result.returncode} ({last})")
        return stdout
