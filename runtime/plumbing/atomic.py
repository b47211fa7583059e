"""Atomic file writes: a reader of the target path sees the old file or the new one, never half.

`atomic_write(path, write)` hands `write` a binary handle on a temporary file in the target's
folder, then renames it over `path` (`os.replace`, atomic on POSIX and Windows). On any failure,
Ctrl-C included, the temporary file is removed and `path` is left as it was. `durable=True` also
fsyncs the file and its folder, so the new content survives a power cut (checkpoints, data).

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
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "current_umask", "fsync_folder", "is_leftover", "make_temp_folder",
           "remove_leftovers", "temp_path"]

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


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object],
                 durable: bool = False) -> None:
    """Write `path` through `write(handle)` so that it appears complete or not at all."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    while True:
        tmp_name = temp_path(path)
        try:
            # 0o666 less the umask: the mode an ordinary new file gets.
            fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
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
