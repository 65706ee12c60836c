"""The ``--remote`` options of ``benchmark`` and ``evaluate``, and the device they open."""

from __future__ import annotations

import click

from featherface_deploy.cli.options import Number


def remote_options(command):
    """Adds ``--remote``, ``--identity``, ``--python``, ``--known-hosts``, ``--accept-new-host-key``, ``--remote-timeout``."""
    decorators = [
        click.option("--remote", default=None, metavar="URL",
                     help="Run on a device: ssh://[user@]host, optionally with :port and /cache-folder, or adb[:SERIAL]."),
        click.option("--identity", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="ssh private key for --remote ssh://… (passphrase keys need ssh-agent)."),
        click.option("--python", "remote_python", default="python3", show_default=True,
                     help="The device's Python (>= 3.8 with numpy and the model's runtime)."),
        click.option("--known-hosts", type=click.Path(dir_okay=False), default=None,
                     help="ssh known_hosts file (default: ssh's, ~/.ssh/known_hosts)."),
        click.option("--accept-new-host-key", is_flag=True,
                     help="Trust a device seen for the first time and record its key (a changed key is refused)."),
        click.option("--remote-timeout", default=600.0, show_default=True, type=Number(1.0),
                     help="Seconds allowed for each copy or run step on the device."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def adb_options(command):
    """Adds the ``benchmark_model`` options of ``--remote adb``."""
    decorators = [
        click.option("--benchmark-binary", default=None, metavar="PATH",
                     help="adb: TFLite's benchmark_model, a host file (pushed) or a path on the device."),
        click.option("--use-xnnpack/--no-xnnpack", default=None, help="adb: benchmark_model --use_xnnpack "
                     "(default: the tool's own)."),
        click.option("--use-gpu", is_flag=True, help="adb: benchmark_model --use_gpu=true."),
        click.option("--use-nnapi", is_flag=True, help="adb: benchmark_model --use_nnapi=true."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def open_remote(remote: str, identity, remote_python: str, known_hosts, accept_new_host_key: bool,
                remote_timeout: float, benchmark_binary: str | None = None, use_xnnpack: bool | None = None,
                use_gpu: bool = False, use_nnapi: bool = False):
    """The device of the ``--remote`` options (see :func:`remote_options` and :func:`adb_options`)."""
    from featherface_deploy.remote.targets import RemoteOptions, open_device

    return open_device(remote, RemoteOptions(identity, remote_python, known_hosts, accept_new_host_key,
                                             remote_timeout, benchmark_binary, use_xnnpack, use_gpu, use_nnapi))


def device_line(facts: dict, device: str, facts_after: dict | None = None) -> str:
    """One line naming the device and what it is (CPU, cores, OS, Python, runtimes, governor, temperatures).

    Facts the device did not give are left out (an Android device gives its model, Android version and SoC).
    """
    facts = facts or {}
    parts = []
    if facts.get("cpu"):
        parts.append(f"{facts['cpu']} ({facts.get('machine', '?')}, {facts.get('usable_cores', '?')} usable cores)")
    for key, label in (("manufacturer", ""), ("model", ""), ("os", ""), ("android", "Android "), ("soc", "SoC "),
                       ("abi", ""), ("python", "Python ")):
        if facts.get(key):
            parts.append(f"{label}{facts[key]}")
    if facts.get("cores") and not facts.get("cpu"):
        parts.append(f"{facts['cores']} cores")
    versions = ", ".join(f"{name} {version}" for name, version in facts.get("versions", {}).items())
    parts += [versions] if versions else []
    for key in ("governor", "nvpmodel", "jetson_clocks"):
        if facts.get(key):
            parts.append(f"{key} {' '.join(str(facts[key]).split())}")
    before, after = facts.get("temperatures_c"), (facts_after or {}).get("temperatures_c")
    if before:
        parts.append("temperature °C before " + _temperatures(before)
                     + (f", after {_temperatures(after)}" if after else ""))
    return f"_Device {device}: " + ("; ".join(parts) or "no facts") + "._"


def _temperatures(readings: dict) -> str:
    return ", ".join(f"{zone} {value}" for zone, value in readings.items())
