"""The probability-flow ODE of the VP SDE and its Euler solver (Song et al. 2021, §4.3).

Continuous time t ∈ [0, 1]; the model receives t itself as its normalized time (the same
[0, 1] scale as t/T of the discrete samplers).

    β(t) = β_0 + t·(β_1 − β_0)
    ᾱ(t) = exp(−(β_0·t + ½·(β_1 − β_0)·t²)),   σ(t) = √(1 − ᾱ(t))
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


def pf_ode_rhs(
    sch: VPLinearSchedule, model: AnyModel, x: Float[np.ndarray, "*shape"], t: Scalar
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
    sch: VPLinearSchedule, model: AnyModel, t: Scalar, dt: Scalar
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
    sch: VPLinearSchedule, model: AnyModel, steps: Index, x1: Float[np.ndarray, "*shape"]
) -> Float[np.ndarray, "*shape"]:
    """Euler on the PF ODE from t = 1 down to 0 (Song et al. 2021 §4.3; `pfOdeSampleEuler`).

    Formula: h = 1/steps; for i = 0..steps−1: t_i = 1 − i·h, x ← x − h·pf_ode_rhs(x, t_i)
    (drift at t = 1, 1 − h, …, h; TorchLean's recursion starts at h: see the module docstring).
    Shapes: x1 (*shape) -> (*shape).
    """
    steps = check_index("steps", steps, 1, 2**62)
    h = 1 / steps
    x = x1
    for i in range(steps):
        # 1. t_i = 1 − i·h;  2. x ← x + (−h)·f(x, t_i)
        t_i = 1 - i * h
        x = euler_step(lambda y, s: pf_ode_rhs(sch, model, y, s), x, t_i, -h)
    return x
