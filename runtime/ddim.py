"""Deterministic and stochastic DDIM: the twins of `spec.ddim`, batched.

Notation as in `spec.ddim`: DDIM's α_t is DDPM's ᾱ_t, written ᾱ everywhere; DDIM's σ_t(η) is
σ_η. A step goes from time t to an earlier time t_prev (0 ≤ t_prev < t ≤ T); `ddim_step(t)` is
the adjacent step t → t − 1. The model is fed t/T. Per-step coefficients (σ_η and the direction
coefficient) are computed in float64 from the schedule's ᾱ table and cast once to the working
dtype (float32 for 16-bit inputs).
Shapes: x_t, z (B, C, H, W); t, t_prev an int or a (B,) LongTensor; noise (S, B, C, H, W).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from runtime.core import EpsModel, coef_dtype, decreasing_grid, sqrt_nonneg, work_dtype
from runtime.prediction import denoise, x0_from_output
from runtime.schedule import Schedule, TimeIndex


def _ddim_update(
    ab_prev: Tensor,
    x0: Tensor,
    eps_hat: Tensor,
    sigma_eta: Tensor,
    z: Tensor | None,
    clip: bool,
) -> Tensor:
    """Steps 2 and 4 of the DDIM update (DDIM Eq. 12) from x̂0 and ε̂, in x0's dtype.
    ab_prev, sigma_eta: coefficient-dtype (float64) tensors broadcastable to x0."""
    # 2. x̂0 (from runtime.prediction), clipped to [−1, 1] on request
    if clip:
        x0 = x0.clamp(-1.0, 1.0)
    # 4. x_prev = √ᾱ_prev·x̂0 + √(1 − ᾱ_prev − σ_η²)·ε̂ + σ_η·z (the model's ε̂ gives the direction)
    direction = sqrt_nonneg(1.0 - ab_prev - sigma_eta**2).to(x0.dtype)
    x_prev = sqrt_nonneg(ab_prev).to(x0.dtype) * x0 + direction * eps_hat
    if z is not None:
        x_prev = x_prev + sigma_eta.to(x0.dtype) * z.to(x0.dtype)
    return x_prev


def _ratio(x: Tensor, y: Tensor) -> Tensor:
    """x / y exactly where y > 0, and 0 where y = 0 (σ_η's two ratios; spec.ddim)."""
    return torch.where(y > 0, x / torch.where(y > 0, y, 1.0), 0.0)


def ddim_prev(
    ab_prev: Tensor | float, ab: Tensor | float, x_t: Tensor, eps_hat: Tensor, clip: bool = True
) -> Tensor:
    """The η = 0 DDIM update given ᾱ_prev, ᾱ_t and ε̂ directly (TorchLean's ddimPrev):
    x̂0 = clip((x_t − √(1 − ᾱ_t)·ε̂)/√ᾱ_t) (clip optional), x_prev = √ᾱ_prev·x̂0 + √(1 − ᾱ_prev)·ε̂.
    Shapes: ab_prev, ab floats or tensors broadcastable to x_t; x_t, eps_hat (B, …) -> (B, …)."""
    wd = work_dtype(x_t.dtype)
    cd = coef_dtype(x_t.device)
    x0 = x0_from_output(ab, x_t.to(wd), eps_hat.to(wd), "eps")
    ab_prev = torch.as_tensor(ab_prev, dtype=cd, device=x_t.device)
    sigma_eta = torch.zeros((), dtype=cd, device=x_t.device)
    out = _ddim_update(ab_prev, x0, eps_hat.to(wd), sigma_eta, None, clip)
    return out.to(x_t.dtype)


def ddim_step_between(
    sched: Schedule,
    model: EpsModel,
    t: TimeIndex,
    t_prev: TimeIndex,
    x_t: Tensor,
    eta: float = 0.0,
    z: Tensor | None = None,
    clip: bool = False,
) -> Tensor:
    """One DDIM step x_t → x_{t_prev}, 0 ≤ t_prev < t ≤ T   (DDIM Eq. 12 and 16).

    1. x̂0, ε̂ from the model's output at (x_t, t/T) (runtime.prediction.denoise; for an ε-model
       x̂0 = (x_t − √(1 − ᾱ_t)·ε̂)/√ᾱ_t); x̂0 clipped to [−1, 1] if `clip`
    3. σ_η = η·√((1 − ᾱ_prev)/(1 − ᾱ_t))·√(1 − ᾱ_t/ᾱ_prev)
    4. x_prev = √ᾱ_prev·x̂0 + √(1 − ᾱ_prev − σ_η²)·ε̂ + σ_η·z
    `z` is required when eta > 0 (ValueError); with eta = 0 and no z the σ_η·z term is 0.
    With eta = 1 and t_prev = t − 1, σ_η² = β̃_t (the DDPM posterior variance).
    Shapes: x_t, z (B, C, H, W); t, t_prev int or (B,) -> (B, C, H, W).
    """
    if not isinstance(t, Tensor) and not isinstance(t_prev, Tensor):
        if not 0 <= t_prev < t <= sched.T:
            raise ValueError(f"need 0 <= t_prev < t <= T = {sched.T}, got t = {t}, t_prev = {t_prev}")
    if not eta >= 0:
        raise ValueError(f"eta must be >= 0, got eta = {eta!r}")
    if eta > 0 and z is None:
        raise ValueError(f"eta = {eta} > 0 needs the noise z, got z = None")
    ab = sched.alpha_bar.coef(t, x_t)  # ᾱ_t, float64
    ab_prev = sched.alpha_bar.coef(t_prev, x_t)  # ᾱ_prev, float64
    # 1. x̂0 and ε̂ (working dtype) from the model's output
    x0, eps_hat = denoise(sched, model, x_t, t)
    # 3. σ_η (in float64: 1 − ᾱ_t/ᾱ_prev cancels badly in low precision near t = 0), divided
    #    exactly as in the spec (a ratio is 0 where its denominator is)
    sigma_eta = eta * sqrt_nonneg(_ratio(1.0 - ab_prev, 1.0 - ab)) * sqrt_nonneg(
        1.0 - _ratio(ab, ab_prev)
    )
    # 2. and 4.
    out = _ddim_update(ab_prev, x0, eps_hat, sigma_eta, z, clip)
    return out.to(x_t.dtype)


def ddim_step(sched: Schedule, model: EpsModel, t: TimeIndex, x_t: Tensor) -> Tensor:
    """The adjacent deterministic step x_t → x_{t−1}, t ∈ {1..T} (η = 0, unclipped)   (DDIM Eq. 12).
    Shapes: x_t (B, C, H, W); t int or (B,) -> (B, C, H, W)."""
    return ddim_step_between(sched, model, t, t - 1, x_t)


@torch.no_grad()
def ddim_sample(sched: Schedule, model: EpsModel, x_T: Tensor, progress: bool = False) -> Tensor:
    """x_0 from x_T by the T adjacent deterministic steps t = T, …, 1   (DDIM, η = 0).
    Shapes: x_T (B, C, H, W) -> (B, C, H, W). Runs under torch.no_grad()."""
    x = x_T
    for t in tqdm(range(sched.T, 0, -1), desc="ddim", disable=not progress):
        x = ddim_step(sched, model, t, x)
    return x


def ddim_timesteps(T: int, num_steps: int) -> list[int]:
    """The strided grid timesteps[i] = (T·(n − i) + n // 2) // n, i = 0..n (n = num_steps):
    round-half-up of T·(n − i)/n, strictly decreasing from T to 0, n + 1 values."""
    if not 1 <= num_steps <= T:
        raise ValueError(f"num_steps must be in 1..T = {T}, got {num_steps}")
    n = num_steps
    return [(T * (n - i) + n // 2) // n for i in range(n + 1)]


@torch.no_grad()
def ddim_sample_strided(
    sched: Schedule,
    model: EpsModel,
    x_T: Tensor,
    grid: Sequence[int] | Tensor,
    noise: Tensor | torch.Generator | None = None,
    *,
    eta: float = 0.0,
    clip: bool = False,
    progress: bool = False,
) -> Tensor:
    """DDIM on a strided grid: x = ddim_step_between(grid[i] → grid[i+1]) for each i
    (DDIM §4.2). `grid`: strictly decreasing ints, first in 1..T, last 0 (ValueError
    otherwise). Step i uses `noise[i]` (S = len(grid) − 1 steps, in the order they run); with
    eta > 0 and a torch.Generator (or None: torch's default one) as `noise`, it draws
    torch.randn(x.shape, generator=noise) per step.
    Shapes: x_T (B, C, H, W); grid (S + 1,); noise (S, B, C, H, W) -> (B, C, H, W).
    Runs under torch.no_grad().
    """
    ts = decreasing_grid("grid", grid, 0, sched.T, end=0, integers=True)
    steps = len(ts) - 1
    generator = noise if isinstance(noise, torch.Generator) else None
    noise = None if generator is not None else noise
    if noise is not None and tuple(noise.shape) != (steps, *x_T.shape):
        raise ValueError(
            f"noise must have shape (len(grid) - 1, *x_T.shape) = {(steps, *x_T.shape)}, "
            f"got {tuple(noise.shape)}"
        )
    x = x_T
    for i in tqdm(range(steps), desc="ddim", disable=not progress):
        if noise is not None:
            z = noise[i]
        elif eta > 0:
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        else:
            z = None
        x = ddim_step_between(sched, model, ts[i], ts[i + 1], x, eta, z, clip)
    return x


__all__ = [
    "ddim_prev",
    "ddim_sample",
    "ddim_sample_strided",
    "ddim_step",
    "ddim_step_between",
    "ddim_timesteps",
]
