"""Atomic file writes: a reader of the target path sees the old file or the new one, never half.

`atomic_write(path, write)` hands `write` a binary handle on a temporary file in the target's
folder, then renames it over `path` (`os.replace`, atomic on POSIX and Windows). On any failure,
Ctrl-C included, the temporary file is removed and `path` is left as it was. `durable=True` also
fsyncs the file and its folder, so the new content survives a power cut (checkpoints, data).
Creating the temporary file and removing it run with Ctrl-C and SIGTERM deferred
(`signals_deferred`), so no signal lands between the file's creation and the code that removes
it. An OS error without a file name (a full disk: `[Errno 28] No space left on device`) is
raised again naming `path`.

A process killed outright (kill -9, a power cut) cannot remove its temporary file. Its name is
`.<target>.<pid>-<8 hex>.partial` (`temp_path`; a staging folder, `.partial-folder`), a pattern
this module alone writes, so `remove_leftovers(folder)` can recognise such leftovers and delete
them, and nothing else: it skips any whose writer (the pid in the name) is still alive on this
machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "current_umask", "fsync_folder", "is_leftover", "make_temp_folder",
           "remove_leftovers", "signals_deferred", "temp_path"]

TEMP_SUFFIX = ".partial"
FOLDER_SUFFIX = ".partial-folder"
# .<target name>.<writer pid>-<8 lowercase hex>.partial (a file) or .partial-folder (a folder)
_TEMP_NAME = re.compile(
    r"^\.(?P<target>.+)\.(?P<pid>[0-9]+)-[0-9a-f]{8}\.partial(?P<folder>-folder)?$")


def current_umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_path(path: Path, folder: bool = False) -> Path:
    """A fresh temporary name for writing `path`: `.<name>.<pid>-<8 hex>.partial` beside it
    (`.partial-folder` for a staging folder)."""
    suffix = FOLDER_SUFFIX if folder else TEMP_SUFFIX
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def is_leftover(name: str) -> bool:
    """Whether `name` is a temporary file (or staging folder) of this module whose writer is
    not running."""
    match = _TEMP_NAME.match(name)
    if match is None:
        return False
    pid = int(match["pid"])
    if pid == os.getpid():
        return False  # one of ours, maybe being written by another thread
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, OSError):
        return False  # a live process of another user (or an unusable pid): leave it
    return False


def remove_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (and staging folders) that interrupted writes left in `folder`
    (not recursive); return their paths. Only names of `temp_path`'s pattern, of the right kind,
    whose writer is gone."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not is_leftover(entry.name):
            continue
        is_folder = entry.name.endswith(FOLDER_SUFFIX)
        if is_folder and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
        elif not is_folder and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def make_temp_folder(path: Path) -> Path:
    """Create a staging folder for `path` beside it (`temp_path(path, folder=True)`, the mode of
    an ordinary new folder); the caller renames it into place or removes it."""
    while True:
        tmp = temp_path(path, folder=True)
        try:
            tmp.mkdir(0o777)  # less the umask
            return tmp
        except FileExistsError:
            continue


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM for the body: a signal arriving meanwhile is recorded,
    and raised again once the handlers in force before are back, so it acts (KeyboardInterrupt,
    a stop request, the default action) just after the body. Python runs signal handlers in the
    main thread only; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, frame: caught.append(signum))
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        for signum in caught:
            signal.raise_signal(signum)


def _create_temp(path: Path) -> tuple[Path, BinaryIO]:
    """A new temporary file for `path` (`temp_path`, 0o666 less the umask), open for writing."""
    while True:
        tmp_name = temp_path(path)
        try:
            fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        return tmp_name, os.fdopen(fd, "wb")


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object],
                 durable: bool = False) -> None:
    """Write `path` through `write(handle)` so that it appears complete or not at all."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    tmp_name = None
    try:
        with signals_deferred():  # the name is known before any signal can act
            tmp_name, handle = _create_temp(path)
        with handle:
            write(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        with signals_deferred():
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    if durable:
        fsync_folder(folder)


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: not every platform can fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
