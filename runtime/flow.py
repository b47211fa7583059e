"""Flow matching with the rectified-flow path (Lipman et al. 2023; Liu et al. 2023; Esser et al.
2024, "SD3"): the twins of `spec.flow`, batched.

    x_σ = (1 − σ)·x_0 + σ·ε,   u = ε − x_0,   x̂_0 = x_σ − σ·v̂,   ε̂ = x_σ + (1 − σ)·v̂
    time shift σ' = s·σ/(1 + (s − 1)·σ) (SD3 Eq. 23), s = √(m/n) (§5.3.2)
    VP ↔ flow: c = √ᾱ + √(1 − ᾱ), x_σ = x_t/c, σ = √(1 − ᾱ)/c; D = (1 − σ)² + σ²,
               ᾱ = (1 − σ)²/D, x_t = x_σ/√D

A runtime velocity model is a callable `model(x, sigma)` (σ a float or a (B,) tensor, fed as is)
returning v̂ with x's shape. Samplers walk a decreasing σ grid; Euler takes one evaluation per
step, Heun two (every step corrected, also into σ = 0). σ-dependent coefficients are computed in
float64 (a float, or a (B,) tensor reshaped to (B, 1, …, 1)) and cast once to the working dtype
(float32 for 16-bit states); the state comes back in the caller's dtype.
Shapes: x (B, C, H, W); σ a float (one for the batch) or a (B,) tensor (one per sample).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from runtime.core import EpsModel, check_deterministic, decreasing_grid, work_dtype
from runtime.edm import Sigma, _cast, _coef
from runtime.prediction import denoise
from runtime.schedule import Schedule, TimeIndex

VelocityModel = Callable[[Tensor, Sigma], Tensor]
"""A velocity network: `model(x, sigma)` → v̂ (B, C, H, W); σ a float or a (B,) tensor."""


@dataclass(frozen=True)
class RectifiedFlow:
    """The process x_σ = (1 − σ)·x_0 + σ·ε (SD3 §3.1); no parameters, the flow samplers' `sched`."""


def _check_unit(name: str, value: Sigma) -> None:
    """A float must lie in [0, 1] (a tensor is not checked: no host sync)."""
    if not isinstance(value, Tensor) and not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {name} = {value!r}")


def _check_shape(name: str, value: Tensor, other: str, like: Tensor) -> None:
    if tuple(value.shape) != tuple(like.shape):
        raise ValueError(f"{name} must have the shape of {other} {tuple(like.shape)}, "
                         f"got {tuple(value.shape)}")


def _lerp(a: Tensor, sigma: Sigma, b: Tensor, ca: Callable[[Sigma], Sigma],
          cb: Callable[[Sigma], Sigma]) -> Tensor:
    """ca(σ)·a + cb(σ)·b in the working dtype, coefficients from float64, back in a's dtype."""
    wd = work_dtype(a.dtype)
    s = _coef(sigma, a)
    return (_cast(ca(s), wd) * a.to(wd) + _cast(cb(s), wd) * b.to(wd)).to(a.dtype)


def flow_interpolation(x0: Tensor, sigma: Sigma, eps: Tensor) -> Tensor:
    """x_σ = (1 − σ)·x0 + σ·ε, σ ∈ [0, 1]. Shapes: x0, eps (B, …); σ float or (B,)."""
    _check_unit("sigma", sigma)
    _check_shape("eps", eps, "x0", x0)
    return _lerp(x0, sigma, eps, lambda s: 1.0 - s, lambda s: s)


def flow_velocity_target(x0: Tensor, eps: Tensor) -> Tensor:
    """u = ε − x0, the flow-matching target. Shapes: x0, eps (B, …) -> (B, …)."""
    _check_shape("eps", eps, "x0", x0)
    wd = work_dtype(x0.dtype)
    return (eps.to(wd) - x0.to(wd)).to(x0.dtype)


def x0_from_velocity(x_sigma: Tensor, sigma: Sigma, v: Tensor) -> Tensor:
    """x̂_0 = x_σ − σ·v̂. Shapes: x_sigma, v (B, …); σ float or (B,)."""
    _check_unit("sigma", sigma)
    _check_shape("v", v, "x_sigma", x_sigma)
    return _lerp(x_sigma, sigma, v, lambda s: 1.0, lambda s: -s)


