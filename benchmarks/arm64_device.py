"""An emulated aarch64 device on an x86 Linux host, reachable over ssh for ``--remote``.

``python benchmarks/arm64_device.py up [--dir DIR] [--port PORT]`` builds, once, a
Debian bookworm arm64 root file system with ``debootstrap`` (Debian packages
``debootstrap`` and ``qemu-user-static``; the ``qemu-aarch64`` binfmt handler is
registered from ``/usr/lib/binfmt.d/qemu-aarch64.conf`` when the system has not),
installs the runtime side's dependencies into a venv there from aarch64 wheels
downloaded *on the host* (``pip download --platform manylinux_*_aarch64
--only-binary=:all: --python-version 3.11``: the chroot needs no network), and
starts the chroot's own ``sshd`` on 127.0.0.1 with keys generated for it. It
prints the ``ssh://`` URL, the identity file and the device's Python.
``--cpu cortex-a72|cortex-a76|neoverse-n1`` picks the CPU QEMU emulates (``QEMU_CPU``;
default cortex-a76, the core of a Raspberry Pi 5: NEON dot product, no SVE).

The chroot's ``/proc/cpuinfo`` is replaced (a read-only bind mount) by a description
of the *emulated* CPU: the host's x86 ``/proc/cpuinfo`` next to ``/sys``'s CPU lists
makes the cpuinfo library inside onnxruntime crash (``import onnxruntime`` ended in
a segmentation fault under QEMU), and device facts would name the host's CPU.

``python benchmarks/arm64_device.py down [--dir DIR]`` stops that sshd by its
pid and unmounts what ``up`` mounted. Both are idempotent. Nothing outside
``DIR`` is touched except the binfmt registration (kernel-wide; left in place,
like ``systemd-binfmt`` would) and the ``binfmt_misc`` file system when it was
not mounted. The host's own sshd, port 22 and ``~/.ssh`` are never used.

Timings under emulation are **not** device timings: every kernel runs through
QEMU's instruction translation (a V1 640×640 frame takes seconds). Use the
device for correctness and accuracy on ARM kernels only.

Needs root (debootstrap, chroot and mount do). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
DEBIAN_PACKAGES = ("python3", "python3-venv", "openssh-server")
PYTHON_VERSION = "3.11"  # bookworm's python3
# pip does not widen an explicit --platform to older manylinux tags: list them all.
PLATFORMS = tuple(f"manylinux_2_{minor}_aarch64" for minor in (17, 27, 28, 31, 34, 36)) + ("manylinux2014_aarch64",)
# What the runtime side (and the bundle) needs: numpy, Pillow and the backends.
REQUIREMENTS = ("numpy>=1.24,<2.4", "pillow>=10", "onnxruntime>=1.18", "ai-edge-litert>=1.4")
BINFMT = Path("/proc/sys/fs/binfmt_misc")
BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
GUEST_ROOT = "/opt/featherface"
GUEST_PYTHON = f"{GUEST_ROOT}/venv/bin/python"
SSHD_CONFIG = "/etc/ssh/sshd_featherface.conf"
ROOTFS_STAMP = ".featherface-rootfs-ok"
# What QEMU emulates (QEMU_CPU) and how its /proc/cpuinfo reads: (variant, part, revision, features).
CPUS = {
    "cortex-a72": ("0x0", "0xd08", 3, "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"),
    "cortex-a76": ("0x4", "0xd0b", 1, "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                                      "asimdrdm lrcpc dcpop asimddp ssbs"),
    "neoverse-n1": ("0x4", "0xd0c", 1, "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                                       "asimdrdm lrcpc dcpop asimddp ssbs"),
}
DEFAULT_CPU = "cortex-a76"


class DeviceError(RuntimeError):
    """A step of bringing the emulated device up or down failed; the message says what to do."""


def default_dir() -> Path:
    """``$XDG_CACHE_HOME/featherface-deploy/arm64-device`` (``~/.cache/...`` by default)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "featherface-deploy" / "arm64-device"


def _run(args: list[str], step: str, **kwargs) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(args, capture_output=True, text=True, **kwargs)
    except FileNotFoundError as error:
        raise DeviceError(f"{step}: {error.filename} not found") from error
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise DeviceError(f"{step} failed (exit {result.returncode}): " + " | ".join(tail))
    return result


def _log(message: str) -> None:
    print(f"[arm64-device] {message}", file=sys.stderr, flush=True)


