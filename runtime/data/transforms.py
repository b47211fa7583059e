"""The data transforms of `spec.data`, batched: the [−1, 1] model range and the training pair.

Stored images are in [0, 1]; the model sees 2·x − 1 ∈ [−1, 1] (DDPM §4). The training pair
carries the time t/T as a constant last channel.
"""

from __future__ import annotations

from torch import Tensor

from runtime.core import work_dtype
from runtime.forward import q_sample
from runtime.model import append_time_channel
from runtime.schedule import Schedule, TimeIndex, time_of_index


def to_diffusion_range(x01: Tensor) -> Tensor:
    """x = 2·x01 − 1 (no clipping). Shapes: (…) -> (…)."""
    return 2 * x01 - 1


def from_diffusion_range(x: Tensor) -> Tensor:
    """x01 = (x + 1)/2 (no clipping). Shapes: (…) -> (…)."""
    return (x + 1) / 2


def noised_sample_from_eps(
    sched: Schedule, x0: Tensor, t: TimeIndex, eps: Tensor
) -> tuple[Tensor, Tensor]:
    """(append_time_channel(q_sample(sched, x0, t, ε), t/T), ε)   (DDPM Algorithm 1, line 5).
    Shapes: x0, eps (B, C, H, W); t int or (B,) -> ((B, C+1, H, W), (B, C, H, W))."""
    x_t = q_sample(sched, x0, t, eps)
    return append_time_channel(x_t, time_of_index(t, sched.T, dtype=work_dtype(x0.dtype))), eps


__all__ = ["from_diffusion_range", "noised_sample_from_eps", "to_diffusion_range"]
