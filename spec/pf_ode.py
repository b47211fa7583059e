"""The probability-flow ODE of the VP SDE and its Euler solver (Song et al. 2021, §4.3).

Continuous time t ∈ [0, 1]; the model receives t itself as its normalized time (the same
[0, 1] scale as t/T of the discrete samplers). Two continuous schedules, one per schedule the
trainer offers (β(t) = −d log ᾱ(t)/dt in both):

    linear (Song et al. 2021, Eq. 11 and App. B; DDPM's betas in the limit T → ∞):
    β(t) = β_0 + t·(β_1 − β_0),   ᾱ(t) = exp(−(β_0·t + ½·(β_1 − β_0)·t²))
    cosine (Nichol & Dhariwal 2021, Eq. 17 with t/T → t):
    u(t) = (t + s)/(1 + s)·π/2,   ᾱ(t) = cos²u(t)/cos²u(0),   β(t) = π/(1 + s)·tan u(t)
    both:  σ(t) = √(1 − ᾱ(t))
    dx/dt = −½β(t)·x − ½β(t)·∇log p_t(x)       (Eq. 13 applied to the VP SDE, Eq. 11)
    ∇log p_t(x) ≈ −ε_θ(x, t)/σ(t)              (the ε ↔ score relation)
    ⇒ dx/dt = −½β(t)·x + ½·β(t)/σ(t)·ε_θ(x, t)

Two divergences from TorchLean's Lean spec, both settled by the closed form
(tests/test_spec_golden.py), where data ~ N(μ, s²I) and the exact predictor is
ε*(x, t) = σ(t)·(x − √ᾱ(t)·μ)/(ᾱ(t)·s² + σ(t)²):

1. TorchLean's `pfOdeRhs` computes −½β·x + (β/σ)·ε̂, i.e. it doubles the score term. With ε*,
   Euler on that right-hand side contracts N(0, I) towards a point: with s = 0.5, μ = 0.3 and
   100 steps the output std is about 0.001 (the test asserts < 0.05·s), while the formula
   above keeps the std at 0.5 within sampling error. In closed form, the exact flow's linear
   coefficient −½β + ½β/v (v = ᾱs² + σ², the variance of x_t) becomes −½β + β/v, which no
   longer transports N(0, 1) to N(μ, s²). We use ½·β/σ·ε̂.
2. TorchLean's `pfOdeSampleEuler` recursion evaluates the drift at t = 1/n, 2/n, …, 1 (its
   docstring promises t = 1, 1 − 1/n, …, 1/n). Integrating from t = 1 down to 0 with the
   drift taken at the mirrored times shifts the mean away from μ (about 0.06 for μ = 0.3,
   s = 0.5, 100 steps; the test asserts a shift wider than the whole tolerance that the
   correct order meets). We evaluate at t_i = 1 − i/n, i = 0..n−1, as the docstring says.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from jaxtyping import Float

from spec.core import Index, Scalar, check_index, safe_div, sqrt_nonneg
from spec.dynamics import DynamicalSystem
from spec.prediction import AnyModel, eps_from_output, model_output

__all__ = [
    "VPLinearSchedule",
    "VPCosineSchedule",
    "pf_ode_rhs",
    "euler_step",
    "pf_ode_sample_euler",
    "pf_ode_euler_system",
]


def _check_time(t: Scalar) -> None:
    if not 0 <= t <= 1:
        raise ValueError(f"t must lie in [0, 1], got t = {t!r}")


@dataclass(frozen=True)
class VPLinearSchedule:
    """The continuous linear VP schedule (Song et al. 2021, Eq. 11 and App. B; β_0 = 0.1, β_1 = 20).

    Formula: β(t) = beta0 + t·(beta1 − beta0); ᾱ(t) = exp(−(beta0·t + ½(beta1 − beta0)·t²));
    σ(t) = sqrt_nonneg(1 − ᾱ(t)), t ∈ [0, 1].
    Shapes: scalars.
    """

    beta0: Scalar = 0.1
    beta1: Scalar = 20.0

    def beta(self, t: Scalar) -> Scalar:
        """β(t) = beta0 + t·(beta1 − beta0). Shapes: scalar -> scalar."""
        return self.beta0 + t * (self.beta1 - self.beta0)

    def alpha_bar(self, t: Scalar) -> Scalar:
        """ᾱ(t) = exp(−(beta0·t + ½·(beta1 − beta0)·t²)). Shapes: scalar -> scalar."""
        return math.exp(-(self.beta0 * t + 0.5 * (self.beta1 - self.beta0) * t**2))

    def sigma(self, t: Scalar) -> Scalar:
        """σ(t) = sqrt_nonneg(1 − ᾱ(t)). Shapes: scalar -> scalar."""
        return sqrt_nonneg(1 - self.alpha_bar(t))

    def time_of_edm_sigma(self, sigma_edm: Scalar) -> Scalar:
        """The t with ᾱ(t) = 1/(1 + σ²), σ = σ_EDM ≥ 0 (Karras et al. 2022, Table 1, VP column).

        Formula: L = log1p(σ²) = −log ᾱ(t) = beta0·t + ½(beta1 − beta0)·t², solved as
        t = 2L/(beta0 + √(beta0² + 2(beta1 − beta0)·L)) (no cancellation; t > 1 for σ beyond
        σ_EDM(1)). Shapes: scalar -> scalar.
        """
        L = math.log1p(sigma_edm**2)
        return 2 * L / (self.beta0 + math.sqrt(self.beta0**2 + 2 * (self.beta1 - self.beta0) * L))


@dataclass(frozen=True)
class VPCosineSchedule:
    """The continuous cosine VP schedule (Nichol & Dhariwal 2021, Eq. 17 with t/T → t).

    Formula: u(t) = (t + s)/(1 + s)·π/2; ᾱ(t) = cos²u(t)/cos²u(0);
    β(t) = −d log ᾱ/dt = π/(1 + s)·tan u(t); σ(t) = sqrt_nonneg(1 − ᾱ(t)), t ∈ [0, 1].
    At integer points ᾱ(t/T) is the discrete cosine ᾱ_t of `cosine_betas(T, s)` wherever that
    is unclipped (every t < T at T = 1000). At t = 1 the continuous limit has ᾱ(1) = 0 and
    β(1) = +∞ (the SNR reaches 0; in floating point cos(π/2) ≈ 6e-17 gives ᾱ(1) ≈ 4e-33 and
    β(1) ≈ 5e16); the discrete schedule instead clips its last β at max_beta = 0.999, so its
    ᾱ_T = 0.001·ᾱ_{T−1} > 0. A PF-ODE solve therefore starts at some t < 1.
    Shapes: scalars.
    """

    s: Scalar = 0.008

    def _u(self, t: Scalar) -> Scalar:
        return (t + self.s) / (1 + self.s) * math.pi / 2

    def beta(self, t: Scalar) -> Scalar:
        """β(t) = π/(1 + s)·tan u(t). Shapes: scalar -> scalar."""
        return math.pi / (1 + self.s) * math.tan(self._u(t))

    def alpha_bar(self, t: Scalar) -> Scalar:
        """ᾱ(t) = cos²u(t)/cos²u(0). Shapes: scalar -> scalar."""
        return math.cos(self._u(t)) ** 2 / math.cos(self._u(0)) ** 2

    def sigma(self, t: Scalar) -> Scalar:
        """σ(t) = sqrt_nonneg(1 − ᾱ(t)). Shapes: scalar -> scalar."""
        return sqrt_nonneg(1 - self.alpha_bar(t))

    def time_of_edm_sigma(self, sigma_edm: Scalar) -> Scalar:
        """The t with ᾱ(t) = 1/(1 + σ²), σ = σ_EDM ≥ 0 (Karras et al. 2022, Table 1).

        Formula: cos u = cos u(0)/√(1 + σ²), i.e. u = atan2(√(sin²u(0) + σ²), cos u(0))
        (well conditioned at both ends); t = u·2(1 + s)/π − s, clamped to [0, 1] (rounding).
        Shapes: scalar -> scalar.
        """
        u0 = self._u(0)
        u = math.atan2(math.sqrt(math.sin(u0) ** 2 + sigma_edm**2), math.cos(u0))
        return min(max(u * 2 * (1 + self.s) / math.pi - self.s, 0.0), 1.0)


VPContinuousSchedule = VPLinearSchedule | VPCosineSchedule
"""A continuous VP schedule: both have beta, alpha_bar, sigma and time_of_edm_sigma."""


def pf_ode_rhs(
    sch: VPContinuousSchedule, model: AnyModel, x: Float[np.ndarray, "*shape"], t: Scalar
) -> Float[np.ndarray, "*shape"]:
    """Right-hand side of the probability-flow ODE (Song et al. 2021, Eq. 13; TorchLean `pfOdeRhs`).

    Formula: dx/dt = −½·β(t)·x + ½·safe_div(β(t), σ(t))·ε̂,  t ∈ [0, 1]
    (score = −ε̂/σ(t)), ε̂ = ε_θ(x, t) for an ε-model, else eps_from_output(ᾱ(t), x, out, p) of
    the model's output. TorchLean omits the ½ on the second term: see the module docstring.
    Shapes: x (*shape) -> (*shape).
    """
    _check_time(t)
    beta = sch.beta(t)
    out, prediction = model_output(model, x, t)
    eps_hat = eps_from_output(sch.alpha_bar(t), x, out, prediction)
    return -0.5 * beta * x + 0.5 * safe_div(beta, sch.sigma(t)) * eps_hat


def euler_step(
    f: Callable[[Any, Any], Any], x: Float[np.ndarray, "*shape"], t: Scalar, dt: Scalar
) -> Float[np.ndarray, "*shape"]:
    """One explicit Euler step (TorchLean `eulerStep`).

    Formula: x' = x + dt·f(x, t)  (dt is signed; dt < 0 integrates backwards in time).
    Shapes: x (*shape), f(x, t) (*shape) -> (*shape).
    """
    return x + dt * f(x, t)


def pf_ode_euler_system(
    sch: VPContinuousSchedule, model: AnyModel, t: Scalar, dt: Scalar
) -> DynamicalSystem:
    """One Euler step of the PF ODE at time t as a dynamical system (TorchLean `pfOdeEulerSystem`).

    Formula: DynamicalSystem(x ↦ x + dt·pf_ode_rhs(sch, model, x, t)), dt signed.
    Shapes: state (*shape) -> (*shape).
    """
    _check_time(t)
    return DynamicalSystem(
        lambda x: euler_step(lambda y, s: pf_ode_rhs(sch, model, y, s), x, t, dt)
    )


def pf_ode_sample_euler(
    sch: VPContinuousSchedule,
    model: AnyModel,
    steps: Index,
    x1: Float[np.ndarray, "*shape"],
    t_start: Scalar = 1.0,
) -> Float[np.ndarray, "*shape"]:
    """Euler on the PF ODE from t = t_start (default 1) down to 0 (Song et al. 2021 §4.3).

    Formula: h = t_start/steps; for i = 0..steps−1: t_i = t_start − i·h,
    x ← x − h·pf_ode_rhs(x, t_i) (drift at t_start, t_start − h, …, h; TorchLean's
    `pfOdeSampleEuler` recursion starts at h: see the module docstring). t_start ∈ (0, 1];
    the cosine schedule needs t_start < 1 (β(1) = +∞).
    Shapes: x1 (*shape) -> (*shape).
    """
    steps = check_index("steps", steps, 1, 2**62)
    if not 0 < t_start <= 1:
        raise ValueError(f"t_start must lie in (0, 1], got t_start = {t_start!r}")
    h = t_start / steps
    x = x1
    for i in range(steps):
        # 1. t_i = t_start − i·h;  2. x ← x + (−h)·f(x, t_i)
        t_i = t_start - i * h
        x = euler_step(lambda y, s: pf_ode_rhs(sch, model, y, s), x, t_i, -h)
    return x
