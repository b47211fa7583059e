"""Sane limits, checked before anything is allocated: for sizes read from untrusted headers
(`.npy`, checkpoints) and for the memory a command's request needs (`check_memory`).

The request estimates are lower bounds: they count the tensors a computation certainly holds at
once (float32 images, the network's widest activation, the schedule's tables), not the
allocator's overhead, so a request refused here could never have run; one that passes may still
run out of memory, which `runtime.plumbing.cli.run_main` reports as one line (status 1).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from runtime.plumbing.cli import UserError

__all__ = ["FLOAT32_BYTES", "check_memory", "format_bytes", "memory_limit_bytes",
           "sampling_bytes", "training_step_bytes"]

FLOAT32_BYTES = 4


def memory_limit_bytes() -> int:
    """The most bytes one array or file read into memory may claim: this machine's physical
    memory (POSIX `sysconf`; 64 GiB where it cannot be read)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 64 << 30


def format_bytes(n: int) -> str:
    """`n` bytes for people: 238.4 GiB, 3.0 KiB, 17 bytes."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"


def sampling_bytes(n: int, image_shape: Sequence[int], hidden: int) -> int:
    """At least what drawing n images in one batch holds at once: x_t, x̂0, the network's output
    and the next x (4 float32 images each) and one activation of the network (hidden channels).
    Shapes: image_shape (C, H, W)."""
    C, H, W = (int(v) for v in image_shape)
    return int(n) * FLOAT32_BYTES * (4 * C * H * W + int(hidden) * H * W)


def training_step_bytes(batch: int, image_shape: Sequence[int], hidden: int) -> int:
    """At least what one training step of `batch` images holds at once: x0, ε, x_t and the
    output (4 float32 images each), one activation of the network and its gradient."""
    C, H, W = (int(v) for v in image_shape)
    return int(batch) * FLOAT32_BYTES * (4 * C * H * W + 2 * int(hidden) * H * W)


def check_memory(request: str, needed: int, what: str) -> None:
    """Refuse `request` (the flag and value, e.g. "--n 100000") with one line (UserError, exit
    status 2) when the estimate `needed` exceeds this machine's memory; `what` says what the
    estimate counts."""
    limit = memory_limit_bytes()
    if needed > limit:
        raise UserError(f"{request} needs at least {format_bytes(needed)} of memory ({what}), "
                        f"more than this machine's {format_bytes(limit)}; ask for less")
