"""The probability-flow ODE of the VP SDE and its Euler sampler: the twins of `spec.pf_ode`.

Continuous time t ∈ [0, 1] (Song et al. 2021): β(t) = β0 + t·(β1 − β0),
ᾱ(t) = exp(−(β0·t + ½·(β1 − β0)·t²)), σ(t) = √(1 − ᾱ(t)). The model is fed t itself.
Drift (Song et al. 2021, Eq. 13 with score = −ε̂/σ(t)): dx/dt = −½β(t)·x + ½·β(t)/σ(t)·ε̂(x, t),
ε̂ converted from an x0- or v-model's output at ᾱ(t) by runtime.prediction.
TorchLean's pfOdeRhs omits the ½ of the second term, and its Euler recursion evaluates the drift
at t = 1/n first; both are errors and are not copied (see FINDINGS.md).
Shapes: x (B, C, H, W); t a float, a 0-d tensor or a (B,) tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from runtime.core import EpsModel, coef_dtype, safe_div, sqrt_nonneg, work_dtype
from runtime.dynamics import DynamicalSystem
from runtime.prediction import eps_from_output, prediction_of

Time = float | Tensor


@dataclass(frozen=True)
class VPLinearSchedule:
    """The VP SDE with linear β(t) (Song et al. 2021, §3.4; DDPM's schedule in the limit T → ∞).
    Methods take a float (giving a float) or a tensor (giving a tensor of its dtype)."""

    beta0: float = 0.1
    beta1: float = 20.0

    def beta(self, t: Time) -> Time:
        """β(t) = β0 + t·(β1 − β0)."""
        return _back(self.beta0 + _up(t) * (self.beta1 - self.beta0), t)

    def alpha_bar(self, t: Time) -> Time:
        """ᾱ(t) = exp(−(β0·t + ½·(β1 − β0)·t²))."""
        u = _up(t)
        exponent = -(self.beta0 * u + 0.5 * (self.beta1 - self.beta0) * u**2)
        out = torch.exp(exponent) if isinstance(exponent, Tensor) else math.exp(exponent)
        return _back(out, t)

    def sigma(self, t: Time) -> Time:
        """σ(t) = √(1 − ᾱ(t)) (sqrt_nonneg). 1 − ᾱ cancels near t = 0, so 16-bit t is
        evaluated in float32 and the result rounded once."""
        return _back(sqrt_nonneg(1.0 - self.alpha_bar(_up(t))), t)


def _up(t: Time) -> Time:
    """A 16-bit tensor t in float32 (the methods round their result once, at the end)."""
    return t.to(work_dtype(t.dtype)) if isinstance(t, Tensor) else t


def _back(value: Time, t: Time) -> Time:
    return value.to(t.dtype) if isinstance(t, Tensor) else value


def pf_ode_rhs(sch: VPLinearSchedule, model: EpsModel, x: Tensor, t: Time) -> Tensor:
    """dx/dt = −½β(t)·x + ½·β(t)/σ(t)·ε̂(x, t)   (Song et al. 2021, Eq. 13; score = −ε̂/σ).
    A float t outside [0, 1] is a ValueError (tensor t is not checked: no host sync).
    Shapes: x (B, C, H, W); t float, 0-d or (B,) -> (B, C, H, W) in x's dtype."""
    wd = work_dtype(x.dtype)
    if isinstance(t, Tensor):
        tc = t.to(device=x.device, dtype=coef_dtype(x.device))
        tc = tc.reshape(tc.shape + (1,) * (x.ndim - tc.ndim)) if tc.ndim else tc
        beta, sigma, ab = sch.beta(tc), sch.sigma(tc), sch.alpha_bar(tc)
        drift_x = (-0.5 * beta).to(wd)
        drift_eps = (0.5 * safe_div(beta, sigma)).to(wd)
        t_norm = t.to(device=x.device, dtype=wd)
    else:
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"t must lie in [0, 1], got t = {t!r}")
        beta, sigma, ab = sch.beta(float(t)), sch.sigma(float(t)), sch.alpha_bar(float(t))
        drift_x = -0.5 * beta
        drift_eps = 0.5 * safe_div(beta, sigma)
        t_norm = float(t)
    out = model(x, t_norm).to(wd)
    # ε̂ from the model's output at ᾱ(t) (runtime.prediction; ε̂ = out for an ε-model)
    eps_hat = eps_from_output(ab, x.to(wd), out, prediction_of(model))
    return (drift_x * x.to(wd) + drift_eps * eps_hat).to(x.dtype)


def euler_step(f: Callable[[Tensor, Time], Tensor], x: Tensor, t: Time, dt: Time) -> Tensor:
    """x + dt·f(x, t): one explicit Euler step (dt signed). Shapes: x (…) -> (…)."""
    return (x + dt * f(x, t)).to(x.dtype)


def pf_ode_euler_system(
    sch: VPLinearSchedule, model: EpsModel, t: Time, dt: Time
) -> DynamicalSystem:
    """x ↦ euler_step(pf_ode_rhs, x, t, dt) as a DynamicalSystem."""

    def rhs(y: Tensor, s: Time) -> Tensor:
        return pf_ode_rhs(sch, model, y, s)

    return DynamicalSystem(lambda x: euler_step(rhs, x, t, dt))


@torch.no_grad()
def pf_ode_sample_euler(
    sch: VPLinearSchedule, model: EpsModel, steps: int, x1: Tensor, progress: bool = False
) -> Tensor:
    """Integrate the PF ODE from t = 1 to t = 0 with `steps` Euler steps of size h = 1/steps:
    x ← x − h·rhs(x, t_i), t_i = 1 − i·h for i = 0..steps−1 (the drift is read at 1, 1 − h, …, h).
    Shapes: x1 (B, C, H, W) -> (B, C, H, W). Runs under torch.no_grad()."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")

    def rhs(y: Tensor, s: Time) -> Tensor:
        return pf_ode_rhs(sch, model, y, s)

    h = 1.0 / steps
    x = x1
    for i in tqdm(range(steps), desc="pf-ode", disable=not progress):
        t_i = 1.0 - i * h
        x = euler_step(rhs, x, t_i, -h)
    return x


__all__ = [
    "VPLinearSchedule",
    "euler_step",
    "pf_ode_euler_system",
    "pf_ode_rhs",
    "pf_ode_sample_euler",
]
