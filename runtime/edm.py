"""Euler and Heun in EDM form (Karras et al. 2022, Algorithm 1): the twins of `spec.edm`.

EDM state x̃ = x_t/√ᾱ = x_0 + σ·ε with σ = √((1 − ᾱ)/ᾱ) (and back: ᾱ = 1/(1 + σ²),
x_t = x̃/√(1 + σ²)). The ODE dx̃/dσ = (x̃ − D(x̃; σ))/σ is solved on σ_0 > … > σ_N ≥ 0; the VP
ε-model is a denoiser through D(x̃; σ) = x̂_0 of x_t at the model time t = sch.time_of_edm_sigma(σ)
of a continuous schedule (`runtime.pf_ode`). Heun corrects each Euler step with the slope at its
end, except a step into σ = 0 (Euler there). Coefficients are computed in float64 and cast once;
the step arithmetic runs in at least float32 and the state is kept in the caller's dtype.
Shapes: x (B, C, H, W); σ a float (one for the batch) or a (B,) tensor (one per sample).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from runtime.core import (
    EpsModel,
    check_deterministic,
    coef_dtype,
    decreasing_grid,
    safe_div,
    sqrt_nonneg,
    work_dtype,
)
from runtime.pf_ode import VPContinuousSchedule
from runtime.prediction import _x0, prediction_of

Sigma = float | Tensor


def _coef(value: Sigma, like: Tensor) -> Sigma:
    """A float stays a float; a (B,) tensor becomes float64 (B, 1, …, 1) on like's device."""
    if not isinstance(value, Tensor):
        return float(value)
    v = value.to(device=like.device, dtype=coef_dtype(like.device))
    return v.reshape(v.shape + (1,) * (like.ndim - v.ndim)) if v.ndim else v


def _cast(value: Sigma, dtype: torch.dtype) -> Sigma:
    return value.to(dtype) if isinstance(value, Tensor) else value


def vp_to_edm(alpha_bar: Sigma, x_t: Tensor) -> tuple[Tensor, Sigma]:
    """x̃ = x_t/√ᾱ and σ = √((1 − ᾱ)/ᾱ) (safe_div, sqrt_nonneg); ᾱ ∈ (0, 1], a float or (B,).
    Shapes: x_t (B, C, H, W) -> ((B, C, H, W), float or (B,))."""
    if not isinstance(alpha_bar, Tensor) and not 0.0 < alpha_bar <= 1.0:
        raise ValueError(f"alpha_bar must lie in (0, 1], got alpha_bar = {alpha_bar!r}")
    wd = work_dtype(x_t.dtype)
    ab = _coef(alpha_bar, x_t)
    x_tilde = safe_div(x_t.to(wd), _cast(sqrt_nonneg(ab), wd)).to(x_t.dtype)
    sigma = sqrt_nonneg(safe_div(1.0 - alpha_bar, alpha_bar) if not isinstance(alpha_bar, Tensor)
                        else safe_div(1.0 - alpha_bar.double(), alpha_bar.double()))
    return x_tilde, sigma


def edm_to_vp(sigma: Sigma, x_tilde: Tensor) -> tuple[Sigma, Tensor]:
    """ᾱ = 1/(1 + σ²) and x_t = x̃/√(1 + σ²); σ ≥ 0, a float or (B,).
    Shapes: x_tilde (B, C, H, W) -> (float or (B,), (B, C, H, W))."""
    if not isinstance(sigma, Tensor) and not sigma >= 0:
        raise ValueError(f"sigma must be >= 0, got sigma = {sigma!r}")
    wd = work_dtype(x_tilde.dtype)
    s = _coef(sigma, x_tilde)
    scale = 1.0 / (torch.sqrt(1.0 + s**2) if isinstance(s, Tensor) else math.sqrt(1.0 + s**2))
    x_t = (x_tilde.to(wd) * _cast(scale, wd)).to(x_tilde.dtype)
    ab = 1.0 / (1.0 + (sigma.double() if isinstance(sigma, Tensor) else sigma) ** 2)
    return ab, x_t


