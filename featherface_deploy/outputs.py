"""The output rules every command that writes follows, in one place: :func:`claim_output`.

A claim on an output (a file, a folder, plus companions such as a model's sidecar):

1. **checks it before any work** (:func:`~featherface_deploy.file_writing.check_output_path`): never one of
   the inputs, a sidecar of an input, or a path inside an input folder; an existing output only with
   ``exist_ok``; its folder writable;
2. **locks it**: ``.<name>.lock`` next to it, held with ``flock`` for as long as the claim lives, so a second
   writer of the same output fails at once with one line (the kernel drops the lock when a process dies,
   so a killed run never blocks the next one);
3. **removes stale staging** of the same output (what a run killed with ``SIGKILL`` left behind);
4. gives a **staging folder** next to the output, where the caller writes everything (a disk that fills
   up fills up there, before anything is published);
5. :meth:`OutputClaim.publish` moves the staged files into place **as a unit**: all of them or, when one
   rename fails, none (those already moved are rolled back, a replaced file restored). Without
   ``exist_ok`` the publication is exclusive (a hard link, or a rename to a missing folder), so a file
   that appeared meanwhile is never replaced;
6. on exit the staging folder and the lock are removed, on errors, ``Ctrl-C`` and (in the CLI, which
   turns ``SIGTERM`` into :class:`SystemExit`) ``kill`` alike.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from featherface_deploy.contract import sidecar_path
from featherface_deploy.errors import OutputError
from featherface_deploy.file_writing import check_output_path, current_umask, is_empty_folder, mode_for

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the lock is an O_EXCL file there
    fcntl = None

STAGING_MARK = ".featherface-staging-"
# What os.link raises on a file system without hard links (then the name is reserved with O_EXCL instead).
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EXDEV, errno.EMLINK}


def lock_path(path: str | Path) -> Path:
    """The lock file of an output (``out.onnx`` → ``.out.onnx.lock``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def expanded_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """The inputs plus the sidecar of each input file (a sidecar is part of its model)."""
    found = []
    for source in inputs:
        source = Path(source)
        found.append(source)
        if not source.is_dir():
            found.append(sidecar_path(source))
    return found


class OutputClaim:
    """An output being written: checked, locked, staged, then published as a unit (see the module docstring).

    Use it as a context manager::

        with claim_output(out, inputs=[model], exist_ok=False, companions=[sidecar]) as claim:
            write(claim.staged(out)); write(claim.staged(sidecar))
            claim.publish()

    Attributes:
        path: The output.
        companions: Files published with it.
        staging: The staging folder (inside the output's folder).
    """

    def __init__(self, path: str | Path, inputs: Iterable[str | Path] = (), exist_ok: bool = False,
                 companions: Sequence[str | Path] = (), folder: bool = False) -> None:
        self.path = Path(path)
        self.companions = [Path(c) for c in companions]
        self.exist_ok = exist_ok
        self.folder = folder
        check_output_path(self.path, expanded_inputs(inputs), exist_ok, self.companions, folder)
        self.staging: Path | None = None
        self._lock: int | None = None

    def __enter__(self) -> "OutputClaim":
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"cannot create the folder {parent}: {error.strerror}") from error
        self._lock = _acquire(lock_path(self.path), self.path)
        try:
            self._remove_stale_staging()
            self.staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name}{STAGING_MARK}", dir=parent))
        except OSError as error:
            self._release()
            raise OutputError(f"cannot write {self.path}: {error.strerror}") from error
        return self

    def __exit__(self, *exc) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
        self._release()

    def staged(self, target: str | Path | None = None) -> Path:
        """Where to write ``target`` (the output by default, or a companion) before :meth:`publish`."""
        return self.staging / Path(target or self.path).name

    def publish(self) -> None:
        """Moves the output and its companions from staging into place, all or none.

        Raises:
            OutputError: A target appeared meanwhile (without ``exist_ok``), or a rename failed; nothing
                of this claim is left published, and replaced files are restored.
        """
        done: list[tuple[Path, Path | None]] = []
        try:
            for target in (self.path, *self.companions):
                done.append((target, self._move_in(self.staged(target), target)))
        except BaseException:
            for target, retired in reversed(done):
                _roll_back(target, retired)
            raise

    def _move_in(self, staged: Path, target: Path) -> Path | None:
        """Publishes one file or folder; returns where a replaced one was kept (for a roll-back), if any."""
        if not staged.exists():
            raise OutputError(f"cannot write {target}: nothing was staged for it")
        retired = None
        try:
            if (target.exists() or target.is_symlink()) and not (staged.is_dir() and is_empty_folder(target)):
                if not self.exist_ok:
                    raise OutputError(f"{target} appeared while it was being written (another program?); "
                                      "pass --exist-ok to replace it")
                retired = self.staging / f".retired-{target.name}"
                os.rename(target, retired)
            if staged.is_dir():
                honour_umask(staged)
                os.rename(staged, target)
            else:
                _link_exclusive(staged, target)
        except OSError as error:
            if retired is not None:
                os.rename(retired, target)
            raise OutputError(f"cannot write {target}: {error.strerror or error}") from error
        return retired

    def _remove_stale_staging(self) -> None:
        prefix = f".{self.path.name}{STAGING_MARK}"
        for entry in self.path.parent.iterdir():
            if entry.name.startswith(prefix):
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)

    def _release(self) -> None:
        if self._lock is not None:
            lock_path(self.path).unlink(missing_ok=True)
            os.close(self._lock)
            self._lock = None