def check_host() -> None:
    """Fails clearly without root, debootstrap or qemu-user-static."""
    if sys.platform != "linux":
        raise DeviceError("the emulated device needs a Linux host (chroot + binfmt_misc)")
    if os.geteuid() != 0:
        raise DeviceError("needs root: debootstrap, chroot and mount do (run it with sudo)")
    missing = [tool for tool in ("debootstrap", "qemu-aarch64-static", "ssh-keygen", "ssh")
               if shutil.which(tool) is None]
    if missing:
        raise DeviceError(f"missing {', '.join(missing)}: apt-get install debootstrap qemu-user-static openssh-client")


def ensure_binfmt() -> None:
    """Makes the kernel run aarch64 ELF files through qemu-aarch64-static (inside the chroot too).

    Raises:
        DeviceError: binfmt_misc cannot be mounted or the handler cannot be registered.
    """
    if not (BINFMT / "register").exists():
        _run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
             f"mounting binfmt_misc on {BINFMT} (a container may need --privileged)")
    entry = BINFMT / "qemu-aarch64"
    if entry.exists():
        if entry.read_text().splitlines()[0].strip() != "enabled":
            raise DeviceError(f"{entry} is registered but disabled: echo 1 > {entry}")
        return
    if not BINFMT_CONF.exists():
        raise DeviceError(f"{BINFMT_CONF} not found: apt-get install qemu-user-static")
    line = next(text for text in BINFMT_CONF.read_text().splitlines() if text.startswith(":"))
    try:
        (BINFMT / "register").write_text(line)
    except OSError as error:
        raise DeviceError(f"cannot register the qemu-aarch64 binfmt handler: {error}") from error
    _log("registered the qemu-aarch64 binfmt handler")


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    return [point for point in points if point == prefix or point.startswith(prefix + "/")]


def build_rootfs(directory: Path) -> Path:
    """Debootstraps the bookworm arm64 root file system once; returns its path."""
    rootfs = directory / "rootfs"
    if (rootfs / ROOTFS_STAMP).exists():
        return rootfs
    partial = directory / "rootfs.partial"
    if partial.exists():
        if _mounts_under(partial):
            raise DeviceError(f"{partial} has mounts left by an interrupted build: umount them first")
        shutil.rmtree(partial)
    _log(f"debootstrap {SUITE} arm64 into {partial} (minutes, once)")
    started = time.monotonic()
    _run(["debootstrap", "--arch=arm64", "--variant=minbase", "--include=" + ",".join(DEBIAN_PACKAGES),
          SUITE, str(partial), MIRROR], "debootstrap (needs the Debian mirror and binfmt)")
    (partial / ROOTFS_STAMP).write_text(f"{SUITE} arm64 {','.join(DEBIAN_PACKAGES)}\n")
    if rootfs.exists():
        shutil.rmtree(rootfs)
    partial.rename(rootfs)
    _log(f"root file system ready in {time.monotonic() - started:.0f} s")
    return rootfs


def fetch_wheels(directory: Path) -> Path:
    """Downloads the aarch64 cp311 wheels of :data:`REQUIREMENTS` (and their dependencies) on the host."""
    wheels = directory / "wheels"
    stamp = wheels / "requirements.txt"
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if stamp.exists() and stamp.read_text() == wanted:
        return wheels
    wheels.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", PYTHON_VERSION,
            "--implementation", "cp", "-d", str(wheels)]
    for platform in PLATFORMS:
        args += ["--platform", platform]
    _log("pip download of the aarch64 wheels on the host")
    _run(args + list(REQUIREMENTS), "pip download (needs PyPI)")
    stamp.write_text(wanted)
    return wheels


def install_venv(rootfs: Path, wheels: Path) -> None:
    """Creates the device's venv from the host-fetched wheels only (``--no-index``)."""
    guest_wheels = rootfs / GUEST_ROOT.lstrip("/") / "wheels"
    stamp = rootfs / GUEST_ROOT.lstrip("/") / "venv" / ".requirements"
    wanted = (wheels / "requirements.txt").read_text()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    if guest_wheels.exists():
        shutil.rmtree(guest_wheels)
    shutil.copytree(wheels, guest_wheels)
    _log("creating the device venv (pip under emulation, a few minutes)")
    _run(["chroot", str(rootfs), "python3", "-m", "venv", "--clear", f"{GUEST_ROOT}/venv"], "python3 -m venv in the chroot")
    _run(["chroot", str(rootfs), GUEST_PYTHON, "-m", "pip", "install", "-q", "--no-index", "--find-links",
          f"{GUEST_ROOT}/wheels", "-r", f"{GUEST_ROOT}/wheels/requirements.txt"], "pip install in the chroot")
    stamp.write_text(wanted)


