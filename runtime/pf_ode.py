"""The probability-flow ODE of the VP SDE and its Euler sampler: the twins of `spec.pf_ode`.

Continuous time t ∈ [0, 1] (Song et al. 2021). Linear: β(t) = β_min + t·(β_max − β_min),
ᾱ(t) = exp(−(β_min·t + ½·(β_max − β_min)·t²)); cosine (Nichol & Dhariwal 2021):
u = (t + s)/(1 + s)·π/2, ᾱ(t) = cos²u/cos²u(0), β(t) = π/(1 + s)·tan u. The model is fed t itself.
Drift (Song et al. 2021, Eq. 13 with score = −ε̂/√(1 − ᾱ(t))):
dx/dt = −½β(t)·x + ½·β(t)/√(1 − ᾱ(t))·ε̂(x, t), ε̂ converted from an x0- or v-model's output at
ᾱ(t) by runtime.prediction. TorchLean's two errata are not copied (see spec.torchlean,
docs/errata.md).
Shapes: x (B, C, H, W); t a float, a 0-d tensor or a (B,) tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
from runtime.prediction import eps_from_output, prediction_of

Time = float | Tensor


@dataclass(frozen=True)
class VPLinearSchedule:
    """The VP SDE with linear β(t) (Song et al. 2021, §3.4; DDPM's schedule in the limit T → ∞).
    Methods take a float (giving a float) or a tensor (giving a tensor of its dtype)."""

    beta_min: float = 0.1
    beta_max: float = 20.0

    def beta(self, t: Time) -> Time:
        """β(t) = β_min + t·(β_max − β_min)."""
        return _back(self.beta_min + _up(t) * (self.beta_max - self.beta_min), t)

    def alpha_bar(self, t: Time) -> Time:
        """ᾱ(t) = exp(−(β_min·t + ½·(β_max − β_min)·t²))."""
        u = _up(t)
        exponent = -(self.beta_min * u + 0.5 * (self.beta_max - self.beta_min) * u**2)
        out = torch.exp(exponent) if isinstance(exponent, Tensor) else math.exp(exponent)
        return _back(out, t)

    def sqrt_one_minus_alpha_bar(self, t: Time) -> Time:
        """√(1 − ᾱ(t)) (sqrt_nonneg). 1 − ᾱ cancels near t = 0, so 16-bit t is
        evaluated in float32 and the result rounded once."""
        return _back(sqrt_nonneg(1.0 - self.alpha_bar(_up(t))), t)

    def time_of_edm_sigma(self, sigma: Time) -> Time:
        """The t with ᾱ(t) = 1/(1 + σ²), σ EDM's noise level: L = log1p(σ²),
        t = 2L/(β_min + √(β_min² + 2(β_max − β_min)·L))."""
        s = _up(sigma)
        if isinstance(s, Tensor):
            L = torch.log1p(s**2)
            root = torch.sqrt(self.beta_min**2 + 2 * (self.beta_max - self.beta_min) * L)
        else:
            L = math.log1p(s**2)
            root = math.sqrt(self.beta_min**2 + 2 * (self.beta_max - self.beta_min) * L)
        return _back(2 * L / (self.beta_min + root), sigma)


@dataclass(frozen=True)
class VPCosineSchedule:
    """The continuous cosine VP schedule (Nichol & Dhariwal 2021, Eq. 17 with t/T → t):
    u(t) = (t + s)/(1 + s)·π/2, ᾱ(t) = cos²u(t)/cos²u(0), β(t) = −d log ᾱ/dt = π/(1 + s)·tan u(t).
    At t = 1, ᾱ → 0 and β → ∞ (the discrete schedule clips its last β at 0.999 instead).
    Methods take a float (giving a float) or a tensor (giving a tensor of its dtype). Tensors
    are evaluated in float64 (the coefficient dtype) and the result rounded once: near t = 1,
    u is within an ulp of π/2, where float32's own π/2 would even flip the sign of tan u."""

    s: float = 0.008

    def _u(self, t: Time) -> Time:
        return (t + self.s) / (1 + self.s) * math.pi / 2

    def beta(self, t: Time) -> Time:
        """β(t) = π/(1 + s)·tan u(t)."""
        u = self._u(_hi(t))
        tan = torch.tan(u) if isinstance(u, Tensor) else math.tan(u)
        return _back(math.pi / (1 + self.s) * tan, t)

    def alpha_bar(self, t: Time) -> Time:
        """ᾱ(t) = cos²u(t)/cos²u(0)."""
        u = self._u(_hi(t))
        cos = torch.cos(u) if isinstance(u, Tensor) else math.cos(u)
        return _back(cos**2 / math.cos(self._u(0)) ** 2, t)

    def sqrt_one_minus_alpha_bar(self, t: Time) -> Time:
        """√(1 − ᾱ(t)) (sqrt_nonneg)."""
        return _back(sqrt_nonneg(1.0 - self.alpha_bar(_hi(t))), t)

    def time_of_edm_sigma(self, sigma: Time) -> Time:
        """The t with ᾱ(t) = 1/(1 + σ²), σ EDM's noise level: u = atan2(√(sin²u(0) + σ²),
        cos u(0)), t = u·2(1 + s)/π − s, clamped to [0, 1]."""
        u0 = self._u(0)
        s = _hi(sigma)
        if isinstance(s, Tensor):
            u = torch.atan2(torch.sqrt(math.sin(u0) ** 2 + s**2), torch.full_like(s, math.cos(u0)))
            t = torch.clamp(u * 2 * (1 + self.s) / math.pi - self.s, 0.0, 1.0)
        else:
            u = math.atan2(math.sqrt(math.sin(u0) ** 2 + s**2), math.cos(u0))
            t = min(max(u * 2 * (1 + self.s) / math.pi - self.s, 0.0), 1.0)
        return _back(t, sigma)


def _hi(t: Time) -> Time:
    """A tensor t in the coefficient dtype (float64 where the device has it)."""
    return t.to(coef_dtype(t.device)) if isinstance(t, Tensor) else t


VPContinuousSchedule = VPLinearSchedule | VPCosineSchedule


def _up(t: Time) -> Time:
    """A 16-bit tensor t in float32 (the methods round their result once, at the end)."""
    return t.to(work_dtype(t.dtype)) if isinstance(t, Tensor) else t


def _back(value: Time, t: Time) -> Time:
    return value.to(t.dtype) if isinstance(t, Tensor) else value


def pf_ode_rhs(sch: VPContinuousSchedule, model: EpsModel, x: Tensor, t: Time) -> Tensor:
    """dx/dt = −½β(t)·x + ½·β(t)/√(1 − ᾱ(t))·ε̂(x, t)   (Song et al. 2021, Eq. 13;
    score = −ε̂/√(1 − ᾱ(t))).
    A float t outside [0, 1] is a ValueError (tensor t is not checked: no host sync).
    Shapes: x (B, C, H, W); t float, 0-d or (B,) -> (B, C, H, W) in x's dtype."""
    wd = work_dtype(x.dtype)
    if isinstance(t, Tensor):
        tc = t.to(device=x.device, dtype=coef_dtype(x.device))
        tc = tc.reshape(tc.shape + (1,) * (x.ndim - tc.ndim)) if tc.ndim else tc
        beta, sqrt_1m, ab = sch.beta(tc), sch.sqrt_one_minus_alpha_bar(tc), sch.alpha_bar(tc)
        drift_x = (-0.5 * beta).to(wd)
        drift_eps = (0.5 * safe_div(beta, sqrt_1m)).to(wd)
        t_norm = t.to(device=x.device, dtype=wd)
    else:
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"t must lie in [0, 1], got t = {t!r}")
        tf = float(t)
        beta, sqrt_1m, ab = sch.beta(tf), sch.sqrt_one_minus_alpha_bar(tf), sch.alpha_bar(tf)
        drift_x = -0.5 * beta
        drift_eps = 0.5 * safe_div(beta, sqrt_1m)
        t_norm = float(t)
    out = model(x, t_norm).to(wd)
    # ε̂ from the model's output at ᾱ(t) (runtime.prediction; ε̂ = out for an ε-model)
    eps_hat = eps_from_output(ab, x.to(wd), out, prediction_of(model))
    return (drift_x * x.to(wd) + drift_eps * eps_hat).to(x.dtype)


