"""Atomic file writes: a reader of the target path sees the old file or the new one, never half.

`atomic_write(path, write)` hands `write` a binary handle on a temporary file in the target's
folder, then renames it over `path` (`os.replace`, atomic on POSIX and Windows). On any failure,
Ctrl-C included, the temporary file is removed and `path` is left as it was. `durable=True` also
fsyncs the file and its folder, so the new content survives a power cut (checkpoints, data).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def current_umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object],
                 durable: bool = False) -> None:
    """Write `path` through `write(handle)` so that it appears complete or not at all."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~current_umask())  # mkstemp makes 0600; use the usual mode
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
