"""A real OpenSSH server on 127.0.0.1 for the remote tests, and a device Python that has only numpy + onnxruntime.

:func:`start_sshd` generates a host key and a client key in a temporary folder, writes an sshd config that
listens on 127.0.0.1 only (ephemeral port, key login only, ``UsePAM no``), starts ``sshd -D -e -f CONFIG`` and
waits until a real ``ssh`` login answers; :meth:`LoopbackSshd.stop` ends that sshd by its pid. No other address
is ever contacted. Skips (with the reason) when ``sshd``/``ssh``/``ssh-keygen`` are not installed (Debian:
``apt-get install openssh-server``; ``.ci/run`` installs it).

:func:`make_device_python` builds the device's Python: a venv (``--without-pip``, no system site packages)
whose only packages are numpy and onnxruntime (or the distributions asked for, e.g. coremltools with its own
requirements), linked from this test run's own environment by a ``.pth`` file to a folder holding just those
(so no download, a fraction of a second, and nothing else importable: not featherface_deploy, torch, click,
scipy or Pillow).
"""

from __future__ import annotations

import getpass
import importlib.metadata
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").is_file() else None)
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


@dataclass
class LoopbackSshd:
    """A running loopback sshd.

    Attributes:
        url: ``ssh://user@127.0.0.1:PORT/<cache folder>``.
        port: Its port.
        identity: The client's private key.
        known_hosts: A known_hosts file holding the server's key.
        host_key_line: The server's public host key (``type base64``).
        cache: The device-side cache folder the URL names.
        process: The sshd process.
        log: Its log file.
    """

    url: str
    port: int
    identity: Path
    known_hosts: Path
    host_key_line: str
    cache: Path
    process: subprocess.Popen
    log: Path

    def ssh_options(self) -> list[str]:
        """The CLI options that reach this server."""
        return ["--remote", self.url, "--identity", str(self.identity), "--known-hosts", str(self.known_hosts)]

    def stop(self) -> None:
        """Stops the sshd by its pid and waits for it."""
        if self.process.poll() is None:
            os.kill(self.process.pid, 15)
            self.process.wait(timeout=10)


def require_openssh() -> None:
    """Skips the calling test when the OpenSSH server or client is not installed."""
    missing = [name for name, path in (("sshd", SSHD), ("ssh", shutil.which("ssh")),
                                       ("ssh-keygen", shutil.which("ssh-keygen")), ("sftp-server", SFTP_SERVER))
               if path is None or not Path(path).exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (Debian: apt-get install openssh-server openssh-client)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "featherface-test", "-f", str(path)],
                   check=True, capture_output=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def start_sshd(folder: Path) -> LoopbackSshd:
    """Starts sshd on 127.0.0.1 with fresh keys under ``folder`` (see the module docstring)."""
    require_openssh()
    folder.mkdir(parents=True, exist_ok=True)
    host_key_line = _keygen(folder / "host_ed25519")
    client_line = _keygen(folder / "client_ed25519")
    (folder / "authorized_keys").write_text(client_line + "\n")
    port = _free_port()
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key_line}\n")
    config = folder / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {folder / 'host_ed25519'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}", f"PidFile {folder / 'sshd.pid'}",
        "UsePAM no", "StrictModes no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password", f"AllowUsers {getpass.getuser()}",
        f"Subsystem sftp {SFTP_SERVER}", "LogLevel INFO", ""]))
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
    log = folder / "sshd.log"
    with open(log, "wb") as stream:
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                   stdout=stream, stderr=subprocess.STDOUT)
    server = LoopbackSshd(f"ssh://{getpass.getuser()}@127.0.0.1:{port}{folder / 'device-cache'}", port,
                          folder / "client_ed25519", folder / "known_hosts", host_key_line,
                          folder / "device-cache", process, log)
    _wait_until_it_answers(server)
    return server


def _wait_until_it_answers(server: LoopbackSshd, timeout_s: float = 20.0) -> None:
    probe = ["ssh", "-T", "-p", str(server.port), "-i", str(server.identity), "-o", "BatchMode=yes",
             "-o", f"UserKnownHostsFile={server.known_hosts}", "-o", "StrictHostKeyChecking=yes",
             f"{getpass.getuser()}@127.0.0.1", "true"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"sshd exited with status {server.process.returncode}: {server.log.read_text()[-2000:]}")
        if subprocess.run(probe, capture_output=True, timeout=timeout_s).returncode == 0:
            return
        time.sleep(0.2)
    server.stop()
    pytest.fail(f"sshd on 127.0.0.1:{server.port} did not accept a login in {timeout_s:.0f} s: "
                f"{server.log.read_text()[-2000:]}")


def device_environment() -> dict:
    """This environment without the variables that would let the device Python see this one's packages."""
    return {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}


def make_device_python(folder: Path, distributions: tuple = ("numpy", "onnxruntime"),
                       with_requirements: bool = False) -> Path:
    """A venv whose only packages are ``distributions`` (see the module docstring); returns its python.

    Args:
        folder: Where to create it.
        distributions: Installed distributions to link in (skips the test when one is not installed).
        with_requirements: Also link what they require (recursively; extras left out).
    """
    for name in distributions:
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, capture_output=True)
    python = folder / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    packages = folder / "device-packages"
    packages.mkdir()
    source = Path(sysconfig.get_paths()["purelib"])
    for distribution in _distributions(distributions, with_requirements):
        for relative in _top_level_entries(distribution, source):
            target = packages / relative
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source / relative)
    (site / "device-packages.pth").write_text(str(packages) + "\n")
    return python


def _distributions(names: tuple, with_requirements: bool) -> list:
    """The installed distributions ``names`` (and, when asked, everything they require, markers evaluated)."""
    from packaging.markers import Marker

    found, pending = {}, list(names)
    while pending:
        distribution = importlib.metadata.distribution(pending.pop())
        key = distribution.metadata["Name"].lower()
        if key in found:
            continue
        found[key] = distribution
        for requirement in (distribution.requires or []) if with_requirements else []:
            name, _, marker = requirement.partition(";")
            if marker and ("extra" in marker or not Marker(marker).evaluate()):
                continue
            pending.append(re.match(r"[A-Za-z0-9_.\-]+", name.strip()).group(0))
    return list(found.values())


def _top_level_entries(distribution, source: Path) -> set:
    """Paths under ``source`` to link for a distribution: its top-level entries; inside a namespace folder
    without ``__init__.py`` (``google/``), only this distribution's own sub-entries (``google/protobuf``)."""
    entries = set()
    for file in distribution.files or []:
        parts = Path(file).parts
        if parts[0] in ("..", "__pycache__"):
            continue
        namespace = len(parts) > 2 and (source / parts[0]).is_dir() and not (source / parts[0] / "__init__.py").exists()
        entries.add(Path(*parts[:2]) if namespace else Path(parts[0]))
    return entries
