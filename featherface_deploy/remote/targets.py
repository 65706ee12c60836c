"""``--remote`` values: ``ssh://[user@]host[:port][/cache-folder]`` or ``adb[:SERIAL]``, opened as a device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from featherface_deploy.errors import DeviceError


@dataclass(frozen=True)
class RemoteOptions:
    """The CLI's remote options.

    Attributes:
        identity: ssh private key (``--identity``).
        python: The device's Python (``--python``, ssh only).
        known_hosts: ssh ``known_hosts`` file (``--known-hosts``; default ``~/.ssh/known_hosts``).
        accept_new_host_key: Trust a device seen for the first time (``--accept-new-host-key``).
        timeout_s: Limit of each copy or run step (``--remote-timeout``).
    """

    identity: str | Path | None = None
    python: str = "python3"
    known_hosts: str | Path | None = None
    accept_new_host_key: bool = False
    timeout_s: float = 600.0


def open_device(spec: str, options: RemoteOptions = RemoteOptions()):
    """Opens the device a ``--remote`` value names.

    Returns:
        An :class:`~featherface_deploy.remote.ssh_device.SshDevice`.

    Raises:
        DeviceError: An unknown kind of device, a bad URL, or a missing ssh client.
    """
    if spec.startswith("ssh://"):
        from featherface_deploy.remote.ssh import SshClient, SshOptions, SshTarget
        from featherface_deploy.remote.ssh_device import SshDevice

        ssh_options = SshOptions(options.identity, options.known_hosts, options.accept_new_host_key)
        return SshDevice(SshClient(SshTarget.parse(spec), ssh_options), options.python, options.timeout_s)
    raise DeviceError(f"--remote {spec!r}: expected ssh://[user@]host[:port][/cache-folder] or adb[:SERIAL]")
