"""Ancestral sampling (DDPM, Ho et al. 2020, Algorithm 2 and Eq. 11).

The reverse step at time t ∈ {1..T} maps x_t → x_{t−1}. Its noise scale σ_t is one of the two
fixed choices of DDPM §3.2, read from `VARIANCES`: "fixed_small" σ_t² = β̃_t (the default; β̃_1 = 0
makes the last step noiseless) or "fixed_large" σ_t² = β_t. The model's output reaches the step
only as x̂_0 (`spec.prediction.denoise`), so an ε-, x_0- or v-prediction model runs through the
same formula.
"""

from collections.abc import Callable, Sequence

import numpy as np
from jaxtyping import Float, Int

from spec.core import Index, check, decreasing_grid, holds, in_range, same_shape, sqrt_nonneg
from spec.forward import q_posterior_mean_variance
from spec.prediction import AnyModel, denoise
from spec.schedule import VPSchedule

__all__ = ["x0_pred", "ddpm_step", "ddpm_sample"]

VARIANCES: dict[str, Callable[[VPSchedule, int, float], float]] = {
    # σ_t² = β̃_t: optimal for x_0 deterministically one point (DDPM §3.2)
    "fixed_small": lambda sched, t, beta_tilde: beta_tilde,
    # σ_t² = β_t: optimal for x_0 ~ N(0, I) (DDPM §3.2); Algorithm 2's z = 0 at t = 1 stated here,
    # since β_1 > 0 (β̃_1 = 0 gives it to fixed_small)
    "fixed_large": lambda sched, t, beta_tilde: sched.beta[t] if t > 1 else 0.0,
}
"""The reverse variance σ_t² of DDPM §3.2's two fixed choices, from (sched, t, β̃_t of Eq. 7)."""


def x0_pred(
    sched: VPSchedule, model: AnyModel, x_t: Float[np.ndarray, "*shape"], t: Index
) -> Float[np.ndarray, "*shape"]:
    """Predicted clean sample x̂_0 (DDPM Eq. 4 solved for x_0; DDIM Eq. 9).

    Formula: x̂_0 = denoise(sched, model, x_t, t)[0], t ∈ {0..T}; for an ε-model
    x̂_0 = safe_div(x_t − sqrt_nonneg(1 − ᾱ_t)·ε_θ(x_t, t/T), sqrt_nonneg(ᾱ_t)). Unclipped.
    Shapes: x_t (*shape) -> (*shape).
    """
    return denoise(sched, model, x_t, t)[0]


def ddpm_step(
    sched: VPSchedule,
    model: AnyModel,
    t: Index,
    x_t: Float[np.ndarray, "*shape"],
    z: Float[np.ndarray, "..."],
    *,
    variance: str = "fixed_small",
) -> Float[np.ndarray, "*shape"]:
    """Ancestral step x_t → x_{t−1}, t ∈ {1..T} (DDPM Algorithm 2, lines 3–4).

    Formula: x̂_0 = denoise(sched, model, x_t, t)[0];  x_{t−1} = μ̃_t(x_t, x̂_0) + σ_t·z with μ̃_t and
    β̃_t of q_posterior_mean_variance (Eq. 7) and σ_t² = VARIANCES[variance] (DDPM §3.2):
    "fixed_small" σ_t² = β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t, "fixed_large" σ_t² = β_t for t > 1
    and 0 at t = 1 (Algorithm 2: z = 0 at t = 1). For an ε-model this is Eq. 11,
    x_{t−1} = 1/√α_t·(x_t − β_t/√(1 − ᾱ_t)·ε̂) + σ_t·z, written through x̂_0 so that it stays
    total where α_t = 0 (β_T = 1 under zero terminal SNR).
    Shapes: x_t (*shape), z (*shape) -> (*shape).
    """
    t = check(in_range("t", t, 1, sched.T), same_shape("z", z, "x_t", x_t.shape),
              holds(variance in VARIANCES,
                    f"variance must be one of {sorted(VARIANCES)}, got {variance!r}"))
    # 1. x̂_0 from the model's output at (x_t, t/T)
    x0_hat, _ = denoise(sched, model, x_t, t)
    # 2. mean μ̃_t(x_t, x̂_0) and variance β̃_t of q(x_{t−1} | x_t, x̂_0)
    mean, beta_tilde = q_posterior_mean_variance(sched, x0_hat, x_t, t)
    # 3. x_{t−1} = mean + σ_t·z, σ_t² of the variance choice
    return mean + sqrt_nonneg(VARIANCES[variance](sched, t, beta_tilde)) * z


def ddpm_sample(
    sched: VPSchedule,
    model: AnyModel,
    x_T: Float[np.ndarray, "*shape"],
    grid: Sequence[Index] | Int[np.ndarray, " T_plus_1"],
    noise: Float[np.ndarray, "..."] | None = None,
    *,
    variance: str = "fixed_small",
) -> Float[np.ndarray, "*shape"]:
    """Ancestral sampling x_T → x_0 (DDPM Algorithm 2).

    Formula: for t = T, …, 1: x ← ddpm_step(sched, model, t, x, noise[t − 1], variance=variance)
    (σ_t² of DDPM §3.2's fixed choice `variance`, see ddpm_step).
    The chain visits every time: grid must be T, T − 1, …, 0. The step at time t uses
    noise[t − 1], so noise[T − 1] is used first; noise is required.
    Shapes: x_T (*shape), grid (T + 1,), noise (T, *shape) -> (*shape).
    """
    T = sched.T
    times = check(decreasing_grid("grid", grid, 0, T, end=0, integers=True))
    check(
        holds(times[0] == T and len(times) == T + 1,
              f"grid must be every time T, T - 1, …, 0 (T = {T}): DDPM's chain has no strided "
              f"form here, got {len(times) - 1} steps from grid[0] = {times[0]}"),
        holds(noise is not None, "noise is required (ancestral sampling draws a z every step), "
              "got noise = None"),
        same_shape("noise", noise, "(T, *x_T.shape)", (T, *x_T.shape)),
    )
    x = x_T
    for t in range(T, 0, -1):
        x = ddpm_step(sched, model, t, x, noise[t - 1], variance=variance)
    return x
