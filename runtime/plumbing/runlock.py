"""One owner per run folder: an exclusive lock held for the whole training run.

    with run_lock(out):          # before --resume reads OUT/checkpoint.pt
        ...train, checkpoint, write artifacts...

`run_lock` takes `fcntl.flock(LOCK_EX | LOCK_NB)` on `OUT/.lock` and writes the holder into it
(`pid=…`, `host=…`, `started=…` ISO 8601 UTC, `command=…`). A second process that finds the folder
locked does not wait: it reads the holder and stops with a `RunLocked` error (a `UserError`: one
line, exit status 2) naming that pid, host and start time.

The lock belongs to the open file, so the kernel drops it when the holder exits in any way,
kill -9 included: a folder left by a killed run can be used again at once. The lock file of a
killed run stays behind with the dead holder's text in it; the next owner simply locks it and
rewrites it. On a normal exit (or an error, or Ctrl-C) the owner deletes the lock file before
it lets go of the lock; a process that opened the old file in that moment notices that the path
now names another file (or none) and tries again, so two processes can never both hold the lock.

Having the lock, the owner removes what interrupted atomic writes left in the folder
(`runtime.plumbing.atomic.remove_leftovers`: only the writer's own temporary-file names).

When the folder does not exist yet it is created for the lock, and removed again at release if
the run wrote nothing into it (a command that fails on bad input leaves nothing behind).

Linux (and other POSIX systems with flock). flock is advisory: it keeps out other diffspec
trainers, not a plain `rm`. On network file systems flock may not be shared between hosts.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from runtime.plumbing.atomic import remove_leftovers, signals_deferred
from runtime.plumbing.cli import UserError

LOCK_NAME = ".lock"

__all__ = ["LOCK_NAME", "RunLocked", "read_holder", "run_lock"]


class RunLocked(UserError):
    """The run folder is locked by another process (one line: the folder and the holder)."""


def _holder_text() -> str:
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    command = " ".join(["python", *sys.argv])[:200].replace("\n", " ")
    return (f"pid={os.getpid()}\nhost={socket.gethostname()}\nstarted={started}\n"
            f"command={command}\n")


def read_holder(text: str) -> dict[str, str]:
    """The `key=value` lines of a lock file as a dict (unknown or missing keys are ignored)."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _describe_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        text = ""
    fields = read_holder(text)
    if "pid" not in fields:  # the holder has the lock but has not written its name yet
        return "another process (it has not recorded its pid yet)"
    return (f"pid {fields['pid']} on host {fields.get('host', '?')}, started "
            f"{fields.get('started', '?')}")


def _mkdirs(folder: Path) -> list[Path]:
    """Create `folder` and missing parents; return the folders created, innermost first."""
    missing = []
    p = folder.absolute()
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            pass
    return missing


def _acquire(path: Path) -> int:
    """An open descriptor of `path` holding its exclusive flock; raises RunLocked if taken."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            holder = _describe_holder(fd)
            os.close(fd)
            raise RunLocked(
                f"run folder {path.parent} is in use by {holder} (lock file {path}); wait for "
                "that run to end, or use another --out") from None
        # The previous owner may have deleted the file between our open and our lock: then we
        # hold a lock on a file nobody else will open. Only the file the path names counts.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def run_lock(out: str | os.PathLike, say: Callable[[str], None] | None = print
             ) -> Iterator[Path]:
    """Hold `OUT/.lock` exclusively for the body; remove interrupted writes' leftovers first.

    Raises `RunLocked` when another process holds it, `UserError` when the folder cannot be
    created or locked. `say` reports the leftovers removed (None: silent). Yields the folder.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    try:
        created = _mkdirs(out)
    except OSError as exc:
        raise UserError(f"--out {out} is not writable ({exc.strerror or exc})") from None
    path = out / LOCK_NAME
    fd = None
    try:
        try:
            fd = _acquire(path)
            os.ftruncate(fd, 0)
            os.pwrite(fd, _holder_text().encode(), 0)
        except OSError as exc:
            raise UserError(f"--out {out} is not writable: cannot lock {path} "
                            f"({exc.strerror or exc})") from None
        removed = remove_leftovers(out)
        if removed and say is not None:
            say(f"removed {len(removed)} leftover(s) of interrupted writes in {out}: "
                + ", ".join(p.name for p in removed))
        yield out
    finally:
        with signals_deferred():  # a second Ctrl-C or SIGTERM must not leave the lock file
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.unlink(path)  # still holding the lock: nobody else owns this file
                os.close(fd)
            for d in created:  # innermost first; only folders this call made, and only if empty
                try:
                    d.rmdir()
                except OSError:
                    break
