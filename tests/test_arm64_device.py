"""The remote runner against the emulated aarch64 device of ``benchmarks/arm64_device.py``, when it is up.

The device is never started here (building it takes minutes and needs root): bring it up first with
``sudo python benchmarks/arm64_device.py up`` (``--dir`` or ``FEATHERFACE_ARM64_DEVICE_DIR`` for another folder).
Without it the remote test skips with the reason. The device is emulated: its timings are not device timings,
so only what it computes is checked. The fast tests check the script's clear refusals, without root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import arm64_device
from conftest import REPO_ROOT


@pytest.fixture(scope="module")
def device_state() -> dict:
    """The running device's connection facts, or a skip saying how to start it."""
    folder = Path(os.environ.get("FEATHERFACE_ARM64_DEVICE_DIR") or arm64_device.default_dir())
    state = arm64_device.read_state(folder)
    if not arm64_device.is_running(state):
        pytest.skip(f"the emulated aarch64 device is not up in {folder}: "
                    "run `sudo python benchmarks/arm64_device.py up` first")
    return state


def _cli(*args, timeout=900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "featherface_deploy.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_remote_benchmark_and_evaluate_run_on_the_emulated_aarch64_device(device_state, tiny_onnx, widerface_root,
                                                                          tmp_path):
    """The tiny model's benchmark and detections on the device; detections match this machine's."""
    remote = ["--remote", device_state["url"], "--identity", device_state["identity"],
              "--known-hosts", device_state["known_hosts"], "--python", device_state["python"]]
    report = tmp_path / "remote.json"
    timed = _cli("benchmark", tiny_onnx, "--imgsz", "64", "--warmup", "0", "--iters", "2", "--json", report, *remote)
    assert timed.returncode == 0, timed.stderr
    written = json.loads(report.read_text())
    facts = written["device"]["facts"]
    assert facts["machine"] == "aarch64"
    assert {"numpy", "onnxruntime"} <= set(facts["versions"])
    assert [(row["threads"], row["batch"], row["iterations"]) for row in written["rows"]] == [(1, 1, 2)]

    on_arm, on_host = tmp_path / "arm", tmp_path / "x86"
    remote_run = _cli("evaluate", "--model", tiny_onnx, "--widerface", widerface_root, "--limit", "2",
                      "--pred-dir", on_arm, *remote)
    local_run = _cli("evaluate", "--model", tiny_onnx, "--widerface", widerface_root, "--limit", "2",
                     "--pred-dir", on_host)
    assert remote_run.returncode == 0, remote_run.stderr
    assert local_run.returncode == 0, local_run.stderr
    assert "aarch64" in remote_run.stdout
    files = sorted(path.relative_to(on_host) for path in on_host.rglob("*.txt"))
    assert len(files) == 2 and sorted(path.relative_to(on_arm) for path in on_arm.rglob("*.txt")) == files
    for name in files:
        arm_rows, x86_rows = _prediction_rows(on_arm / name), _prediction_rows(on_host / name)
        assert arm_rows.shape == x86_rows.shape and len(x86_rows) > 0, name
        # FP32 on NEON vs AVX differs by rounding only: the same scores, and the same boxes in any order, but
        # for the odd near-tie that NMS resolves the other way on random weights (a neighbouring box, 8 px off).
        np.testing.assert_allclose(np.sort(arm_rows[:, 4]), np.sort(x86_rows[:, 4]), atol=1e-3, err_msg=str(name))
        nearest = np.abs(arm_rows[:, None, :] - x86_rows[None, :, :]).max(axis=2).min(axis=1)
        assert np.mean(nearest < 1e-2) >= 0.95, (name, nearest.max())


def _prediction_rows(path: Path) -> np.ndarray:
    """The ``x y w h score`` rows of one submission file (after its name and count lines)."""
    lines = path.read_text().splitlines()
    return np.array([[float(value) for value in line.split()] for line in lines[2:]], dtype=float).reshape(-1, 5)


def test_check_host_refuses_without_root(monkeypatch):
    monkeypatch.setattr(arm64_device.os, "geteuid", lambda: 1000)
    with pytest.raises(arm64_device.DeviceError, match="needs root"):
        arm64_device.check_host()


def test_check_host_names_the_missing_packages(monkeypatch):
    monkeypatch.setattr(arm64_device.os, "geteuid", lambda: 0)
    monkeypatch.setattr(arm64_device.shutil, "which", lambda tool: None if tool == "debootstrap" else "/bin/true")
    with pytest.raises(arm64_device.DeviceError, match="missing debootstrap: apt-get install debootstrap"):
        arm64_device.check_host()


def test_binfmt_without_qemu_user_static_says_what_to_install(monkeypatch, tmp_path):
    (tmp_path / "register").write_text("")
    monkeypatch.setattr(arm64_device, "BINFMT", tmp_path)
    monkeypatch.setattr(arm64_device, "BINFMT_CONF", tmp_path / "absent.conf")
    with pytest.raises(arm64_device.DeviceError, match="apt-get install qemu-user-static"):
        arm64_device.ensure_binfmt()


def test_disabled_binfmt_handler_is_reported_not_replaced(monkeypatch, tmp_path):
    (tmp_path / "register").write_text("")
    (tmp_path / "qemu-aarch64").write_text("disabled\ninterpreter /usr/bin/qemu-aarch64-static\n")
    monkeypatch.setattr(arm64_device, "BINFMT", tmp_path)
    with pytest.raises(arm64_device.DeviceError, match="registered but disabled"):
        arm64_device.ensure_binfmt()
    assert (tmp_path / "register").read_text() == ""


@pytest.mark.parametrize("cpu, part", [("cortex-a72", "0xd08"), ("cortex-a76", "0xd0b")])
def test_cpuinfo_describes_the_emulated_cpu_once_per_core(tmp_path, cpu, part):
    text = arm64_device.write_cpuinfo(tmp_path, cpu).read_text()
    entries = [block for block in text.split("\n\n") if block.startswith("processor")]
    assert len(entries) == (os.cpu_count() or 1)
    assert all(f"CPU part\t: {part}" in block and "CPU implementer\t: 0x41" in block for block in entries)
    assert ("asimddp" in text) == (cpu == "cortex-a76")
    assert f"emulation of {cpu}" in text.splitlines()[-1]
