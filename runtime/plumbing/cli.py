"""One error convention for every `python -m runtime.*` command.

A mistake the user can fix (a wrong path, a bad flag, a malformed file) ends the command with
ONE line on stderr, `error: <what was wrong, the value seen, what is expected>`, and exit
status 2 (argparse's own status for bad usage). Ctrl-C ends it with `interrupted` and status 130
(128 + SIGINT). A bug still gives a traceback: only the exception types below are caught.

    from runtime.plumbing.cli import ArgumentParser, UserError, fail, run_main

    def main(argv=None):
        args = ArgumentParser(prog="python -m runtime.train").parse_args(argv)
        if args.steps <= 0:
            fail(f"--steps must be positive; got {args.steps}")
        ...

    if __name__ == "__main__":
        run_main(main)

Caught and printed as one line: `UserError` (and its subclasses, e.g. `runtime.data.DataError`),
`OSError` (unwritable folders, full disks: the OS message and the file name), the usage errors
of `ArgumentParser` (which raise `UserError` instead of printing the usage block), and any
exception types passed as `run_main(main, user_errors=(ConfigError, CheckpointError))`.
A command that wants to save state on Ctrl-C (the trainer's checkpoint) catches
`KeyboardInterrupt` itself and re-raises it; `run_main` then exits with 130. SIGTERM (`kill`, a
batch scheduler, torchrun stopping its workers) is Ctrl-C for as long as `main` runs: it raises
`KeyboardInterrupt` wherever it lands, so every phase cleans up the same way (temporary files
removed, the run folder's lock released) and exits with 130. Running out of memory (a
MemoryError, or torch's RuntimeError from an allocator that refused: the machine's limit, as
the sizes read from files and the memory a request needs are checked before anything is
allocated) is one line `error: out of memory ...` and status 1. Every command's --help ends
with `EXIT_STATUS_HELP`.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn

EXIT_OK = 0
EXIT_FAILURE = 1  # a failure of the program itself (Python's status for an uncaught exception)
EXIT_USER_ERROR = 2  # bad input or usage (argparse's convention)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention for Ctrl-C

# The epilog of every command's --help (docs/cli.md, "Faults and exit statuses", says the same).
EXIT_STATUS_HELP = """\
exit status:
  0    success
  1    a failure of the program itself: a bug (with a traceback), or out of memory
       (one line `error: out of memory ...`)
  2    bad usage or bad input, one line `error: ...` on stderr and nothing written: a bad
       flag, a missing, malformed, damaged or oversized file, a request larger than this
       machine's memory (with the estimate), a result that is not finite, a full disk or an
       unwritable folder (the file named), a run folder in use by another trainer
  130  interrupted by Ctrl-C or SIGTERM, in any phase; no partial file is left (runtime.train
       saves a checkpoint first when stopped between steps, and prints how to resume)"""

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STATUS_HELP",
    "EXIT_USER_ERROR",
    "ArgumentParser",
    "ConfigError",
    "UserError",
    "fail",
    "one_line",
    "resolve_device",
    "run_main",
    "sigterm_as_ctrl_c",
]


class UserError(Exception):
    """An error the user can act on. Its message is printed as `error: <message>`, exit 2."""


class ConfigError(UserError, ValueError):
    """A command-line value that cannot work; the message is one line a user can act on."""


def fail(message: str) -> NoReturn:
    """Stop the command with a user error: `error: <message>` on stderr, exit status 2."""
    raise UserError(message)


def resolve_device(requested: str):
    """The torch.device of a `--device` choice (auto, cpu or cuda): auto is cuda when available;
    cuda without a usable GPU is a `ConfigError` (one line, exit 2)."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but torch.cuda.is_available() is False "
                          "(use --device cpu or auto)")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def one_line(message: object) -> str:
    """`message` as a single line (newlines and runs of spaces collapsed)."""
    return " ".join(str(message).split())


class ArgumentParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose usage errors raise `UserError` (one line, exit 2).

    Sub-parsers made with `add_subparsers()` inherit the behaviour.
    """

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message} (see --help)")


def _describe_os_error(exc: OSError) -> str:
    if exc.strerror and exc.filename is not None:
        return f"{exc.strerror}: {exc.filename}"
    return str(exc) or type(exc).__name__


def _is_out_of_memory(exc: BaseException) -> bool:
    """A MemoryError, or torch's error from an allocator that refused (CPU: a RuntimeError
    saying "can't allocate memory"; CUDA: torch.OutOfMemoryError, a RuntimeError too)."""
    return isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and (
        type(exc).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(exc)))


def _out_of_memory_line(exc: BaseException) -> str:
    asked = re.search(r"tried to allocate (\d+) bytes", str(exc))
    if asked:
        from runtime.plumbing.limits import format_bytes

        detail = f" (an allocation of {format_bytes(int(asked[1]))} was refused)"
    elif isinstance(exc, MemoryError):
        detail = f" ({one_line(exc)})" if str(exc) else ""
    else:
        detail = f" ({one_line(str(exc).splitlines()[0])[:200]})"
    return f"error: out of memory{detail}; try a smaller input or --batch-size"


def _raise_keyboard_interrupt(signum, frame) -> NoReturn:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the body, as Ctrl-C does (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def run_main(
    main: Callable[[Sequence[str] | None], int | None],
    argv: Sequence[str] | None = None,
    user_errors: tuple[type[Exception], ...] = (),
) -> NoReturn:
    """Run `main(argv)` and exit: its return value (None → 0), 2 on a user error, 130 on Ctrl-C
    or SIGTERM, 1 with one line when out of memory (any other exception: Python's traceback and
    status 1).

    User errors are `UserError`, `OSError` and the extra exception types in `user_errors`
    (e.g. a module's own `ConfigError`); each is printed as `error: <message>` on one line.
    """
    with sigterm_as_ctrl_c():
        try:
            code = main(argv)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
        except (UserError, *user_errors) as exc:
            print(f"error: {one_line(exc) or type(exc).__name__}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except OSError as exc:
            print(f"error: {one_line(_describe_os_error(exc))}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except (MemoryError, RuntimeError) as exc:
            if not _is_out_of_memory(exc):
                raise
            print(_out_of_memory_line(exc), file=sys.stderr)
            sys.exit(EXIT_FAILURE)
    sys.exit(0 if code is None else code)