def euler_step(f: Callable[[Tensor, Time], Tensor], x: Tensor, t: Time, dt: Time) -> Tensor:
    """x + dt·f(x, t): one explicit Euler step (dt signed). Shapes: x (…) -> (…)."""
    return (x + dt * f(x, t)).to(x.dtype)


def pf_ode_uniform_grid(steps: int, t_start: float = 1.0) -> list[float]:
    """t_i = t_start − i·h, h = t_start/steps, for i = 0..steps−1, then 0: the uniform grid of
    PF-ODE Euler. t_start ∈ (0, 1]; the cosine schedule needs t_start < 1.
    Shapes: -> (steps + 1,), a list of floats."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not 0.0 < t_start <= 1.0:
        raise ValueError(f"t_start must lie in (0, 1], got t_start = {t_start!r}")
    h = t_start / steps
    return [t_start - i * h for i in range(steps)] + [0.0]


@torch.no_grad()
def pf_ode_sample_euler(
    sch: VPContinuousSchedule,
    model: EpsModel,
    x_T: Tensor,
    grid: Sequence[float] | Tensor,
    noise: Tensor | torch.Generator | None = None,
    *,
    progress: bool = False,
) -> Tensor:
    """Integrate the PF ODE over the t grid t_0 > … > t_N in [0, 1] with Euler steps:
    x ← x + (t_{i+1} − t_i)·rhs(x, t_i) (the drift read at t_0, …, t_{N−1}; `pf_ode_uniform_grid`
    builds the uniform grid ending at 0). Deterministic: noise must be None.
    Shapes: x_T (B, C, H, W), grid (N + 1,) -> (B, C, H, W). Runs under torch.no_grad()."""
    ts = decreasing_grid("grid", grid, 0.0, 1.0)
    check_deterministic(noise)

    def rhs(y: Tensor, s: Time) -> Tensor:
        return pf_ode_rhs(sch, model, y, s)

    x = x_T
    for i in tqdm(range(len(ts) - 1), desc="pf-ode", disable=not progress):
        t_i, dt = ts[i], ts[i + 1] - ts[i]
        x = euler_step(rhs, x, t_i, dt)
    return x


__all__ = [
    "VPCosineSchedule",
    "VPContinuousSchedule",
    "VPLinearSchedule",
    "euler_step",
    "pf_ode_rhs",
    "pf_ode_sample_euler",
    "pf_ode_uniform_grid",
]