def eps_from_velocity(x_sigma: Tensor, sigma: Sigma, v: Tensor) -> Tensor:
    """ε̂ = x_σ + (1 − σ)·v̂. Shapes: x_sigma, v (B, …); σ float or (B,)."""
    _check_unit("sigma", sigma)
    _check_shape("v", v, "x_sigma", x_sigma)
    return _lerp(x_sigma, sigma, v, lambda s: 1.0, lambda s: 1.0 - s)


def time_shift(sigma: Tensor | float, shift: float) -> Tensor | float:
    """σ' = s·σ/(1 + (s − 1)·σ), σ ∈ [0, 1], s > 0 (SD3 Eq. 23). A float gives a float; a
    tensor a tensor of its dtype (16-bit evaluated in float32). Shapes: elementwise."""
    if not shift > 0:
        raise ValueError(f"shift must be > 0, got shift = {shift!r}")
    if not isinstance(sigma, Tensor):
        _check_unit("sigma", sigma)
        return shift * sigma / (1.0 + (shift - 1.0) * sigma)
    s = sigma.to(work_dtype(sigma.dtype))
    return (shift * s / (1.0 + (shift - 1.0) * s)).to(sigma.dtype)


def resolution_shift(m: float, n: float) -> float:
    """s = √(m/n) (SD3 §5.3.2): m values per image sampled, n the count the schedule was tuned
    at; m, n > 0. Shapes: scalars."""
    if not (m > 0 and n > 0):
        raise ValueError(f"m and n must be > 0, got m = {m!r}, n = {n!r}")
    return math.sqrt(m / n)


def uniform_sigma(u: Tensor | float) -> Tensor | float:
    """σ = u for a draw u ~ U[0, 1] (SD3 §3.1). Shapes: elementwise."""
    _check_unit("u", u)
    return u


def logit_normal_sigma(z: Tensor | float, m: float = 0.0, s: float = 1.0) -> Tensor | float:
    """σ = 1/(1 + exp(−(m + s·z))) for a standard normal draw z, s > 0 (SD3 Eq. 19).
    Shapes: elementwise (16-bit evaluated in float32)."""
    if not s > 0:
        raise ValueError(f"s must be > 0, got s = {s!r}")
    if not isinstance(z, Tensor):
        u = m + s * float(z)
        return 1.0 / (1.0 + math.exp(-u)) if u > -700 else 0.0
    return torch.sigmoid(m + s * z.to(work_dtype(z.dtype))).to(z.dtype)


def logit_normal_density(sigma: Tensor | float, m: float = 0.0, s: float = 1.0) -> Tensor | float:
    """π_ln(σ) = exp(−(logit σ − m)²/(2s²))/(s·√(2π)·σ·(1 − σ)), σ ∈ (0, 1), s > 0 (SD3 Eq. 19).
    Shapes: elementwise (16-bit evaluated in float32)."""
    if not s > 0:
        raise ValueError(f"s must be > 0, got s = {s!r}")
    if not isinstance(sigma, Tensor):
        if not 0.0 < sigma < 1.0:
            raise ValueError(f"sigma must lie in (0, 1), got sigma = {sigma!r}")
        logit = math.log(sigma) - math.log1p(-sigma)
        return math.exp(-((logit - m) ** 2) / (2 * s**2)) / (s * math.sqrt(2 * math.pi)
                                                               * sigma * (1 - sigma))
    x = sigma.to(work_dtype(sigma.dtype))
    logit = torch.log(x) - torch.log1p(-x)
    dens = torch.exp(-((logit - m) ** 2) / (2 * s**2)) / (s * math.sqrt(2 * math.pi) * x * (1 - x))
    return dens.to(sigma.dtype)


