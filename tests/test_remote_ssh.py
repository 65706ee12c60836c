"""``benchmark --remote ssh://`` and ``evaluate --remote ssh://`` against a real OpenSSH server on 127.0.0.1.

The server is :func:`support.loopback_sshd.start_sshd` (fresh keys in a temporary folder, ephemeral port, stopped by its
pid); the device's Python is :func:`support.loopback_sshd.make_device_python` (a venv with only numpy and onnxruntime,
linked from this environment, no download), so every remote run proves the bundle needs nothing else. Only
127.0.0.1 is contacted. The CLI runs in a subprocess (as a user runs it), so a remote process can be killed
while it runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT
from support.loopback_sshd import make_device_python, require_openssh, start_sshd

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A loopback sshd for this module."""
    require_openssh()
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def device_python(tmp_path_factory):
    """A Python with only numpy and onnxruntime."""
    return make_device_python(tmp_path_factory.mktemp("device-venv") / "venv")


def _cli(*args, timeout=300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "featherface_deploy.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def _remote(sshd, device_python) -> list:
    return [*sshd.ssh_options(), "--python", device_python]


@pytest.mark.slow
def test_benchmark_remote_prints_and_records_the_device_rows(sshd, device_python, tiny_onnx, tmp_path):
    report = tmp_path / "remote.json"
    done = _cli("benchmark", tiny_onnx, "--imgsz", "64", "--warmup", "1", "--iters", "5", "--threads", "1,2",
                "--json", report, *_remote(sshd, device_python))
    assert done.returncode == 0, done.stderr
    assert "| Threads | Batch | p50 ms" in done.stdout
    assert f"_Device {sshd.url.split('//')[1].split('/')[0]}:" in done.stdout and "onnxruntime" in done.stdout
    written = json.loads(report.read_text())
    assert [(row["threads"], row["batch"]) for row in written["rows"]] == [(1, 1), (2, 1)]
    assert all(row["p50_ms"] > 0 and row["iterations"] == 5 and "error" not in row for row in written["rows"])
    device = written["device"]
    assert device["runner"] == "ssh" and set(device["facts"]["versions"]) == {"numpy", "onnxruntime"}
    assert device["facts"]["cpu"] and device["facts"]["cores"] >= 1
    assert written["facts"]["remote"] == sshd.url
    bundles = list((sshd.cache / "bundles").iterdir())
    assert len(bundles) == 1 and (bundles[0] / "run.py").is_file()

    # A second run copies nothing: the cached bundle folder is the same one.
    stamp = bundles[0].stat().st_ino, bundles[0].stat().st_mtime_ns
    again = _cli("benchmark", tiny_onnx, "--imgsz", "64", "--warmup", "0", "--iters", "1",
                 *_remote(sshd, device_python))
    assert again.returncode == 0, again.stderr
    assert list((sshd.cache / "bundles").iterdir()) == bundles
    assert (bundles[0].stat().st_ino, bundles[0].stat().st_mtime_ns) == stamp


@pytest.mark.slow
def test_evaluate_remote_gives_the_local_predictions_and_ap(sshd, device_python, tiny_onnx, widerface_root,
                                                            tmp_path):
    from featherface_deploy.evaluation import read_predictions

    common = ["evaluate", "--model", tiny_onnx, "--widerface", widerface_root, "--limit", "3", "--imgsz", "128",
              "--threads", "1", "--json"]
    remote = _cli(*common, "--pred-dir", tmp_path / "remote", *_remote(sshd, device_python))
    local = _cli(*common, "--pred-dir", tmp_path / "local")
    assert remote.returncode == 0, remote.stderr
    assert local.returncode == 0, local.stderr
    remote_ap, local_ap = json.loads(remote.stdout), json.loads(local.stdout)
    assert remote_ap["images"] == local_ap["images"] == 3
    for setting in ("easy", "medium", "hard"):
        key = next(k for k in local_ap if k.lower().startswith(setting))
        assert remote_ap[key] == pytest.approx(local_ap[key], abs=1e-6)
    remote_predictions = read_predictions(tmp_path / "remote")
    local_predictions = read_predictions(tmp_path / "local")
    assert sorted(remote_predictions) == sorted(local_predictions) and len(local_predictions) == 3
    assert sum(len(boxes) for boxes in local_predictions.values()) > 0
    for key, boxes in local_predictions.items():
        np.testing.assert_allclose(remote_predictions[key], boxes, atol=0.01)
    assert len(list((sshd.cache / "packs").glob("*.npz"))) == 1  # pushed once, under its content hash


def test_unknown_host_key_is_refused_unless_accepted(sshd, device_python, tiny_onnx, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    options = ["--remote", sshd.url, "--identity", sshd.identity, "--known-hosts", known_hosts,
               "--python", device_python]
    refused = _cli("benchmark", tiny_onnx, "--imgsz", "64", "--warmup", "0", "--iters", "1", *options)
    assert refused.returncode == 1
    assert "host key is not in known_hosts" in refused.stderr and "--accept-new-host-key" in refused.stderr
    accepted = _cli("benchmark", tiny_onnx, "--imgsz", "64", "--warmup", "0", "--iters", "1", *options,
                    "--accept-new-host-key")
    assert accepted.returncode == 0, accepted.stderr
    assert sshd.host_key_line.split()[1] in known_hosts.read_text()


def test_changed_host_key_is_refused_even_when_new_keys_are_accepted(sshd, device_python, tiny_onnx, tmp_path):
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(other.with_suffix('.pub').read_text().split()[:2])}\n")
    done = _cli("benchmark", tiny_onnx, "--imgsz", "64", "--iters", "1", "--remote", sshd.url, "--identity",
                sshd.identity, "--known-hosts", known_hosts, "--accept-new-host-key", "--python", device_python)
    assert done.returncode == 1 and "host key has CHANGED" in done.stderr


def test_no_server_is_a_connection_error_naming_device_and_step(tiny_onnx, tmp_path):
    require_openssh()
    import socket

    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = _cli("benchmark", tiny_onnx, "--imgsz", "64", "--iters", "1", "--remote",
                f"ssh://nobody@127.0.0.1:{port}/tmp/x", "--known-hosts", tmp_path / "kh", timeout=60)
    assert done.returncode == 1
    assert f"nobody@127.0.0.1:{port}: check the device's Python and cache: connection failed" in done.stderr


def test_missing_device_python_is_named(sshd, tiny_onnx):
    done = _cli("benchmark", tiny_onnx, "--imgsz", "64", "--iters", "1", *sshd.ssh_options(),
                "--python", "/nonexistent/python3")
    assert done.returncode == 1 and "--python" in done.stderr and "not found" in done.stderr


def _processes():
    """(pid, parent pid, arguments) of every process readable in /proc."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                arguments = (entry / "cmdline").read_bytes().split(b"\0")
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            yield int(entry.name), parent, arguments


def _descendants(root: int) -> list[tuple[int, list[bytes]]]:
    """(pid, arguments) of every process below ``root`` in the process tree."""
    table = list(_processes())
    found, frontier = [], {root}
    while frontier:
        below = [(pid, arguments) for pid, parent, arguments in table if parent in frontier]
        found += below
        frontier = {pid for pid, _ in below}
    return found


def _runner_pids(sshd, marker: str) -> list[int]:
    """Pids of the bundle runners under the sshd this module started whose command line holds ``marker``."""
    return [pid for pid, arguments in _descendants(sshd.process.pid)
            if b"run.py" in arguments and marker.encode() in arguments]


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid``."""
    return [child for child, parent, _ in _processes() if parent == pid]


def _kill_runner(pid: int) -> None:
    """Kills ``pid`` if it is still a bundle runner (not a process that reused the number since)."""
    try:
        if b"run.py" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
            os.kill(pid, signal.SIGKILL)
    except OSError:  # gone already
        pass


def _when_batch_3_runs(sshd, action) -> threading.Thread:
    """A started thread that calls ``action()`` once, as soon as the sshd's runner of batch 3 is seen (2 min at most)."""
    def watch():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if _runner_pids(sshd, "3"):  # "--batch 3": the second configuration
                action()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


def test_remote_process_killed_mid_run_leaves_an_error_row_and_the_rows_before_it(sshd, device_python,
                                                                                  tiny_onnx, tmp_path):
    if not Path("/proc/self/cmdline").is_file():
        pytest.skip("needs /proc to find the remote process (Linux)")
    report = tmp_path / "report.json"
    killed = []

    def kill_the_runner():
        for pid in _runner_pids(sshd, "3"):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    watcher = _when_batch_3_runs(sshd, kill_the_runner)
    done = _cli("benchmark", tiny_onnx, "--imgsz", "64", "--warmup", "0", "--iters", "200", "--batch", "1,3",
                "--json", report, *_remote(sshd, device_python))
    watcher.join()
    assert killed, "the second configuration's runner was never seen"
    assert done.returncode == 1
    assert "1 of 2 configurations failed" in done.stderr and "killed by SIGKILL" in done.stderr
    rows = json.loads(report.read_text())["rows"]
    assert rows[0]["batch"] == 1 and rows[0]["p50_ms"] > 0 and "error" not in rows[0]
    assert rows[1]["batch"] == 3 and "benchmark threads 1 batch 3" in rows[1]["error"]
    assert "killed by SIGKILL" in rows[1]["error"] and "p50_ms" not in rows[1]
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # nothing half-written beside it


def test_fleet_runs_every_device_and_keeps_failures_as_rows(sshd, device_python, tiny_onnx, tmp_path):
    from featherface_deploy.remote.fleet import read_devices
    from featherface_deploy.remote.fleet_report import fleet_report
    from featherface_deploy.remote.runs import BenchmarkSettings

    devices_toml = tmp_path / "devices.toml"
    entries = [f'[[device]]\nname = "{name}"\nremote = "{sshd.url}/{name}"\nidentity = "{sshd.identity}"\n'
               f'known_hosts = "{sshd.known_hosts}"\npython = "{device_python}"\n' for name in ("board-a", "board-b")]
    entries.append('[[device]]\nname = "phone"\nremote = "adb:R58M123"\n')  # no --benchmark-binary: an error row
    devices_toml.write_text("\n".join(entries))
    fleet = read_devices(devices_toml)
    assert [device.name for device in fleet] == ["board-a", "board-b", "phone"]
    rows, paths = fleet_report({"onnx": tiny_onnx}, fleet, BenchmarkSettings((64, 64), (1,), (1,), 1, 3),
                               tmp_path / "report", "compare", {})
    measured = {row["device"]: row for row in rows if "p50_ms" in row}
    assert set(measured) == {"board-a", "board-b"} and all(row["artifact"] == "onnx" for row in measured.values())
    assert [row["device"] for row in rows if row.get("error")] == ["phone"]
    assert "--benchmark-binary" in next(row["error"] for row in rows if row.get("error"))
    table = paths["markdown"].read_text()
    assert "| Device | Artifact |" in table and "board-b" in table and "phone" in table
    assert {"markdown", "csv", "json"} <= set(paths)
    if importlib.util.find_spec("matplotlib") is not None:
        assert paths["png"].stat().st_size > 0  # the latency-by-device plot


def test_devices_file_errors_are_named(tmp_path):
    from featherface_deploy.errors import DeviceError
    from featherface_deploy.remote.fleet import read_devices

    bad = tmp_path / "devices.toml"
    bad.write_text('[[device]]\nname = "a"\nremote = "ssh://a"\nidentiy = "typo"\n')
    with pytest.raises(DeviceError, match="unknown keys: identiy"):
        read_devices(bad)
    bad.write_text("title = 'no devices'\n")
    with pytest.raises(DeviceError, match=r"no devices; add \[\[device\]\]"):
        read_devices(bad)


def test_dropped_connection_names_device_and_step_and_skips_the_rest(sshd, device_python, tiny_onnx, tmp_path):
    if not Path("/proc/self/stat").is_file():
        pytest.skip("needs /proc to find the server's session processes (Linux)")
    report = tmp_path / "report.json"
    dropped, orphans = [], []

    def drop_the_connection():
        orphans.extend(_runner_pids(sshd, "3"))  # left running once their session is gone
        for pid in _children(sshd.process.pid):  # the sessions of the sshd this module started
            os.kill(pid, signal.SIGKILL)
            dropped.append(pid)

    watcher = _when_batch_3_runs(sshd, drop_the_connection)
    done = _cli("benchmark", tiny_onnx, "--imgsz", "64", "--warmup", "0", "--iters", "200", "--batch", "1,3,5",
                "--json", report, *_remote(sshd, device_python))
    watcher.join()
    for pid in orphans:  # the orphaned runner: end it rather than wait for its time limit
        _kill_runner(pid)
    assert dropped, "the second configuration's session was never seen"
    assert done.returncode == 1
    rows = json.loads(report.read_text())["rows"]
    assert rows[0]["batch"] == 1 and rows[0]["p50_ms"] > 0
    assert "benchmark threads 1 batch 3: connection failed or dropped" in rows[1]["error"]
    assert rows[1]["error"].startswith(sshd.url.split("//")[1].split("/")[0])
    assert rows[2]["batch"] == 5 and rows[2]["error"].startswith("not run: ")


class _RecordingClient:
    """Stands in for :class:`~featherface_deploy.remote.ssh.SshClient`: records each command, answers as a device
    that already holds the bundle would (the probe finds it; the runner prints one result)."""

    def __init__(self, url: str) -> None:
        from featherface_deploy.remote.ssh import SshTarget

        self.target = SshTarget.parse(url)
        self.commands = []

    def run(self, step, command, timeout_s, stdin=None, folder=None) -> bytes:
        self.commands.append((step, list(command), folder))
        if "run.py" in command:
            row = {"runtime": "coreml", "runtime_note": "", "threads": 1, "batch": 1, "p50_ms": 1.0}
            if "--compute-units" in command:  # as the runner labels Core ML rows
                row["compute_units"] = command[command.index("--compute-units") + 1]
            return json.dumps({"schema": "featherface-deploy/device-result/1", "rows": [row],
                               "facts": {"os": "macOS 15.1"}}).encode()
        return b'{"python": "3.12.0", "exists": [true]}'

    def push(self, step, local, remote, timeout_s) -> None:
        raise AssertionError(f"nothing should be copied: {step}")


def test_compute_units_reach_the_device_command_line(tmp_path):
    from featherface_deploy.remote.runs import BenchmarkSettings
    from featherface_deploy.remote.ssh_device import SshDevice

    # The command line is what is tested: a folder named like a package is enough to build the bundle
    # (the bundle copies it; nothing here opens it).
    package = tmp_path / "face.mlpackage"
    (package / "Data").mkdir(parents=True)
    (package / "Manifest.json").write_text("{}")
    (package / "Data" / "model.mlmodel").write_bytes(b"program")
    client = _RecordingClient("ssh://me@mac.local:2222/cache")
    device = SshDevice(client, python="/opt/homebrew/bin/python3", timeout_s=100)
    report = device.benchmark(package, BenchmarkSettings((64, 64), (1,), (1,), 0, 2, "cpu-and-ne"))
    (step, command, folder), = [entry for entry in client.commands if "run.py" in entry[1]]
    assert step == "benchmark threads 1 batch 1" and folder.startswith("/cache/bundles/")
    assert command[:3] == ["/opt/homebrew/bin/python3", "run.py", "benchmark"]
    assert command[command.index("--compute-units") + 1] == "cpu-and-ne"
    assert command[command.index("--iters") + 1] == "2" and command[command.index("--time-limit") + 1] == "100"
    assert report.rows[0]["compute_units"] == "cpu-and-ne" and not report.errors
    plain = _RecordingClient("ssh://me@mac.local:2222/cache")
    SshDevice(plain).benchmark(package, BenchmarkSettings((64, 64), iters=1))
    assert any("run.py" in command for _, command, _ in plain.commands)
    assert not any("--compute-units" in command for _, command, _ in plain.commands)


def test_compute_units_for_a_model_that_is_not_core_ml_is_refused_before_connecting(tiny_onnx):
    from click.testing import CliRunner

    from featherface_deploy.cli.main import cli

    result = CliRunner().invoke(cli, ["benchmark", str(tiny_onnx), "--compute-units", "cpu", "--remote",
                                      "ssh://nobody@127.0.0.1:9/never-contacted"])
    assert result.exit_code == 2
    assert "--compute-units applies to Core ML packages (.mlpackage) only" in result.output