def _keygen(path: Path) -> None:
    if not path.exists():
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "featherface-arm64-device", "-f", str(path)],
             f"ssh-keygen {path.name}")


def configure_sshd(directory: Path, rootfs: Path, port: int, cpu: str) -> Path:
    """Writes keys, ``known_hosts`` and the sshd config (loopback only, key only); returns the identity file."""
    keys = directory / "ssh"
    keys.mkdir(mode=0o700, exist_ok=True)
    host_key, identity = keys / "host_ed25519", keys / "id_ed25519"
    _keygen(host_key)
    _keygen(identity)
    etc = rootfs / "etc" / "ssh"
    shutil.copyfile(host_key, etc / "featherface_host_ed25519")
    os.chmod(etc / "featherface_host_ed25519", 0o600)
    shutil.copyfile(identity.with_suffix(".pub"), etc / "featherface_authorized_keys")
    (etc / "sshd_featherface.conf").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", "HostKey /etc/ssh/featherface_host_ed25519",
        "AuthorizedKeysFile /etc/ssh/featherface_authorized_keys", "PermitRootLogin prohibit-password",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
        "PidFile /run/sshd-featherface.pid", "Subsystem sftp /usr/lib/openssh/sftp-server",
        f"SetEnv QEMU_CPU={cpu}", ""]))
    public = (host_key.with_suffix(".pub")).read_text().split()
    (keys / "known_hosts").write_text(f"[127.0.0.1]:{port} {public[0]} {public[1]}\n")
    (rootfs / "run" / "sshd").mkdir(parents=True, exist_ok=True)
    return identity


def write_cpuinfo(directory: Path, cpu: str) -> Path:
    """Writes the ``/proc/cpuinfo`` of the emulated ``cpu``, one entry per host core; returns its path."""
    variant, part, revision, features = CPUS[cpu]
    entry = ("processor\t: {}\nBogoMIPS\t: 50.00\nFeatures\t: " + features + "\nCPU implementer\t: 0x41\n"
             f"CPU architecture: 8\nCPU variant\t: {variant}\nCPU part\t: {part}\nCPU revision\t: {revision}\n\n")
    text = "".join(entry.format(index) for index in range(os.cpu_count() or 1))
    path = directory / f"cpuinfo-{cpu}"
    path.write_text(text + f"Hardware\t: QEMU user-mode emulation of {cpu} (emulated; not device timings)\n")
    return path


def mount_pseudo_fs(rootfs: Path, cpuinfo: Path) -> list[str]:
    """Mounts /proc, /sys (read-only), /dev and ``cpuinfo`` over /proc/cpuinfo; returns the mount points it made."""
    made = []
    for target, args in (("proc", ["-t", "proc", "proc"]), ("proc/cpuinfo", ["--bind", "-o", "ro", str(cpuinfo)]),
                         ("sys", ["--bind", "-o", "ro", "/sys"]), ("dev", ["--bind", "/dev"])):
        point = rootfs / target
        if str(point.resolve()) in _mounts_under(point):
            continue
        _run(["mount", *args, str(point)], f"mount {target} into the chroot")
        made.append(str(point.resolve()))
    return made


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ssh_args(directory: Path, port: int) -> list[str]:
    keys = directory / "ssh"
    return ["ssh", "-i", str(keys / "id_ed25519"), "-p", str(port), "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={keys / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=20", "root@127.0.0.1"]


# Run over ssh on the device: its machine and AT_HWCAP (16), which QEMU sets from QEMU_CPU.
_PROBE = ("import json, platform, struct\n"
          "words = open('/proc/self/auxv', 'rb').read()\n"
          "auxv = dict(struct.iter_unpack('QQ', words[:len(words) // 16 * 16]))\n"
          "print(json.dumps({'machine': platform.machine(), 'hwcap': auxv.get(16, 0)}))")
HWCAP_ASIMDDP = 1 << 20


def _wait_for_ssh(directory: Path, port: int, pid: int, timeout: float = 180.0) -> dict:
    deadline, error = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise DeviceError(f"sshd (pid {pid}) exited; see {directory / 'sshd.log'}")
        command = shlex.join([GUEST_PYTHON, "-c", _PROBE])
        probe = subprocess.run(_ssh_args(directory, port) + [command], capture_output=True, text=True, timeout=120)
        if probe.returncode == 0:
            return json.loads(probe.stdout.strip().splitlines()[-1])
        error = probe.stderr.strip()
        time.sleep(2)
    raise DeviceError(f"sshd on 127.0.0.1:{port} did not answer within {timeout:.0f} s: {error}")


