"""Every file the project writes goes through here: output-path checks and atomic writes.

The rules (also in the README):

- A file is written to a temporary file in the same folder and renamed over
  the target, so an interrupted write never leaves a partial file. The new
  file gets the permissions a plain ``open(path, "w")`` would give it: the
  existing file's mode when it replaces one, else ``0o666`` minus the umask.
- :func:`check_output_path` runs *before* any expensive work: the output
  must not be one of the inputs (paths resolved, symlinks and hard links
  included), must not be a folder, must not exist unless the caller allows
  replacing it, and its folder must be writable — so a bad ``-o`` fails in
  a second with one line instead of after a 40-second export.
- OS errors become :class:`~featherface_deploy.errors.OutputError` with one
  line naming the file.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

from featherface_deploy.errors import OutputError

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """Returns the process umask without changing it for other threads.

    Linux exposes it in ``/proc/self/status``; elsewhere it is read with the
    classic set-and-restore under a lock.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def mode_for(path: Path) -> int:
    """The mode a plain ``open(path, "w")`` gives: the existing file's, else 0666 minus the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~current_umask()


def _os_error(path: Path, action: str, error: OSError) -> OutputError:
    reason = error.strerror or type(error).__name__
    return OutputError(f"cannot {action} {path}: {reason}")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file and a rename, with umask-honouring permissions.

    Creates missing parent folders. An interrupted write never leaves a
    partial file at ``path``.

    Raises:
        OutputError: The folder cannot be created or written, or ``path`` is a folder.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise _os_error(path, "write", error) from error
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            # mkstemp creates 0600; give the file the mode a normal write would.
            os.fchmod(stream.fileno(), mode_for(path))
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise _os_error(path, "write", error) from error
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Writes UTF-8 ``text`` (``\\n`` line ends) atomically; see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def same_file(first: str | Path, second: str | Path) -> bool:
    """Whether two paths name the same file: resolved (symlinks followed), or the same inode (hard links)."""
    first, second = Path(first), Path(second)
    if first.resolve() == second.resolve():
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False


def is_empty_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder with nothing in it (a folder output may take its place without ``--exist-ok``)."""
    path = Path(path)
    return path.is_dir() and not path.is_symlink() and next(path.iterdir(), None) is None


def check_writable(path: str | Path, folder: bool = False) -> None:
    """Checks that ``path`` could be written now, without writing it.

    The nearest existing ancestor must be a folder in which a file can be
    created (checked by creating and removing a temporary file there, which
    is the only test that tells the truth on read-only mounts and for root).

    Args:
        path: The file (or, with ``folder``, the folder) to be written.
        folder: ``path`` is a folder output (``.mlpackage``, a recipe): an existing folder is fine.

    Raises:
        OutputError: ``path`` is a folder (a file, for a folder output), an ancestor is a file, or the
            folder is not writable.
    """
    path = Path(path)
    if path.is_dir() and not folder:
        raise OutputError(f"cannot write {path}: it is a folder; give a file name")
    if folder and path.exists() and not path.is_dir():
        raise OutputError(f"cannot write the folder {path}: a file of that name exists; remove it or choose "
                          "another output")
    parent = path.parent
    while not parent.exists():
        if parent.is_symlink():
            raise OutputError(f"cannot write {path}: {parent} is a broken symbolic link")
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: {parent} is not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".featherface-write-check.", dir=parent)
    except OSError as error:
        raise _os_error(path, "write", error) from error
    os.close(handle)
    os.unlink(probe)


def check_output_path(path: str | Path, inputs: Iterable[str | Path] = (), exist_ok: bool = False,
                      companions: Iterable[str | Path] = (), folder: bool = False) -> Path:
    """Checks an output path before the work that produces it starts.

    Args:
        path: The file to be written.
        inputs: Files and folders the command reads; the output (and its companions) may be none of them,
            may not be inside an input folder, and a folder output may not contain an input (replacing the
            folder would delete it).
        exist_ok: Allow replacing an existing file (it is then replaced atomically, at the end); an empty
            folder is no obstacle to a folder output.
        companions: Files written together with ``path`` (e.g. its sidecar JSON), checked the same way.
        folder: ``path`` is a folder output (``.mlpackage``, a recipe) rather than a file.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: The output is an input, exists without ``exist_ok``, or cannot be written.
    """
    path = Path(path)
    inputs = [Path(p) for p in inputs]
    for target, is_folder in ((path, folder), *((Path(c), False) for c in companions)):
        for source in inputs:
            if same_file(target, source):
                raise OutputError(f"refusing to write {target}: it is the input {source}; choose another output")
            if is_folder and target.resolve() in source.resolve().parents:
                raise OutputError(f"refusing to write the folder {target}: it holds the input {source}; "
                                  "choose another output")
            if source.is_dir() and source.resolve() in target.resolve().parents:
                raise OutputError(f"refusing to write {target}: it is inside the input folder {source}; "
                                  "choose an output outside it")
        if target.exists() and not exist_ok and target.is_dir() == is_folder and not is_empty_folder(target):
            raise OutputError(f"{target} already exists; pass --exist-ok to replace it (it is replaced only "
                              "after the new file passes its checks)")
        check_writable(target, folder=is_folder)
    return path


def unique_output_names(inputs: Iterable[str | Path], out_dir: str | Path, suffix: str) -> list[Path]:
    """One output path per input in ``out_dir``: unique, predictable, and never an input.

    Input ``…/x.jpg`` gets ``out_dir/x<suffix>``; when an earlier input (in
    the given order) already took that name, or the name is one of the inputs
    themselves, it gets ``x-2<suffix>``, then ``x-3<suffix>``… So
    ``a/x.jpg b/x.jpg a/x.png`` give ``x.png x-2.png x-3.png``.

    Args:
        inputs: Input file paths, in command-line order.
        out_dir: The output folder.
        suffix: The outputs' suffix, with its dot (``.png``).

    Returns:
        The output paths, in the order of ``inputs``.
    """
    inputs = [Path(p) for p in inputs]
    taken: set[str] = set()
    names = []
    for path in inputs:
        counter, name = 1, f"{path.stem}{suffix}"
        while name in taken or any(same_file(Path(out_dir) / name, source) for source in inputs):
            counter += 1
            name = f"{path.stem}-{counter}{suffix}"
        taken.add(name)
        names.append(Path(out_dir) / name)
    return names
