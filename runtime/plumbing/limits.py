"""Sane limits for sizes read from untrusted headers (`.npy`, checkpoints), checked before
anything is allocated."""

from __future__ import annotations

import os

__all__ = ["format_bytes", "memory_limit_bytes"]


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
