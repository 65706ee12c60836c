"""The system's OpenSSH client (``ssh``, ``scp``) run through :mod:`subprocess`, with one error per failed step.

Every call is non-interactive (``BatchMode=yes``: no password or passphrase prompt), checks the host key
against ``known_hosts`` (``StrictHostKeyChecking=yes`` unless a new key is accepted on purpose with
``accept-new``; a *changed* key is always refused), notices a dead connection within about 15 s
(``ServerAliveInterval``), and has a wall-clock timeout. A failure becomes a
:class:`~featherface_deploy.errors.DeviceError` naming the device and the step, with ssh's own reason.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from featherface_deploy.errors import ConnectionLostError, DeviceError

SSH_FAILED = 255  # ssh's own exit status: it could not connect, authenticate or keep the connection
DEFAULT_CACHE = ".cache/featherface-deploy"  # relative to the remote home
_LOST = ("Connection closed", "Connection reset", "Broken pipe", "Timeout, server", "not responding",
         "Connection timed out", "Connection refused", "No route to host", "Could not resolve hostname",
         "Network is unreachable", "client_loop: send disconnect")


@dataclass(frozen=True)
class SshTarget:
    """Where to connect: ``ssh://[user@]host[:port][/cache-folder]``.

    Attributes:
        host: Host name or address.
        user: Login name (``None``: ssh's default).
        port: Port (``None``: ssh's default).
        cache: Folder on the device for bundles and image packs (relative paths start at the remote home).
    """

    host: str
    user: str | None = None
    port: int | None = None
    cache: str = DEFAULT_CACHE

    @classmethod
    def parse(cls, url: str) -> "SshTarget":
        """Reads ``ssh://user@host:port/path``.

        Raises:
            DeviceError: Not an ``ssh://`` URL, or a bad port.
        """
        parts = urlsplit(url)
        if parts.scheme != "ssh" or not parts.hostname:
            raise DeviceError(f"{url!r} is not an ssh URL; expected ssh://[user@]host[:port][/cache-folder]")
        try:
            port = parts.port
        except ValueError:
            raise DeviceError(f"{url!r}: the port must be a number from 1 to 65535") from None
        return cls(parts.hostname, parts.username, port, parts.path if parts.path not in ("", "/") else DEFAULT_CACHE)

    @property
    def name(self) -> str:
        """``user@host:port`` as the messages name the device."""
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}" + (f":{self.port}" if self.port else "")


@dataclass(frozen=True)
class SshOptions:
    """How to connect.

    Attributes:
        identity: Private key file (``-i``); ``None``: ssh's defaults and agent.
        known_hosts: ``UserKnownHostsFile``; ``None``: ssh's default (``~/.ssh/known_hosts``).
        accept_new_host_key: Trust a host seen for the first time and record its key
            (``StrictHostKeyChecking=accept-new``). A changed key is refused either way.
        connect_timeout_s: Seconds to wait for the connection.
    """

    identity: str | Path | None = None
    known_hosts: str | Path | None = None
    accept_new_host_key: bool = False
    connect_timeout_s: int = 15


class SshClient:
    """Runs commands and copies files on one device.

    Args:
        target: The device.
        options: Connection options.

    Raises:
        DeviceError: ``ssh`` or ``scp`` is not installed.
    """

    def __init__(self, target: SshTarget, options: SshOptions = SshOptions()) -> None:
        for tool in ("ssh", "scp"):
            if shutil.which(tool) is None:
                raise DeviceError(f"`{tool}` not found: install the OpenSSH client (Debian: apt-get install openssh-client)")
        self.target = target
        self.options = options

    def run(self, step: str, command: list[str], timeout_s: float, stdin: bytes | None = None,
            folder: str | None = None) -> bytes:
        """Runs ``command`` (quoted for the remote POSIX shell) on the device and returns its stdout.

        Args:
            step: What this is, for messages (e.g. ``"run benchmark"``).
            command: Program and arguments.
            timeout_s: Wall-clock limit of the whole step.
            stdin: Bytes to feed it (``None``: nothing).
            folder: Remote working directory (``None``: the login's home).

        Raises:
            ConnectionLostError: ssh could not connect or the connection dropped.
            DeviceError: The command failed, was killed, or ran past ``timeout_s``.
        """
        remote = " ".join(shlex.quote(part) for part in command)
        if folder is not None:
            remote = f"cd {shlex.quote(folder)} && {remote}"
        # `; exit $?` keeps the shell as the parent, so a killed program reports 128 + signal.
        return self._call(step, self._ssh_args() + ["--", f"{remote}; exit $?"], timeout_s, stdin)

    def push(self, step: str, local: str | Path, remote: str, timeout_s: float) -> None:
        """Copies one local file to ``remote`` (a path on the device) with ``scp``.

        Raises:
            ConnectionLostError, DeviceError: As :meth:`run`.
        """
        destination = f"{self._login()}:{remote}"
        self._call(step, ["scp", "-q", "-B"] + self._common_args("-P") + ["--", str(local), destination],
                   timeout_s, None)

    def _login(self) -> str:
        host = f"[{self.target.host}]" if ":" in self.target.host else self.target.host
        return f"{self.target.user}@{host}" if self.target.user else host

    def _ssh_args(self) -> list[str]:
        return ["ssh", "-T"] + self._common_args("-p") + [self._login()]

    def _common_args(self, port_flag: str) -> list[str]:
        options = self.options
        args = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={options.connect_timeout_s}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
                "-o", f"StrictHostKeyChecking={'accept-new' if options.accept_new_host_key else 'yes'}"]
        if options.known_hosts is not None:
            args += ["-o", f"UserKnownHostsFile={Path(options.known_hosts)}"]
        if options.identity is not None:
            args += ["-i", str(options.identity), "-o", "IdentitiesOnly=yes"]
        if self.target.port is not None:
            args += [port_flag, str(self.target.port)]
        return args

    def _call(self, step: str, args: list[str], timeout_s: float, stdin: bytes | None) -> bytes:
        where = f"{self.target.name}: {step}"
        try:
            result = subprocess.run(args, input=stdin if stdin is not None else b"", capture_output=True,
                                    timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{where}: no answer within {timeout_s:g} s (timed out; the device may be "
                              "overloaded, or raise --remote-timeout)") from None
        if result.returncode == 0:
            return result.stdout
        raise _failure(where, result.returncode, result.stderr.decode("utf-8", "replace"))


def _failure(where: str, status: int, stderr: str) -> DeviceError:
    """The error for a failed ssh/scp call, from its exit status and stderr."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else "no message"
    errors = [line for line in lines if line.startswith("error: ")]
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
        return DeviceError(f"{where}: the device's host key has CHANGED since it was recorded in known_hosts; "
                           "if the device was reinstalled, remove the old key (ssh-keygen -R HOST), otherwise do "
                           "not connect")
    if "Host key verification failed" in stderr or "No ED25519 host key is known" in stderr:
        return DeviceError(f"{where}: the device's host key is not in known_hosts; check it and add it "
                           "(ssh-keyscan -p PORT HOST >> ~/.ssh/known_hosts, or connect once with ssh), or pass "
                           "--accept-new-host-key to trust it on first use")
    if "Permission denied" in stderr:
        return DeviceError(f"{where}: the device refused the login ({last}); pass the key with --identity "
                           "(passphrase-protected keys need ssh-agent: no prompt is shown)")
    if status == SSH_FAILED or any(marker in stderr for marker in _LOST):
        return ConnectionLostError(f"{where}: connection failed or dropped ({last})")
    if status > 128 and status - 128 in signal.valid_signals():
        name = signal.Signals(status - 128).name
        if name == "SIGALRM":
            return DeviceError(f"{where}: ran past its time limit on the device (raise --remote-timeout)")
        hint = " (the device may have run out of memory)" if name == "SIGKILL" else ""
        return DeviceError(f"{where}: the remote process was killed by {name}{hint}")
    if status == 127:
        return DeviceError(f"{where}: a program was not found on the device ({last}); pass the device's "
                           "Python with --python PATH")
    if errors:
        return DeviceError(f"{where}: {errors[-1][len('error: '):]}")
    return DeviceError(f"{where}: exit status {status} ({last})")
