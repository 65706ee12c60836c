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
        benchmark_binary: TFLite's ``benchmark_model``, on the host or the device (``--benchmark-binary``, adb).
        use_xnnpack: ``benchmark_model --use_xnnpack`` (``None``: its default).
        use_gpu: ``benchmark_model --use_gpu=true``.
        use_nnapi: ``benchmark_model --use_nnapi=true``.
    """

    identity: str | Path | None = None
    python: str = "python3"
    known_hosts: str | Path | None = None
    accept_new_host_key: bool = False
    timeout_s: float = 600.0
    benchmark_binary: str | None = None
    use_xnnpack: bool | None = None
    use_gpu: bool = False
    use_nnapi: bool = False


def open_device(spec: str, options: RemoteOptions = RemoteOptions()):
    """Opens the device a ``--remote`` value names.

    Returns:
        An :class:`~featherface_deploy.remote.ssh_device.SshDevice` or
        :class:`~featherface_deploy.remote.adb_device.AdbDevice`.

    Raises:
        DeviceError: An unknown kind of device, a bad URL, a missing client, or adb without --benchmark-binary.
    """
    if spec == "adb" or spec.startswith("adb:"):
        from featherface_deploy.remote.adb_device import AdbDevice, BenchmarkModelOptions

        if not options.benchmark_binary:
            raise DeviceError("--remote adb needs --benchmark-binary PATH: TFLite's benchmark_model, on the host "
                              "(it is pushed) or on the device; no package registry ships it")
        tool = BenchmarkModelOptions(options.benchmark_binary, options.use_xnnpack, options.use_gpu,
                                     options.use_nnapi)
        return AdbDevice(spec.partition(":")[2] or None, tool, options.timeout_s)
    if spec.startswith("ssh://"):
        from featherface_deploy.remote.ssh import SshClient, SshOptions, SshTarget
        from featherface_deploy.remote.ssh_device import SshDevice

        ssh_options = SshOptions(options.identity, options.known_hosts, options.accept_new_host_key)
        return SshDevice(SshClient(SshTarget.parse(spec), ssh_options), options.python, options.timeout_s)
    raise DeviceError(f"--remote {spec!r}: expected ssh://[user@]host[:port][/cache-folder] or adb[:SERIAL]")