def _state_path(directory: Path) -> Path:
    return directory / "state.json"


def read_state(directory: Path) -> dict:
    """The connection facts ``up`` recorded in ``directory`` (``{}`` when it never ran there)."""
    path = _state_path(directory)
    return json.loads(path.read_text()) if path.exists() else {}


def is_running(state: dict) -> bool:
    """Whether the sshd recorded in ``state`` is still running."""
    return bool(state.get("pid")) and _alive(state["pid"])


def running_state(directory: Path) -> dict:
    """The connection facts of the device running from ``directory``.

    Raises:
        DeviceError: It is not up there (the message says to run ``up``).
    """
    state = read_state(directory)
    if not is_running(state):
        raise DeviceError(f"the emulated device is not up in {directory}: run benchmarks/arm64_device.py up")
    return state


def _write_state(directory: Path, state: dict) -> None:
    partial = _state_path(directory).with_suffix(".partial")
    partial.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(partial, _state_path(directory))


def up(directory: Path, port: int, cpu: str = DEFAULT_CPU) -> dict:
    """Brings the device up (building what is missing) and returns its connection facts."""
    directory.mkdir(parents=True, exist_ok=True)
    state = read_state(directory)
    if is_running(state):
        if state.get("cpu") != cpu:
            raise DeviceError(f"already up emulating {state.get('cpu')} (sshd pid {state['pid']}): run `down` first")
        _log(f"already up (sshd pid {state['pid']})")
        return state
    check_host()
    ensure_binfmt()
    rootfs = build_rootfs(directory)
    install_venv(rootfs, fetch_wheels(directory))
    port = port or state.get("port") or _free_port()
    identity = configure_sshd(directory, rootfs, port, cpu)
    mounts = sorted(set(state.get("mounts", [])) | set(mount_pseudo_fs(rootfs, write_cpuinfo(directory, cpu))))
    with open(directory / "sshd.log", "ab") as log:
        sshd = subprocess.Popen(["chroot", str(rootfs), "/usr/sbin/sshd", "-D", "-e", "-f", SSHD_CONFIG],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "QEMU_CPU": cpu})
    state = {"pid": sshd.pid, "port": port, "mounts": mounts, "url": f"ssh://root@127.0.0.1:{port}",
             "identity": str(identity), "known_hosts": str(directory / "ssh" / "known_hosts"),
             "python": GUEST_PYTHON, "emulated": True, "cpu": cpu, "rootfs": str(rootfs)}
    _write_state(directory, state)
    try:
        answer = _wait_for_ssh(directory, port, sshd.pid)
        if answer["machine"] != "aarch64":
            raise DeviceError(f"the device reports machine {answer['machine']!r}, not aarch64")
        if bool(answer["hwcap"] & HWCAP_ASIMDDP) != ("asimddp" in CPUS[cpu][3]):
            raise DeviceError(f"the device's CPU features (AT_HWCAP {answer['hwcap']:#x}) are not {cpu}'s: "
                              "QEMU_CPU did not reach the ssh session")
    except (DeviceError, subprocess.TimeoutExpired):
        down(directory)  # nothing half-started stays behind
        raise
    return state


def down(directory: Path) -> None:
    """Stops the sshd that ``up`` started (by pid) and unmounts what it mounted."""
    state = read_state(directory)
    pid = state.get("pid")
    if is_running(state):
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        _log(f"stopped sshd (pid {pid})")
    for point in reversed(state.get("mounts", [])):
        if point in _mounts_under(Path(point)):
            _run(["umount", point], f"umount {point}")
    if state:
        state.update(pid=None, mounts=[])
        _write_state(directory, state)


def main(argv: list[str] | None = None) -> int:
    """``up`` / ``down`` / ``status``; prints the connection facts as JSON on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--dir", type=Path, default=default_dir(), help="cache and state folder")
    parser.add_argument("--port", type=int, default=0, help="sshd port on 127.0.0.1 (default: a free one, kept)")
    parser.add_argument("--cpu", choices=sorted(CPUS), default=DEFAULT_CPU, help="the CPU QEMU emulates (QEMU_CPU)")
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            state = up(args.dir, args.port, args.cpu)
            print(json.dumps(state, indent=2))
            print(f"{state['url']}  --identity {state['identity']}  --python {state['python']}", file=sys.stderr)
        elif args.action == "down":
            down(args.dir)
        else:
            state = read_state(args.dir)
            running = is_running(state)
            print(json.dumps({**state, "running": running}, indent=2))
            return 0 if running else 3
    except DeviceError as error:
        print(f"arm64_device: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
