"""The learning rate of each optimiser step: constant, or linear warm-up then cosine decay.

    factor(s) = w(s) · d(s),  s = 0, …, S − 1 the index of the update, S = --steps
    w(s) = min(1, (s + 1) / W)              linear warm-up over W = --warmup-steps (1 when W = 0)
    d(s) = 1                                 constant
    d(s) = ½ (1 + cos(π s / S))              cosine (Loshchilov & Hutter 2017, SGDR Eq. 5 with
                                             η_min = 0 and one cycle of S steps)

lr(s) = --lr · factor(s). A function of the step alone, so a resumed run takes the same rates as
an uninterrupted one (with cosine, only when --steps is unchanged: the decay spans --steps).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from runtime.plumbing.config import LR_SCHEDULES

if TYPE_CHECKING:
    import torch


def lr_factor(step: int, total: int, schedule: str, warmup: int) -> float:
    """factor(s) above. Shapes: ints -> float in (0, 1]."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    if not 0 <= step < total or warmup < 0:
        raise ValueError(f"need 0 <= step < total and warmup >= 0, got step {step}, total "
                         f"{total}, warmup {warmup}")
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    decay = 1.0 if schedule == "constant" else 0.5 * (1.0 + math.cos(math.pi * step / total))
    return warm * decay


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


__all__ = ["LR_SCHEDULES", "lr_factor", "set_lr"]
