"""One tolerance table per dtype, and the devices the suite runs on.

A runtime result `a` matches the spec's float64 result `e` elementwise when
    |a − e| ≤ atol + rtol·|e|          (every element; never a sum, never scaled by the size)
The spec always runs in float64 on the *same* inputs the runtime saw (inputs are first rounded
to the runtime's dtype), so the table measures only the runtime's arithmetic, not input rounding.
A record may override a dtype's entry; an override must carry its reason (checked by a test).
A record may also leave some plans out for a dtype: a `Skip(predicate, reason)`, whose reason is
required; `a | b` leaves out what either leaves out and joins the two reasons.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Tol:
    """Elementwise tolerance |a − e| ≤ atol + rtol·|e|; `reason` is required for overrides."""

    rtol: float
    atol: float
    reason: str = ""


@dataclass(frozen=True)
class Skip:
    """Plans a record leaves out for a dtype: `predicate(plan, dtype)` is True for a plan that is
    not checked in that dtype, and `reason` (required) says why, in terms of the conditioning."""

    predicate: Callable[[Any, str], bool]
    reason: str

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ValueError("a Skip needs its reason")

    def __call__(self, plan: Any, dtype: str) -> bool:
        return bool(self.predicate(plan, dtype))

    def __or__(self, other: Skip) -> Skip:
        """Leaves out what either leaves out; the reasons are joined by "; "."""
        return Skip(lambda plan, dtype: self(plan, dtype) or other(plan, dtype),
                    f"{self.reason}; {other.reason}")


TOLERANCES: dict[str, Tol] = {
    # float64 runtime vs float64 spec: the same formulas in the same order, so only the last few
    # ulps differ (torch vs NumPy kernels, multiply-adds, summation order in convolutions).
    "float64": Tol(rtol=1e-12, atol=1e-12),
    # float32: ~2^-24 per operation, a few dozen operations deep (a conv net, a step).
    "float32": Tol(rtol=2e-5, atol=2e-5),
    # bfloat16: 8 significant bits (2^-9 ≈ 2e-3 per rounding); model layers round each output.
    "bfloat16": Tol(rtol=3e-2, atol=3e-2),
}

DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
}


def devices() -> list[str]:
    """The devices to test: $DIFFSPEC_DEVICES (comma separated, e.g. "cpu,cuda"), else the CPU
    and, when torch sees one, CUDA."""
    chosen = os.environ.get("DIFFSPEC_DEVICES", "").strip()
    if chosen:
        return [d.strip() for d in chosen.split(",") if d.strip()]
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def device_available(device: str) -> bool:
    """Whether torch can allocate on `device`."""
    try:
        torch.zeros(1, device=device)
    except (RuntimeError, AssertionError):
        return False
    return True