def claim_output(path: str | Path, inputs: Iterable[str | Path] = (), exist_ok: bool = False,
                 companions: Sequence[str | Path] = (), folder: bool = False) -> OutputClaim:
    """Checks an output now (before any work) and returns its claim, to enter when writing (see :class:`OutputClaim`).

    Args:
        path: The output file or folder.
        inputs: What the command reads: files (their sidecars count too) and folders.
        exist_ok: Allow replacing an existing output (CLI ``--exist-ok``).
        companions: Files published together with ``path`` (a model's sidecar).
        folder: ``path`` is a folder output.

    Raises:
        OutputError: The output breaks a rule (one line naming it and the fix).
    """
    return OutputClaim(path, inputs, exist_ok, companions, folder)


def write_output(path: str | Path, data: bytes | str, inputs: Iterable[str | Path] = (),
                 exist_ok: bool = False) -> Path:
    """Writes one file under the output rules (checked, locked, exclusive unless ``exist_ok``, atomic).

    Raises:
        OutputError: The output breaks a rule or cannot be written.
    """
    claim = claim_output(path, inputs, exist_ok)
    with claim:
        staged = claim.staged()
        try:
            staged.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
            os.chmod(staged, mode_for(claim.path))
        except OSError as error:
            raise OutputError(f"cannot write {claim.path}: {error.strerror}") from error
        claim.publish()
    return claim.path


def _acquire(lock: Path, output: Path) -> int:
    """Takes the output's lock (``flock`` on ``lock``), or fails with one line when another writer holds it."""
    busy = OutputError(f"{output} is being written by another process right now (lock {lock.name}); "
                       "wait for it to finish, or choose another output")
    while True:
        try:
            if fcntl is None:  # pragma: no cover - Windows
                return os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            handle = os.open(lock, os.O_CREAT | os.O_WRONLY, 0o666)
        except FileExistsError as error:  # pragma: no cover - Windows
            raise busy from error
        except OSError as error:
            raise OutputError(f"cannot write {output}: {error.strerror}") from error
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(handle)
            if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise busy from error
            raise OutputError(f"cannot lock {output}: {error.strerror}") from error
        try:  # the holder before us may have removed the file after we opened it: lock the one on disk
            if os.stat(lock).st_ino == os.fstat(handle).st_ino:
                return handle
        except FileNotFoundError:
            pass
        os.close(handle)


def honour_umask(folder: Path) -> None:
    """Gives a folder and everything in it the modes a plain ``mkdir``/``open`` would (0777/0666 minus the umask).

    Tools that build folders (``tempfile``, coremltools) leave 0700/0600 entries; executable files keep
    their execute bits.
    """
    umask = current_umask()
    os.chmod(folder, 0o777 & ~umask)
    for root, folders, files in os.walk(folder):
        for name in folders:
            os.chmod(os.path.join(root, name), 0o777 & ~umask)
        for name in files:
            entry = os.path.join(root, name)
            executable = os.stat(entry).st_mode & 0o111
            os.chmod(entry, (0o777 if executable else 0o666) & ~umask)


def _link_exclusive(staged: Path, target: Path) -> None:
    """Moves a staged file to a target that must not exist: a hard link, which fails if it does."""
    try:
        os.link(staged, target)
    except OSError as error:
        if error.errno not in _NO_LINKS:
            raise
        # No hard links on this file system: reserve the name exclusively, then rename over the reservation.
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.replace(staged, target)
        return
    staged.unlink()


def _roll_back(target: Path, retired: Path | None) -> None:
    """Undoes one publication: removes what was moved in and restores what it replaced."""
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target, ignore_errors=True)
    else:
        target.unlink(missing_ok=True)
    if retired is not None:
        os.rename(retired, target)
