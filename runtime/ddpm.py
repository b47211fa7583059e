"""Ancestral sampling (DDPM): the twins of `spec.ddpm`, batched.

Notation: the reverse step with index k ∈ {0..T−1} maps x_{k+1} → x_k, so it works at t = k + 1;
the model is fed t/T. The step arithmetic runs in float64/float32 (float32 for 16-bit inputs) with
coefficients from the schedule's float64 tables; results come back in x_t's dtype.
Shapes: x_t, z (B, C, H, W); k, t an int or a (B,) LongTensor; noise (T, B, C, H, W).
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from runtime.core import EpsModel, safe_div, work_dtype
from runtime.schedule import Schedule, TimeIndex, time_of_index


def _check_step_index(k: TimeIndex, T: int) -> None:
    if not isinstance(k, Tensor) and not 0 <= k < T:
        raise ValueError(f"step index k = {k} is outside 0..{T - 1} (the step k maps x_(k+1) to x_k)")


def x0_pred(sched: Schedule, model: EpsModel, x_t: Tensor, t: TimeIndex) -> Tensor:
    """x̂0 = (x_t − √(1 − ᾱ_t)·ε̂(x_t, t/T)) / √ᾱ_t, unclipped   (DDPM Eq. 4 solved for x0; DDIM Eq. 9).

    Shapes: x_t (B, C, H, W), t int or (B,) -> (B, C, H, W).
    """
    wd = work_dtype(x_t.dtype)
    eps_hat = model(x_t, time_of_index(t, sched.T, dtype=wd)).to(wd)
    x0 = safe_div(
        x_t.to(wd) - sched.at("sqrt_one_minus_alpha_bars", t, x_t) * eps_hat,
        sched.at("sqrt_alpha_bars", t, x_t),
    )
    return x0.to(x_t.dtype)


def ddpm_step(sched: Schedule, model: EpsModel, k: TimeIndex, x_t: Tensor, z: Tensor) -> Tensor:
    """One ancestral step x_t → x_{t−1}, t = k + 1   (DDPM Algorithm 2, Eq. 11).

    x_{t−1} = (x_t − β_t/√(1 − ᾱ_t)·ε̂) / √α_t + σ_t·z with σ_t² = β̃_t ("fixed small"; β̃_1 = 0,
    so the last step adds no noise). Shapes: x_t, z (B, C, H, W); k int or (B,) -> (B, C, H, W).
    """
    _check_step_index(k, sched.T)
    wd = work_dtype(x_t.dtype)
    t = k + 1
    # 1. ε̂ = ε_θ(x_t, t/T)
    eps_hat = model(x_t, time_of_index(t, sched.T, dtype=wd)).to(wd)
    # 2. mean = (x_t − β_t/√(1 − ᾱ_t)·ε̂) / √α_t
    mean = safe_div(
        x_t.to(wd) - sched.at("eps_coef", t, x_t) * eps_hat, sched.at("sqrt_alpha_t", t, x_t)
    )
    # 3. σ_t = √β̃_t
    sigma = sched.at("posterior_std", t, x_t)
    # 4. x_{t−1} = mean + σ_t·z
    return (mean + sigma * z.to(wd)).to(x_t.dtype)


@torch.no_grad()
def ddpm_sample(
    sched: Schedule,
    model: EpsModel,
    x_T: Tensor,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> Tensor:
    """x_0 from x_T by T ancestral steps k = T−1, …, 0   (DDPM Algorithm 2).

    Step k uses `noise[k]` (so noise[T−1] first) when `noise` (T, B, C, H, W) is given; otherwise
    it draws torch.randn(x.shape, generator=generator) just before the step (the generator must
    live on x_T's device; None means torch's default generator). `progress=True` shows a tqdm bar.
    Shapes: x_T (B, C, H, W) -> (B, C, H, W). Runs under torch.no_grad().
    """
    T = sched.T
    if noise is not None and tuple(noise.shape) != (T, *x_T.shape):
        raise ValueError(
            f"noise must have shape (T, *x_T.shape) = {(T, *x_T.shape)}, got {tuple(noise.shape)}"
        )
    x = x_T
    for k in tqdm(range(T - 1, -1, -1), desc="ddpm", disable=not progress):
        if noise is not None:
            z = noise[k]
        else:
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = ddpm_step(sched, model, k, x, z)
    return x


__all__ = ["ddpm_sample", "ddpm_step", "x0_pred"]
