"""Ancestral sampling (DDPM): the twins of `spec.ddpm`, batched.

Notation and time convention as in `spec` (spec/__init__.py): the reverse step at time t ∈ {1..T}
maps x_t → x_{t−1}; the model is fed t/T. The step arithmetic runs in float64/float32 (float32 for 16-bit inputs) with
coefficients from the schedule's float64 tables; results come back in x_t's dtype.
Shapes: x_t, z (B, C, H, W); t an int or a (B,) LongTensor; noise (T, B, C, H, W).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter

import torch
from torch import Tensor
from tqdm.auto import tqdm

from runtime.core import EpsModel, decreasing_grid, work_dtype
from runtime.forward import q_posterior_mean_variance
from runtime.prediction import denoise
from runtime.schedule import Schedule, Table, TimeIndex, check_step_time

VARIANCES: dict[str, Callable[[Schedule], Table]] = {
    "fixed_small": attrgetter("sqrt_beta_tilde"),  # σ_t = √β̃_t (DDPM §3.2)
    "fixed_large": attrgetter("sqrt_beta_large"),  # σ_t = √β_t, 0 at t = 1 (DDPM §3.2, Algorithm 2)
}
"""The σ_t table of each of DDPM §3.2's fixed reverse variances (the names of spec.ddpm.VARIANCES)."""


def x0_pred(sched: Schedule, model: EpsModel, x_t: Tensor, t: TimeIndex) -> Tensor:
    """x̂0 of the model at (x_t, t), unclipped: `runtime.prediction.denoise(...)[0]`; for an
    ε-model (x_t − √(1 − ᾱ_t)·ε̂(x_t, t/T)) / √ᾱ_t   (DDPM Eq. 4 solved for x0; DDIM Eq. 9).

    Shapes: x_t (B, C, H, W), t int or (B,) -> (B, C, H, W).
    """
    return denoise(sched, model, x_t, t)[0].to(x_t.dtype)


def ddpm_step(
    sched: Schedule, model: EpsModel, t: TimeIndex, x_t: Tensor, z: Tensor, *,
    variance: str = "fixed_small",
) -> Tensor:
    """One ancestral step x_t → x_{t−1}, t ∈ {1..T}   (DDPM Algorithm 2, Eq. 11).

    x_{t−1} = μ̃_t(x_t, x̂0) + σ_t·z with x̂0 from the model's output (runtime.prediction) and σ_t
    from `VARIANCES[variance]` (DDPM §3.2): "fixed_small" σ_t² = β̃_t (β̃_1 = 0), "fixed_large"
    σ_t² = β_t; both add no noise at t = 1. For an ε-model this is
    (x_t − β_t/√(1 − ᾱ_t)·ε̂) / √α_t + σ_t·z, written through x̂0 so that α_T = 0 (zero terminal
    SNR) stays total. Shapes: x_t, z (B, C, H, W); t int or (B,) -> (B, C, H, W).
    """
    check_step_time(t, sched.T)
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {sorted(VARIANCES)}, got {variance!r}")
    wd = work_dtype(x_t.dtype)
    # 1. x̂0 from the model's output at (x_t, t/T)
    x0_hat = denoise(sched, model, x_t, t)[0]
    # 2. mean = μ̃_t(x_t, x̂0) (DDPM Eq. 7)
    mean, _ = q_posterior_mean_variance(sched, x0_hat, x_t.to(wd), t)
    # 3. σ_t of the variance choice (√β̃_t for fixed_small)
    sigma_t = VARIANCES[variance](sched).at(t, x_t)
    # 4. x_{t−1} = mean + σ_t·z
    return (mean + sigma_t * z.to(wd)).to(x_t.dtype)


@torch.no_grad()
def ddpm_sample(
    sched: Schedule,
    model: EpsModel,
    x_T: Tensor,
    grid: Sequence[int] | Tensor,
    noise: Tensor | torch.Generator | None = None,
    *,
    progress: bool = False,
    variance: str = "fixed_small",
) -> Tensor:
    """x_0 from x_T by T ancestral steps t = T, …, 1   (DDPM Algorithm 2), σ_t of `variance`.

    `grid` must be every time T, T − 1, …, 0. The step at time t uses `noise[t − 1]` (so
    noise[T − 1] first) when `noise` (T, B, C, H, W) is given; with a torch.Generator (or None:
    torch's default one) it draws torch.randn(x.shape, generator=noise) just before the step
    (the generator must live on x_T's device). `progress=True` shows a tqdm bar.
    Shapes: x_T (B, C, H, W), grid (T + 1,) -> (B, C, H, W). Runs under torch.no_grad().
    """
    T = sched.T
    times = decreasing_grid("grid", grid, 0, T, end=0, integers=True)
    if times[0] != T or len(times) != T + 1:
        raise ValueError(f"grid must be every time T, T - 1, …, 0 (T = {T}): DDPM's chain has no "
                         f"strided form here, got {len(times) - 1} steps from grid[0] = {times[0]}")
    generator = noise if isinstance(noise, torch.Generator) else None
    noise = None if generator is not None else noise
    if noise is not None and tuple(noise.shape) != (T, *x_T.shape):
        raise ValueError(
            f"noise must have shape (T, *x_T.shape) = {(T, *x_T.shape)}, got {tuple(noise.shape)}"
        )
    x = x_T
    for t in tqdm(range(T, 0, -1), desc="ddpm", disable=not progress):
        if noise is not None:
            z = noise[t - 1]
        else:
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = ddpm_step(sched, model, t, x, z, variance=variance)
    return x


__all__ = ["ddpm_sample", "ddpm_step", "x0_pred"]
