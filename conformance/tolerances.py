"""One tolerance table per dtype, and the devices the suite runs on.

A runtime result `a` matches the spec's float64 result `e` elementwise when
    |a − e| ≤ atol + rtol·|e|          (every element; never a sum, never scaled by the size)
The spec always runs in float64 on the *same* inputs the runtime saw (inputs are first rounded
to the runtime's dtype), so the table measures only the runtime's arithmetic, not input rounding.
A record may override a dtype's entry; an override must carry its reason (checked by a test).
A record may also leave some plans out for a dtype: a `Skip(predicate, reason)`, whose reason is
required; `a | b` leaves out what either leaves out and joins the two reasons.

Where a formula is ill-conditioned (a difference that cancels, a division by √(1 − ᾱ) near t = 0)
a flat rtol is either too loose to see a coefficient formed in the working dtype or too tight
for honest rounding. There the tolerance is derived from the formula: `conditioned(dtype,
scale)` allows OPS roundings of the working dtype relative to `scale`, the sum of the magnitudes
of the terms the formula adds (divided by what it divides by), plus the rounding of the result
to its dtype (`ROUNDING`, one row per dtype). A record names the formula's scale with
`conditioning=` (its twin in `conformance.conditioning`, called like the spec function); its
float32 and bfloat16 cases are then held to `conditioned` on each case's own inputs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Tol:
    """Elementwise tolerance |a − e| ≤ atol + rtol·|e|; `reason` is required for overrides.
    `atol` is one number, or one per element (`conditioned`)."""

    rtol: float
    atol: float | np.ndarray
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


@dataclass(frozen=True)
class Rounding:
    """Unit roundoffs of a runtime dtype: `work` of the step arithmetic (runtime.core.work_dtype:
    float32 for 16-bit inputs) and `out` of the result, which is returned in the input's dtype;
    `work_floor` and `out_floor`, the smallest subnormals of those dtypes: below them a value
    cannot be held at all (it rounds to 0), whatever its relative precision."""

    work: float
    out: float
    work_floor: float
    out_floor: float


ROUNDING: dict[str, Rounding] = {
    "float64": Rounding(work=2.0**-53, out=2.0**-53, work_floor=2.0**-1074, out_floor=2.0**-1074),
    "float32": Rounding(work=2.0**-24, out=2.0**-24, work_floor=2.0**-149, out_floor=2.0**-149),
    # 8 significant bits, arithmetic in float32
    "bfloat16": Rounding(work=2.0**-24, out=2.0**-8, work_floor=2.0**-149, out_floor=2.0**-133),
}

OPS = 8
"""Roundings a conditioned formula may make relative to its scale: each coefficient is rounded
once from float64 (≤ 3 per formula), each product, sum and the one division once more (≤ 4), and
one to spare. A coefficient formed in the working dtype instead (√(1 − ᾱ) after rounding ᾱ to
float32 near ᾱ = 1) is off by u/(1 − ᾱ), i.e. 2^-24/1e-4 ≈ 6e-4 at t = 1 of a linear schedule:
hundreds of these roundings."""


def conditioned(dtype: str, scale: np.ndarray | float) -> Tol:
    """The tolerance of one formula on given inputs, from its conditioning:
    |a − e| ≤ OPS·(u_work·scale + floor_work) + u_out·|e| + floor_out elementwise, with `scale`
    (float64, the shape of the result) the sum of the magnitudes of the terms the formula adds,
    over the magnitude of what it divides by (for x̂0 of ε: (|x_t| + √(1 − ᾱ)·|ε̂|)/√ᾱ); the
    floors are the dtypes' smallest subnormals (a schedule drawn with β_1 = 2.5e-215 gives
    results near 1e-203, which float32 holds as 0)."""
    r = ROUNDING[dtype]
    scale = np.asarray(scale, dtype=np.float64)
    return Tol(rtol=r.out, atol=OPS * (r.work * scale + r.work_floor) + r.out_floor,
               reason="derived from the formula's conditioning (conformance.tolerances.conditioned)")


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