def edm_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """σ_i = (σ_max^{1/ρ} + i/(N − 1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, i = 0..N−1, then σ_N = 0
    (Karras Eq. 5; N = 1 gives [σ_max, 0]). Shapes: -> (n + 1,) float64 on the CPU."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not 0.0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min = {sigma_min!r}, "
                         f"sigma_max = {sigma_max!r}")
    if not rho > 0:
        raise ValueError(f"rho must be > 0, got rho = {rho!r}")
    ramp = torch.arange(n, dtype=torch.float64) / max(n - 1, 1)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return torch.cat([(hi + ramp * (lo - hi)) ** rho, torch.zeros(1, dtype=torch.float64)])


def edm_denoise(sch: VPContinuousSchedule, model: EpsModel, x_tilde: Tensor, sigma: Sigma) -> Tensor:
    """D(x̃; σ): x_t = x̃/√(1 + σ²), t = sch.time_of_edm_sigma(σ), ε̂ = model(x_t, t),
    x̂_0 from the model's output by runtime.prediction's formula (for ε: (x_t − √(1 − ᾱ)·ε̂)/√ᾱ)
    with ᾱ = 1/(1 + σ²) (the one place the output becomes x̂_0 here).
    Shapes: x_tilde (B, C, H, W); σ float or (B,) -> (B, C, H, W)."""
    wd = work_dtype(x_tilde.dtype)
    ab, x_t = edm_to_vp(sigma, x_tilde)
    if isinstance(sigma, Tensor):
        t_norm = sch.time_of_edm_sigma(sigma.to(device=x_tilde.device, dtype=torch.float64)).to(wd)
    else:
        t_norm = sch.time_of_edm_sigma(float(sigma))
    out = model(x_t, t_norm).to(wd)
    ab = _coef(ab, x_tilde)
    x0 = _x0(_cast(sqrt_nonneg(ab), wd), _cast(sqrt_nonneg(1.0 - ab), wd), x_t.to(wd), out,
             prediction_of(model))
    return x0.to(x_tilde.dtype)


def _check_pair(sigma: Sigma, sigma_next: Sigma) -> None:
    if not isinstance(sigma, Tensor) and not isinstance(sigma_next, Tensor):
        if not 0.0 <= sigma_next < sigma:
            raise ValueError(f"need 0 <= sigma_next < sigma, got sigma = {sigma!r}, "
                             f"sigma_next = {sigma_next!r}")


def _slope(sch: VPContinuousSchedule, model: EpsModel, x: Tensor, sigma: Sigma) -> Tensor:
    """(x̃ − D(x̃; σ))/σ in the working dtype (σ > 0)."""
    wd = work_dtype(x.dtype)
    return (x.to(wd) - edm_denoise(sch, model, x, sigma).to(wd)) / _cast(_coef(sigma, x), wd)


def edm_euler_step(
    sch: VPContinuousSchedule, model: EpsModel, x: Tensor, sigma: Sigma, sigma_next: Sigma
) -> Tensor:
    """x̃' = x̃ + (σ_next − σ)·(x̃ − D(x̃; σ))/σ, 0 ≤ σ_next < σ   (Karras Algorithm 1, lines 4–5).
    Shapes: x (B, C, H, W); σ, σ_next float or (B,) -> (B, C, H, W)."""
    _check_pair(sigma, sigma_next)
    wd = work_dtype(x.dtype)
    dsig = _cast(_coef(sigma_next, x) - _coef(sigma, x), wd)
    return (x.to(wd) + dsig * _slope(sch, model, x, sigma)).to(x.dtype)


def edm_heun_step(
    sch: VPContinuousSchedule, model: EpsModel, x: Tensor, sigma: Sigma, sigma_next: Sigma
) -> Tensor:
    """Heun (Karras Algorithm 1, lines 4–8): Euler predictor x̃' = x̃ + (σ_next − σ)·d, then,
    unless σ_next = 0, x̃' = x̃ + (σ_next − σ)·(½d + ½d') with d' the slope at (x̃', σ_next).
    A float σ_next = 0 costs one model evaluation; a (B,) σ_next always two (samples with
    σ_next = 0 keep the predictor). Shapes: x (B, C, H, W); σ, σ_next float or (B,)."""
    _check_pair(sigma, sigma_next)
    wd = work_dtype(x.dtype)
    dsig = _cast(_coef(sigma_next, x) - _coef(sigma, x), wd)
    # 1. Euler predictor
    d = _slope(sch, model, x, sigma)
    x_euler = x.to(wd) + dsig * d
    if not isinstance(sigma_next, Tensor):
        if sigma_next == 0:
            return x_euler.to(x.dtype)
        d_next = _slope(sch, model, x_euler.to(x.dtype), sigma_next)
        return (x.to(wd) + dsig * (0.5 * d + 0.5 * d_next)).to(x.dtype)
    # 2. per-sample corrector; samples landing on σ = 0 keep the Euler step (slope read at σ = 1)
    at_zero = _coef(sigma_next, x) == 0  # (B, 1, …, 1)
    safe_next = torch.where(sigma_next == 0, torch.ones_like(sigma_next), sigma_next)
    d_next = _slope(sch, model, x_euler.to(x.dtype), safe_next)
    x_heun = x.to(wd) + dsig * (0.5 * d + 0.5 * d_next)
    return torch.where(at_zero, x_euler, x_heun).to(x.dtype)


@torch.no_grad()
def edm_sample_euler(
    sch: VPContinuousSchedule,
    model: EpsModel,
    x_T: Tensor,
    grid: Sequence[float] | Tensor,
    noise: Tensor | torch.Generator | None = None,
    *,
    progress: bool = False,
) -> Tensor:
    """Euler in EDM form over the σ grid σ_0 > … > σ_N ≥ 0 (N model evaluations); x_T is x̃ at
    σ_0. Deterministic: noise must be None.
    Shapes: x_T (B, C, H, W), grid (N + 1,) -> (B, C, H, W). Runs under torch.no_grad()."""
    sigmas = decreasing_grid("grid", grid)
    check_deterministic(noise)
    x = x_T
    for i in tqdm(range(len(sigmas) - 1), desc="euler", disable=not progress):
        x = edm_euler_step(sch, model, x, sigmas[i], sigmas[i + 1])
    return x


@torch.no_grad()
def edm_sample_heun(
    sch: VPContinuousSchedule,
    model: EpsModel,
    x_T: Tensor,
    grid: Sequence[float] | Tensor,
    noise: Tensor | torch.Generator | None = None,
    *,
    progress: bool = False,
) -> Tensor:
    """Heun in EDM form (Karras Algorithm 1) over the σ grid σ_0 > … > σ_N ≥ 0: 2N − 1 model
    evaluations when σ_N = 0; x_T is x̃ at σ_0. Deterministic: noise must be None.
    Shapes: x_T (B, C, H, W), grid (N + 1,) -> (B, C, H, W). Runs under no_grad."""
    sigmas = decreasing_grid("grid", grid)
    check_deterministic(noise)
    x = x_T
    for i in tqdm(range(len(sigmas) - 1), desc="heun", disable=not progress):
        x = edm_heun_step(sch, model, x, sigmas[i], sigmas[i + 1])
    return x


def edm_ancestral_sigmas(sigma: Sigma, sigma_next: Sigma) -> tuple[Sigma, Sigma]:
    """(σ_down, σ_up): σ_up = min(σ_next, √(σ_next²·(σ² − σ_next²)/σ²)), σ_down =
    √(σ_next² − σ_up²) (k-diffusion's get_ancestral_step, η = 1), in float64 for tensors.
    Shapes: floats or (B,) tensors -> the same."""
    _check_pair(sigma, sigma_next)
    if not isinstance(sigma, Tensor) and not isinstance(sigma_next, Tensor):
        up = min(sigma_next, sqrt_nonneg(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
        return sqrt_nonneg(sigma_next**2 - up**2), up
    s = torch.as_tensor(sigma, dtype=torch.float64)
    n = torch.as_tensor(sigma_next, dtype=torch.float64)
    up = torch.minimum(n, sqrt_nonneg(n**2 * (s**2 - n**2) / s**2))
    return sqrt_nonneg(n**2 - up**2), up


def edm_euler_ancestral_step(sch: VPContinuousSchedule, model: EpsModel, x: Tensor, sigma: Sigma,
                             sigma_next: Sigma, z: Tensor) -> Tensor:
    """x̃' = x̃ + (σ_down − σ)·(x̃ − D(x̃; σ))/σ + σ_up·z (k-diffusion's sample_euler_ancestral,
    η = 1). Shapes: x, z (B, C, H, W); σ, σ_next float or (B,) -> (B, C, H, W)."""
    if tuple(z.shape) != tuple(x.shape):
        raise ValueError(f"z must have the shape of x {tuple(x.shape)}, got {tuple(z.shape)}")
    wd = work_dtype(x.dtype)
    down, up = edm_ancestral_sigmas(sigma, sigma_next)
    dsig = _cast(_coef(down, x) - _coef(sigma, x), wd)
    x_next = x.to(wd) + dsig * _slope(sch, model, x, sigma) + _cast(_coef(up, x), wd) * z.to(wd)
    return x_next.to(x.dtype)


@torch.no_grad()
def edm_euler_ancestral_sample(
    sch: VPContinuousSchedule,
    model: EpsModel,
    x_T: Tensor,
    grid: Sequence[float] | Tensor,
    noise: Tensor | torch.Generator | None = None,
    *,
    progress: bool = False,
) -> Tensor:
    """Ancestral Euler over σ_0 > … > σ_N ≥ 0 (N evaluations); step i uses noise[i] ((N, B, C, H,
    W)), or, with a torch.Generator (or None: torch's default one) as `noise`, draws
    torch.randn(x.shape, generator=noise) before each step. x_T is x̃ at σ_0.
    Shapes: x_T (B, C, H, W) -> (B, C, H, W). Runs under torch.no_grad()."""
    values = decreasing_grid("grid", grid)
    n = len(values) - 1
    generator = noise if isinstance(noise, torch.Generator) else None
    noise = None if generator is not None else noise
    if noise is not None and tuple(noise.shape) != (n, *x_T.shape):
        raise ValueError(f"noise must have shape (len(grid) - 1, *x_T.shape) = "
                         f"{(n, *x_T.shape)}, got {tuple(noise.shape)}")
    x = x_T
    for i in tqdm(range(n), desc="euler-ancestral", disable=not progress):
        z = noise[i] if noise is not None else torch.randn(x.shape, generator=generator,
                                                             dtype=x.dtype, device=x.device)
        x = edm_euler_ancestral_step(sch, model, x, values[i], values[i + 1], z)
    return x


__all__ = [
    "edm_ancestral_sigmas",
    "edm_euler_ancestral_sample",
    "edm_euler_ancestral_step",
    "edm_denoise",
    "edm_euler_step",
    "edm_heun_step",
    "edm_sample_euler",
    "edm_sample_heun",
    "edm_sigmas",
    "edm_to_vp",
    "vp_to_edm",
]
