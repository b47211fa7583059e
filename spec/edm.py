"""Euler and Heun samplers in EDM form (Karras, Aittala, Aila & Laine 2022, "EDM").

EDM writes every diffusion model as x̃ = x_0 + σ·ε (Eq. 1 with s(t) = 1) and solves the
probability-flow ODE in σ itself (their choice σ(t) = t, Table 1 "Ours"):

    dx̃/dσ = (x̃ − D(x̃; σ))/σ                                              (Eq. 3 and 4)

where D(x̃; σ) is the denoiser, the model's estimate of x_0.

The VP ↔ EDM mapping (Karras Table 1, VP column; Song et al. 2021). A VP state
x_t = √ᾱ·x_0 + √(1 − ᾱ)·ε is x̃ = x_t/√ᾱ = x_0 + σ·ε with

    σ = √((1 − ᾱ)/ᾱ)        and back        ᾱ = 1/(1 + σ²),   x_t = x̃/√(1 + σ²).

So a VP ε-model is a denoiser: D(x̃; σ) = x̂_0 of x_t = x̃/√(1 + σ²) at the model time t with
ᾱ(t) = 1/(1 + σ²) (`time_of_edm_sigma` of a continuous schedule of `spec.pf_ode`), i.e.
x̂_0 = (x_t − √(1 − ᾱ)·ε̂)/√ᾱ = x̃ − σ·ε̂.

The time discretisation (Karras Eq. 5, ρ = 7), with σ_N = 0 appended:

    σ_i = (σ_max^{1/ρ} + i/(N − 1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ,  i = 0..N−1;   σ_N = 0.

Heun (Karras Algorithm 1, which is Algorithm 2 with S_churn = 0) takes an Euler step and, unless
it lands on σ = 0, corrects it with the slope at its end (the trapezoidal rule): 2N − 1 model
evaluations on N + 1 σ's ending in 0. The last step, into σ = 0, is a plain Euler step: the slope
(x̃ − D)/σ is not defined at σ = 0. Euler is the same loop without the correction (N
evaluations). Both start from x̃ at σ_0 = σ_max; EDM draws it as σ_max·z, a VP sampler as
x_T = z, i.e. x̃ = z·√(1 + σ_max²) (`vp_to_edm`).
"""

from collections.abc import Sequence

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
from spec.pf_ode import VPContinuousSchedule
from spec.prediction import AnyModel, model_output, x0_from_output

__all__ = [
    "vp_to_edm",
    "edm_to_vp",
    "edm_sigmas",
    "edm_denoise",
    "edm_euler_step",
    "edm_heun_step",
    "edm_sample_euler",
    "edm_sample_heun",
]


def vp_to_edm(
    alpha_bar: Scalar, x_t: Float[np.ndarray, "*shape"]
) -> tuple[Float[np.ndarray, "*shape"], Scalar]:
    """A VP state as an EDM state (Karras et al. 2022, Table 1, VP column; Eq. 1).

    Formula: x̃ = safe_div(x_t, sqrt_nonneg(ᾱ)); σ = sqrt_nonneg(safe_div(1 − ᾱ, ᾱ)), ᾱ ∈ (0, 1].
    Shapes: x_t (*shape), alpha_bar scalar -> ((*shape), scalar).
    """
    check(holds(0 < alpha_bar <= 1, f"alpha_bar must lie in (0, 1], got alpha_bar = {alpha_bar!r}"))
    return safe_div(x_t, sqrt_nonneg(alpha_bar)), sqrt_nonneg(safe_div(1 - alpha_bar, alpha_bar))


def edm_to_vp(
    sigma: Scalar, x_tilde: Float[np.ndarray, "*shape"]
) -> tuple[Scalar, Float[np.ndarray, "*shape"]]:
    """An EDM state as a VP state (the inverse of `vp_to_edm`).

    Formula: ᾱ = 1/(1 + σ²); x_t = x̃/√(1 + σ²), σ ≥ 0.
    Shapes: x_tilde (*shape), sigma scalar -> (scalar, (*shape)).
    """
    check(holds(sigma >= 0, f"sigma must be >= 0, got sigma = {sigma!r}"))
    return 1 / (1 + sigma**2), x_tilde / np.sqrt(1 + sigma**2)


def edm_sigmas(
    n: Index, sigma_min: Scalar, sigma_max: Scalar, rho: Scalar = 7.0
) -> Float[np.ndarray, " n_plus_1"]:
    """The EDM noise levels σ_0 = σ_max > … > σ_{N−1} = σ_min > σ_N = 0 (Karras Eq. 5).

    Formula: σ_i = (σ_max^{1/ρ} + i/(N − 1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ for i = 0..N−1
    (N = 1: σ_0 = σ_max), then σ_N = 0. Needs 0 < σ_min < σ_max and ρ > 0.
    Shapes: -> (n + 1,), float64.
    """
    n = check(
        in_range("n", n, 1, 2**62),
        holds(0 < sigma_min < sigma_max, f"need 0 < sigma_min < sigma_max, got sigma_min = "
              f"{sigma_min!r}, sigma_max = {sigma_max!r}"),
        holds(rho > 0, f"rho must be > 0, got rho = {rho!r}"),
    )
    ramp = np.arange(n, dtype=np.float64) / max(n - 1, 1)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return np.concatenate([(hi + ramp * (lo - hi)) ** rho, [0.0]])


