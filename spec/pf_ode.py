"""The probability-flow ODE of the VP SDE and its Euler solver (Song et al. 2021, §4.3).

Continuous time t ∈ [0, 1], fed to the model as t_norm = t (the time convention of
`spec/__init__.py`). Two continuous schedules, one per schedule the trainer offers
(β(t) = −d log ᾱ(t)/dt in both):

    linear (Song et al. 2021, Eq. 11 and App. B, where β_min and β_max are written β̄_min and
    β̄_max; DDPM's betas in the limit T → ∞):
    β(t) = β_min + t·(β_max − β_min),   ᾱ(t) = exp(−(β_min·t + ½·(β_max − β_min)·t²))
    cosine (Nichol & Dhariwal 2021, Eq. 17 with t/T → t):
    u(t) = (t + s)/(1 + s)·π/2,   ᾱ(t) = cos²u(t)/cos²u(0),   β(t) = π/(1 + s)·tan u(t)
    dx/dt = −½β(t)·x − ½β(t)·∇log p_t(x)       (Eq. 13 applied to the VP SDE, Eq. 11)
    ∇log p_t(x) ≈ −ε_θ(x, t)/√(1 − ᾱ(t))        (the ε ↔ score relation)
    ⇒ dx/dt = −½β(t)·x + ½·β(t)/√(1 − ᾱ(t))·ε_θ(x, t)

TorchLean's Lean spec writes this drift without the ½ on the score term (`pfOdeRhs` doubles the
score term) and its Euler recursion `pfOdeSampleEuler` evaluates the drift at t = 1/n first;
both are errata, recorded with their closed-form evidence in `spec.torchlean` and
docs/errata.md. The functions here follow the paper.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from jaxtyping import Float

from spec.core import (
    Index,
    Scalar,
    check,
    decreasing_grid,
    deterministic,
    holds,
    in_range,
    safe_div,
    sqrt_nonneg,
)
from spec.prediction import AnyModel, eps_from_output, model_output

__all__ = [
    "VPLinearSchedule",
    "VPCosineSchedule",
    "pf_ode_rhs",
    "euler_step",
    "pf_ode_uniform_grid",
    "pf_ode_sample_euler",
]


def in_unit_interval(t: Scalar) -> Callable[[], None]:
    """Entry-check rule (spec.core.check): the continuous time t lies in [0, 1]."""
    return holds(0 <= t <= 1, f"t must lie in [0, 1], got t = {t!r}")


@dataclass(frozen=True)
class VPLinearSchedule:
    """The continuous linear VP schedule (Song et al. 2021, Eq. 11 and App. B: β̄_min = 0.1,
    β̄_max = 20).

    Formula: β(t) = β_min + t·(β_max − β_min); ᾱ(t) = exp(−(β_min·t + ½(β_max − β_min)·t²));
    √(1 − ᾱ(t)) = sqrt_nonneg(1 − ᾱ(t)), t ∈ [0, 1].
    Shapes: scalars.
    """

    beta_min: Scalar = 0.1
    beta_max: Scalar = 20.0

    def beta(self, t: Scalar) -> Scalar:
        """β(t) = β_min + t·(β_max − β_min). Shapes: scalar -> scalar."""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def alpha_bar(self, t: Scalar) -> Scalar:
        """ᾱ(t) = exp(−(β_min·t + ½·(β_max − β_min)·t²)). Shapes: scalar -> scalar."""
        return math.exp(-(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2))

    def sqrt_one_minus_alpha_bar(self, t: Scalar) -> Scalar:
        """√(1 − ᾱ(t)) = sqrt_nonneg(1 − ᾱ(t)), the std of x_t given x_0. Shapes: scalar -> scalar."""
        return sqrt_nonneg(1 - self.alpha_bar(t))

    def time_of_edm_sigma(self, sigma: Scalar) -> Scalar:
        """The t with ᾱ(t) = 1/(1 + σ²), σ ≥ 0 EDM's noise level (Karras et al. 2022, Table 1, VP).

        Formula: L = log1p(σ²) = −log ᾱ(t) = β_min·t + ½(β_max − β_min)·t², solved as
        t = 2L/(β_min + √(β_min² + 2(β_max − β_min)·L)) (no cancellation; t > 1 for σ beyond
        EDM's σ at t = 1). Shapes: scalar -> scalar.
        """
        L = math.log1p(sigma**2)
        root = math.sqrt(self.beta_min**2 + 2 * (self.beta_max - self.beta_min) * L)
        return 2 * L / (self.beta_min + root)


@dataclass(frozen=True)
class VPCosineSchedule:
    """The continuous cosine VP schedule (Nichol & Dhariwal 2021, Eq. 17 with t/T → t).

    Formula: u(t) = (t + s)/(1 + s)·π/2; ᾱ(t) = cos²u(t)/cos²u(0);
    β(t) = −d log ᾱ/dt = π/(1 + s)·tan u(t); √(1 − ᾱ(t)) = sqrt_nonneg(1 − ᾱ(t)), t ∈ [0, 1].
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

    def sqrt_one_minus_alpha_bar(self, t: Scalar) -> Scalar:
        """√(1 − ᾱ(t)) = sqrt_nonneg(1 − ᾱ(t)), the std of x_t given x_0. Shapes: scalar -> scalar."""
        return sqrt_nonneg(1 - self.alpha_bar(t))

    def time_of_edm_sigma(self, sigma: Scalar) -> Scalar:
        """The t with ᾱ(t) = 1/(1 + σ²), σ ≥ 0 EDM's noise level (Karras et al. 2022, Table 1).

        Formula: cos u = cos u(0)/√(1 + σ²), i.e. u = atan2(√(sin²u(0) + σ²), cos u(0))
        (well conditioned at both ends); t = u·2(1 + s)/π − s, clamped to [0, 1] (rounding).
        Shapes: scalar -> scalar.
        """
        u0 = self._u(0)
        u = math.atan2(math.sqrt(math.sin(u0) ** 2 + sigma**2), math.cos(u0))
        return min(max(u * 2 * (1 + self.s) / math.pi - self.s, 0.0), 1.0)


VPContinuousSchedule = VPLinearSchedule | VPCosineSchedule
"""A continuous VP schedule: both have beta, alpha_bar, sqrt_one_minus_alpha_bar and
time_of_edm_sigma."""


def pf_ode_rhs(
    sch: VPContinuousSchedule, model: AnyModel, x: Float[np.ndarray, "*shape"], t: Scalar
) -> Float[np.ndarray, "*shape"]:
    """Right-hand side of the probability-flow ODE (Song et al. 2021, Eq. 13).

    Formula: dx/dt = −½·β(t)·x + ½·safe_div(β(t), sqrt_nonneg(1 − ᾱ(t)))·ε̂,  t ∈ [0, 1]
    (score = −ε̂/√(1 − ᾱ(t))), ε̂ = ε_θ(x, t) for an ε-model, else eps_from_output(ᾱ(t), x, out,
    p) of the model's output. (TorchLean's `pfOdeRhs` omits the ½: see `spec.torchlean`.)
    Shapes: x (*shape) -> (*shape).
    """
    check(in_unit_interval(t))
    beta = sch.beta(t)
    out, prediction = model_output(model, x, t)
    eps_hat = eps_from_output(sch.alpha_bar(t), x, out, prediction)
    return -0.5 * beta * x + 0.5 * safe_div(beta, sch.sqrt_one_minus_alpha_bar(t)) * eps_hat


def euler_step(
    f: Callable[[Any, Any], Any], x: Float[np.ndarray, "*shape"], t: Scalar, dt: Scalar
) -> Float[np.ndarray, "*shape"]:
    """One explicit Euler step (Euler's method).

    Formula: x' = x + dt·f(x, t)  (dt is signed; dt < 0 integrates backwards in time).
    Shapes: x (*shape), f(x, t) (*shape) -> (*shape).
    """
    return x + dt * f(x, t)


def pf_ode_uniform_grid(steps: Index, t_start: Scalar = 1.0) -> list[float]:
    """The uniform t grid of PF-ODE Euler: t_start = t_0 > t_1 > … > t_steps = 0.

    Formula: h = t_start/steps; t_i = t_start − i·h for i = 0..steps−1, then t_steps = 0.
    t_start ∈ (0, 1]; the cosine schedule needs t_start < 1 (β(1) = +∞).
    Shapes: -> (steps + 1,), a list of floats.
    """
    steps = check(in_range("steps", steps, 1, 2**62),
                  holds(0 < t_start <= 1, f"t_start must lie in (0, 1], got t_start = {t_start!r}"))
    h = t_start / steps
    return [t_start - i * h for i in range(steps)] + [0.0]


def pf_ode_sample_euler(
    sch: VPContinuousSchedule,
    model: AnyModel,
    x_T: Float[np.ndarray, "*shape"],
    grid: Sequence[Scalar] | Float[np.ndarray, " n_plus_1"],
    noise: Float[np.ndarray, "..."] | None = None,
) -> Float[np.ndarray, "*shape"]:
    """Euler on the PF ODE over a t grid t_0 > t_1 > … > t_N in [0, 1] (Song et al. 2021 §4.3).

    Formula: for i = 0..N−1: x ← x + (t_{i+1} − t_i)·pf_ode_rhs(x, t_i) (the drift at t_0,
    t_1, …, t_{N−1}; TorchLean's `pfOdeSampleEuler` recursion reads it at the mirrored times:
    see `spec.torchlean`). `pf_ode_uniform_grid(N, t_start)` is the uniform grid ending at 0.
    Deterministic: noise must be None.
    Shapes: x_T (*shape), grid (N + 1,) -> (*shape).
    """
    ts = check(decreasing_grid("grid", grid, 0, 1), deterministic(noise))
    x = x_T
    for i in range(len(ts) - 1):
        # 1. the drift at t_i;  2. x ← x + (t_{i+1} − t_i)·f(x, t_i)
        x = euler_step(lambda y, s: pf_ode_rhs(sch, model, y, s), x, ts[i], ts[i + 1] - ts[i])
    return x