def flow_sigmas(n: int, shift: float = 1.0, shift_terminal: float | None = None) -> Tensor:
    """1 = σ_0 > … > σ_n = 0: σ_i = 1 − i/n, shifted (time_shift), and, with shift_terminal and
    n ≥ 2, 1 − σ_i scaled by (1 − σ_term)/(1 − σ_{n−1}) for i < n (σ_n = 0 kept; n = 1: [1, 0]).
    Shapes: -> (n + 1,) float64 on the CPU."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not shift > 0:
        raise ValueError(f"shift must be > 0, got shift = {shift!r}")
    if shift_terminal is not None and not 0.0 < shift_terminal < 1.0:
        raise ValueError(f"shift_terminal must lie in (0, 1), got {shift_terminal!r}")
    sigmas = 1.0 - torch.arange(n + 1, dtype=torch.float64) / n
    sigmas = time_shift(sigmas, shift)
    if shift_terminal is not None and n >= 2:
        scale = (1.0 - shift_terminal) / (1.0 - sigmas[n - 1])
        sigmas[:n] = 1.0 - (1.0 - sigmas[:n]) * scale
    return sigmas


def _check_pair(sigma: Sigma, sigma_next: Sigma) -> None:
    if not isinstance(sigma, Tensor) and not isinstance(sigma_next, Tensor):
        if not 0.0 <= sigma_next < sigma <= 1.0:
            raise ValueError(f"need 0 <= sigma_next < sigma <= 1, got sigma = {sigma!r}, "
                             f"sigma_next = {sigma_next!r}")


def _velocity(model: VelocityModel, x: Tensor, sigma: Sigma) -> Tensor:
    """v̂(x, σ) in the working dtype (the model sees x in the caller's dtype)."""
    return model(x, sigma).to(work_dtype(x.dtype))


def flow_euler_step(flow: RectifiedFlow, model: VelocityModel, x: Tensor, sigma: Sigma,
                    sigma_next: Sigma) -> Tensor:
    """x' = x + (σ_next − σ)·v̂(x, σ), 0 ≤ σ_next < σ ≤ 1. Shapes: x (B, …); σ float or (B,)."""
    _check_pair(sigma, sigma_next)
    wd = work_dtype(x.dtype)
    dsig = _cast(_coef(sigma_next, x) - _coef(sigma, x), wd)
    return (x.to(wd) + dsig * _velocity(model, x, sigma)).to(x.dtype)


def flow_heun_step(flow: RectifiedFlow, model: VelocityModel, x: Tensor, sigma: Sigma,
                   sigma_next: Sigma) -> Tensor:
    """Heun: d = v̂(x, σ), x_e = x + (σ_next − σ)·d, x' = x + (σ_next − σ)·(½d + ½v̂(x_e, σ_next)),
    also into σ_next = 0 (two evaluations). Shapes: x (B, …); σ float or (B,)."""
    _check_pair(sigma, sigma_next)
    wd = work_dtype(x.dtype)
    dsig = _cast(_coef(sigma_next, x) - _coef(sigma, x), wd)
    # 1. Euler predictor (stored in the caller's dtype before the model reads it, as the state)
    d = _velocity(model, x, sigma)
    x_euler = (x.to(wd) + dsig * d).to(x.dtype)
    # 2. trapezoidal corrector
    d_next = _velocity(model, x_euler, sigma_next)
    return (x.to(wd) + dsig * (0.5 * d + 0.5 * d_next)).to(x.dtype)


@torch.no_grad()
def flow_euler_sample(flow: RectifiedFlow, model: VelocityModel, x_T: Tensor,
                      grid: Sequence[float] | Tensor, noise: None = None,
                      progress: bool = False) -> Tensor:
    """Euler over σ_0 > … > σ_N ≥ 0 (N evaluations); x_T is the state at σ_0. noise must be None.
    Shapes: x_T (B, C, H, W) -> (B, C, H, W). Runs under torch.no_grad()."""
    values = decreasing_grid("grid", grid, 0.0, 1.0)
    check_deterministic(noise)
    x = x_T
    for i in tqdm(range(len(values) - 1), desc="flow-euler", disable=not progress):
        x = flow_euler_step(flow, model, x, values[i], values[i + 1])
    return x


@torch.no_grad()
def flow_heun_sample(flow: RectifiedFlow, model: VelocityModel, x_T: Tensor,
                     grid: Sequence[float] | Tensor, noise: None = None,
                     progress: bool = False) -> Tensor:
    """Heun over σ_0 > … > σ_N ≥ 0 (2N evaluations); x_T is the state at σ_0. noise must be None.
    Shapes: x_T (B, C, H, W) -> (B, C, H, W). Runs under torch.no_grad()."""
    values = decreasing_grid("grid", grid, 0.0, 1.0)
    check_deterministic(noise)
    x = x_T
    for i in tqdm(range(len(values) - 1), desc="flow-heun", disable=not progress):
        x = flow_heun_step(flow, model, x, values[i], values[i + 1])
    return x


def vp_to_flow(alpha_bar: Sigma, x_t: Tensor) -> tuple[Tensor, Sigma]:
    """x_σ = x_t/c and σ = √(1 − ᾱ)/c, c = √ᾱ + √(1 − ᾱ); ᾱ ∈ [0, 1], a float or (B,).
    Shapes: x_t (B, …) -> ((B, …), float or (B,) float64)."""
    _check_unit("alpha_bar", alpha_bar)
    if isinstance(alpha_bar, Tensor):
        ab = alpha_bar.double()
        c = torch.sqrt(torch.clamp(ab, min=0.0)) + torch.sqrt(torch.clamp(1.0 - ab, min=0.0))
        sigma = torch.sqrt(torch.clamp(1.0 - ab, min=0.0)) / c
    else:
        c = math.sqrt(max(alpha_bar, 0.0)) + math.sqrt(max(1.0 - alpha_bar, 0.0))
        sigma = math.sqrt(max(1.0 - alpha_bar, 0.0)) / c
    wd = work_dtype(x_t.dtype)
    inv_c = _coef(1.0 / c, x_t)
    return (x_t.to(wd) * _cast(inv_c, wd)).to(x_t.dtype), sigma


def flow_to_vp(sigma: Sigma, x_sigma: Tensor) -> tuple[Sigma, Tensor]:
    """ᾱ = (1 − σ)²/D and x_t = x_σ/√D, D = (1 − σ)² + σ²; σ ∈ [0, 1], a float or (B,).
    Shapes: x_sigma (B, …) -> (float or (B,) float64, (B, …))."""
    _check_unit("sigma", sigma)
    s = sigma.double() if isinstance(sigma, Tensor) else float(sigma)
    D = (1.0 - s) ** 2 + s**2
    scale = 1.0 / (torch.sqrt(D) if isinstance(D, Tensor) else math.sqrt(D))
    wd = work_dtype(x_sigma.dtype)
    x_t = (x_sigma.to(wd) * _cast(_coef(scale, x_sigma), wd)).to(x_sigma.dtype)
    return (1.0 - s) ** 2 / D, x_t


def velocity_from_vp(sched: Schedule, model: EpsModel, x_sigma: Tensor, t: TimeIndex) -> Tensor:
    """v̂ = ε̂ − x̂_0 of a VP model at x_t = c·x_σ, c = √ᾱ_t + √(1 − ᾱ_t) (runtime.prediction's
    denoise, the one conversion point). Shapes: x_sigma (B, …); t int or (B,) -> (B, …)."""
    if not isinstance(t, Tensor) and not 0 <= t <= sched.T:
        raise ValueError(f"t = {t} is outside 0..{sched.T}")
    wd = work_dtype(x_sigma.dtype)
    c = sched.sqrt_alpha_bar.coef(t, x_sigma) + sched.sqrt_one_minus_alpha_bar.coef(t, x_sigma)
    x_t = (c.to(wd) * x_sigma.to(wd)).to(x_sigma.dtype)
    x0_hat, eps_hat = denoise(sched, model, x_t, t)
    return (eps_hat - x0_hat).to(x_sigma.dtype)


__all__ = [
    "RectifiedFlow",
    "VelocityModel",
    "eps_from_velocity",
    "flow_euler_sample",
    "flow_euler_step",
    "flow_heun_sample",
    "flow_heun_step",
    "flow_interpolation",
    "flow_sigmas",
    "flow_to_vp",
    "flow_velocity_target",
    "logit_normal_density",
    "logit_normal_sigma",
    "resolution_shift",
    "time_shift",
    "uniform_sigma",
    "velocity_from_vp",
    "vp_to_flow",
]