def edm_denoise(
    sch: VPContinuousSchedule, model: AnyModel, x_tilde: Float[np.ndarray, "*shape"], sigma: Scalar
) -> Float[np.ndarray, "*shape"]:
    """The denoiser D(x̃; σ) of a VP ε-model (Karras et al. 2022, Eq. 2 and Table 1, VP).

    Formula: ᾱ = 1/(1 + σ²); x_t = x̃/√(1 + σ²) (edm_to_vp); t = sch.time_of_edm_sigma(σ);
    x̂_0 = x0_from_output(ᾱ, x_t, model output at t) (spec.prediction; for an ε-model
    x̂_0 = safe_div(x_t − sqrt_nonneg(1 − ᾱ)·ε̂, sqrt_nonneg(ᾱ)) = x̃ − σ·ε̂). This is the one place
    where the model's output becomes x̂_0 in EDM form.
    Shapes: x_tilde (*shape), sigma scalar -> (*shape).
    """
    ab, x_t = edm_to_vp(sigma, x_tilde)
    out, prediction = model_output(model, x_t, sch.time_of_edm_sigma(sigma))
    return x0_from_output(ab, x_t, out, prediction)


def _slope(
    sch: VPContinuousSchedule, model: AnyModel, x: Float[np.ndarray, "*shape"], sigma: Scalar
) -> Float[np.ndarray, "*shape"]:
    """dx̃/dσ = (x̃ − D(x̃; σ))/σ (Karras Eq. 4 with σ(t) = t, s(t) = 1), σ > 0."""
    return (x - edm_denoise(sch, model, x, sigma)) / sigma


def _check_sigma_pair(sigma: Scalar, sigma_next: Scalar) -> None:
    check(holds(0 <= sigma_next < sigma,
                f"need 0 <= sigma_next < sigma, got sigma = {sigma!r}, sigma_next = {sigma_next!r}"))


def edm_euler_step(
    sch: VPContinuousSchedule,
    model: AnyModel,
    x: Float[np.ndarray, "*shape"],
    sigma: Scalar,
    sigma_next: Scalar,
) -> Float[np.ndarray, "*shape"]:
    """One Euler step σ → σ_next of the EDM ODE (Karras Algorithm 1, lines 4–5).

    Formula: d = (x̃ − D(x̃; σ))/σ; x̃' = x̃ + (σ_next − σ)·d, 0 ≤ σ_next < σ.
    Shapes: x (*shape), sigma and sigma_next scalars -> (*shape).
    """
    _check_sigma_pair(sigma, sigma_next)
    return x + (sigma_next - sigma) * _slope(sch, model, x, sigma)


def edm_heun_step(
    sch: VPContinuousSchedule,
    model: AnyModel,
    x: Float[np.ndarray, "*shape"],
    sigma: Scalar,
    sigma_next: Scalar,
) -> Float[np.ndarray, "*shape"]:
    """One Heun step σ → σ_next of the EDM ODE (Karras Algorithm 1, lines 4–8).

    Formula: d = (x̃ − D(x̃; σ))/σ; x̃' = x̃ + (σ_next − σ)·d; if σ_next ≠ 0:
    d' = (x̃' − D(x̃'; σ_next))/σ_next and x̃' = x̃ + (σ_next − σ)·(½d + ½d')
    (2 model evaluations; 1 when σ_next = 0, where the step is Euler's).
    Shapes: x (*shape), sigma and sigma_next scalars -> (*shape).
    """
    _check_sigma_pair(sigma, sigma_next)
    # 1. Euler predictor
    d = _slope(sch, model, x, sigma)
    x_next = x + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_next
    # 2. trapezoidal corrector with the slope at (x̃', σ_next)
    d_next = _slope(sch, model, x_next, sigma_next)
    return x + (sigma_next - sigma) * (0.5 * d + 0.5 * d_next)


def edm_sample_euler(
    sch: VPContinuousSchedule,
    model: AnyModel,
    x_T: Float[np.ndarray, "*shape"],
    grid: Sequence[Scalar] | Float[np.ndarray, " n_plus_1"],
    noise: Float[np.ndarray, "..."] | None = None,
) -> Float[np.ndarray, "*shape"]:
    """Euler in EDM form over σ_0 > … > σ_N ≥ 0 (Karras Algorithm 1 without its correction).

    Formula: for i = 0..N−1: x̃ ← edm_euler_step(σ_i → σ_{i+1}); x_T is x̃ at σ_0 (EDM scale).
    N model evaluations. `grid`: the σ's, strictly decreasing, ≥ 0 (e.g. `edm_sigmas`).
    Deterministic: noise must be None.
    Shapes: x_T (*shape), grid (N + 1,) -> (*shape).
    """
    sigmas = check(decreasing_grid("grid", grid), deterministic(noise))
    x = x_T
    for i in range(len(sigmas) - 1):
        x = edm_euler_step(sch, model, x, sigmas[i], sigmas[i + 1])
    return x


def edm_sample_heun(
    sch: VPContinuousSchedule,
    model: AnyModel,
    x_T: Float[np.ndarray, "*shape"],
    grid: Sequence[Scalar] | Float[np.ndarray, " n_plus_1"],
    noise: Float[np.ndarray, "..."] | None = None,
) -> Float[np.ndarray, "*shape"]:
    """Heun's second-order sampler in EDM form (Karras et al. 2022, Algorithm 1).

    Formula: for i = 0..N−1: x̃ ← edm_heun_step(σ_i → σ_{i+1}); x_T is x̃ at σ_0 (EDM scale).
    2N − 1 model evaluations when σ_N = 0 (the last step is Euler's), 2N otherwise.
    Deterministic: noise must be None.
    Shapes: x_T (*shape), grid (N + 1,) -> (*shape).
    """
    sigmas = check(decreasing_grid("grid", grid), deterministic(noise))
    x = x_T
    for i in range(len(sigmas) - 1):
        x = edm_heun_step(sch, model, x, sigmas[i], sigmas[i + 1])
    return x
