"""Data transforms: the [-1, 1] model range and the (noised input, target) training pair.

Stored images are in [0, 1]; the model sees 2·x − 1 ∈ [-1, 1] (DDPM §4: "scaled linearly to
[-1, 1]"). The training pair carries the time as a constant last channel, with the one time
convention of `spec/__init__.py` (t / T).
"""

import numpy as np
from jaxtyping import Float

from spec.core import Index
from spec.forward import q_sample
from spec.model import append_time_channel
from spec.schedule import VPSchedule, time_of_index

__all__ = ["to_diffusion_range", "from_diffusion_range", "noised_sample_from_eps"]


def to_diffusion_range(x01: Float[np.ndarray, "*shape"]) -> Float[np.ndarray, "*shape"]:
    """Map [0, 1] to [-1, 1] (DDPM §4).

    Formula: x = 2·x01 − 1 (no clipping).
    Shapes: (*shape) -> (*shape).
    """
    return 2 * x01 - 1


def from_diffusion_range(x: Float[np.ndarray, "*shape"]) -> Float[np.ndarray, "*shape"]:
    """Map [-1, 1] back to [0, 1], the inverse of `to_diffusion_range`.

    Formula: x01 = (x + 1) / 2 (no clipping).
    Shapes: (*shape) -> (*shape).
    """
    return (x + 1) / 2


def noised_sample_from_eps(
    sched: VPSchedule,
    x0: Float[np.ndarray, "*batch c h w"],
    t: Index,
    eps: Float[np.ndarray, "..."],
) -> tuple[Float[np.ndarray, "*batch c+1 h w"], Float[np.ndarray, "*batch c h w"]]:
    """The training pair (input with time channel, target noise).

    Formula: input = append_time_channel(q_sample(sched, x0, t, ε), t/T); target = ε
    (DDPM Algorithm 1, line 5, with the time given as a constant channel).
    Shapes: x0 (C,H,W) or (N,C,H,W), eps same -> ((…, C+1, H, W), (…, C, H, W)).
    """
    x_t = q_sample(sched, x0, t, eps)
    return append_time_channel(x_t, time_of_index(t, sched.T)), eps
