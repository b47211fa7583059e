"""Denoising diffusion implicit models (DDIM, Song, Meng & Ermon 2021).

Notation: DDIM's α_t is DDPM's ᾱ_t. Every formula here is written with DDPM's ᾱ
(`sched.alpha_bar`), so "ᾱ_prev" is ᾱ at the target time t_prev.

The generalized step (Eq. 12) from t to t_prev < t, with DDIM's noise scale σ_η (DDIM's σ_t(η),
Eq. 16; written σ_η here so that σ_t stays DDPM's √β̃_t):
    x̂_0    = (x_t − √(1 − ᾱ_t)·ε̂) / √ᾱ_t                        (Eq. 9)
    σ_η    = η · √((1 − ᾱ_prev)/(1 − ᾱ_t)) · √(1 − ᾱ_t/ᾱ_prev)  (Eq. 16)
    x_prev = √ᾱ_prev·x̂_0 + √(1 − ᾱ_prev − σ_η²)·ε̂ + σ_η·z
η = 0 is the deterministic DDIM; η = 1 with t_prev = t − 1 has σ_η² = β̃_t, DDPM's posterior
variance. The model's ε̂ gives the direction also when x̂_0 is clipped. x̂_0 and ε̂ come from
`spec.prediction` (`denoise`, `x0_from_output`), so ε-, x_0- and v-models share the step.
"""

from collections.abc import Sequence

import numpy as np
from jaxtyping import Float, Int

from spec.core import (
    Index,
    Scalar,
    check,
    decreasing_grid,
    holds,
    in_range,
    same_shape,
    sqrt_nonneg,
)
from spec.prediction import AnyModel, denoise, x0_from_output
from spec.schedule import VPSchedule

__all__ = [
    "ddim_step",
    "ddim_sample",
    "ddim_prev",
    "ddim_timesteps",
    "ddim_step_between",
    "ddim_sample_strided",
]


def ddim_step_between(
    sched: VPSchedule,
    model: AnyModel,
    t: Index,
    t_prev: Index,
    x_t: Float[np.ndarray, "*shape"],
    eta: Scalar = 0.0,
    z: Float[np.ndarray, "..."] | None = None,
    clip: bool = False,
) -> Float[np.ndarray, "*shape"]:
    """One generalized DDIM step x_t → x_{t_prev}, 0 ≤ t_prev < t ≤ T (DDIM Eq. 12 and 16).

    Formula (DDIM's α is DDPM's ᾱ):
      x̂_0, ε̂ = denoise(sched, model, x_t, t) (for an ε-model ε̂ = ε_θ(x_t, t/T) and
      x̂_0 = safe_div(x_t − sqrt_nonneg(1 − ᾱ_t)·ε̂, sqrt_nonneg(ᾱ_t))), x̂_0 clipped to [−1, 1] if clip;
      σ_η = η·sqrt_nonneg((1 − ᾱ_prev)/(1 − ᾱ_t))·sqrt_nonneg(1 − ᾱ_t/ᾱ_prev), both divisions
      exact (no safe_div; ᾱ_prev is 4.2e-9 at t_prev = 999 under zero terminal SNR): the ratio
      is 0 where its denominator is 0, which happens only where 1 − ᾱ_prev = 0 resp. ᾱ_t = 0 too;
      x_prev = sqrt_nonneg(ᾱ_prev)·x̂_0 + sqrt_nonneg(1 − ᾱ_prev − σ_η²)·ε̂ + σ_η·z.
    z is required when η > 0; with η = 0 and z None the σ_η·z term is 0. η must be ≥ 0.
    Shapes: x_t (*shape), z (*shape) or None -> (*shape).
    """
    t, t_prev = check(
        in_range("t", t, 1, sched.T),
        in_range("t_prev", t_prev, 0, t - 1),
        holds(eta >= 0, f"eta must be >= 0, got eta = {eta!r}"),
        holds(z is not None or not eta > 0,
              f"z (the step's noise) is required when eta > 0, got eta = {eta!r} and z = None"),
        same_shape("z", z, "x_t", x_t.shape),
    )
    ab, ab_prev = sched.alpha_bar[t], sched.alpha_bar[t_prev]
    # 1.–2. x̂_0 and ε̂ from the model's output (Eq. 9 for an ε-model), x̂_0 optionally clipped
    x0_hat, eps_hat = denoise(sched, model, x_t, t)
    if clip:
        x0_hat = np.clip(x0_hat, -1, 1)
    # 3. σ_η = η·√((1 − ᾱ_prev)/(1 − ᾱ_t))·√(1 − ᾱ_t/ᾱ_prev)  (Eq. 16); 1 − ᾱ_t = 0 only where
    #    ᾱ_prev = ᾱ_t = 1, ᾱ_prev = 0 only where ᾱ_t = 0 (both: ratio 0)
    noise_ratio = (1 - ab_prev) / (1 - ab) if ab < 1 else 0.0
    signal_ratio = ab / ab_prev if ab_prev > 0 else 0.0
    sigma_eta = eta * sqrt_nonneg(noise_ratio) * sqrt_nonneg(1 - signal_ratio)
    # 4. x_prev = √ᾱ_prev·x̂_0 + √(1 − ᾱ_prev − σ_η²)·ε̂ + σ_η·z  (Eq. 12)
    x_prev = sqrt_nonneg(ab_prev) * x0_hat + sqrt_nonneg(1 - ab_prev - sigma_eta**2) * eps_hat
    if z is not None:
        x_prev = x_prev + sigma_eta * z
    return x_prev


def ddim_prev(
    ab_prev: Scalar,
    ab: Scalar,
    x_t: Float[np.ndarray, "*shape"],
    eps_hat: Float[np.ndarray, "..."],
    clip: bool = True,
) -> Float[np.ndarray, "*shape"]:
    """Deterministic DDIM update from ᾱ_prev, ᾱ_t and ε̂ (DDIM Eq. 12, η = 0).

    Formula: x̂_0 = safe_div(x_t − sqrt_nonneg(1 − ᾱ_t)·ε̂, sqrt_nonneg(ᾱ_t)), clipped to [−1, 1]
    if clip; x_prev = sqrt_nonneg(ᾱ_prev)·x̂_0 + sqrt_nonneg(1 − ᾱ_prev)·ε̂.
    Shapes: x_t (*shape), eps_hat (*shape), ab_prev and ab scalars -> (*shape).
    """
    check(same_shape("eps_hat", eps_hat, "x_t", x_t.shape))
    # 1. x̂_0 from x_t and ε̂ (Eq. 9), optionally clipped
    x0_hat = x0_from_output(ab, x_t, eps_hat, "eps")
    if clip:
        x0_hat = np.clip(x0_hat, -1, 1)
    # 2. x_prev = √ᾱ_prev·x̂_0 + √(1 − ᾱ_prev)·ε̂  (Eq. 12 with σ = 0)
    return sqrt_nonneg(ab_prev) * x0_hat + sqrt_nonneg(1 - ab_prev) * eps_hat


def ddim_step(
    sched: VPSchedule, model: AnyModel, t: Index, x_t: Float[np.ndarray, "*shape"]
) -> Float[np.ndarray, "*shape"]:
    """Deterministic DDIM step x_t → x_{t−1}, t ∈ {1..T} (DDIM Eq. 12, η = 0).

    Formula: ddim_step(t) = ddim_step_between(t, t − 1, x_t, η = 0), unclipped.
    Shapes: x_t (*shape) -> (*shape).
    """
    t = check(in_range("t", t, 1, sched.T))
    return ddim_step_between(sched, model, t, t - 1, x_t)


def ddim_sample(
    sched: VPSchedule, model: AnyModel, x_T: Float[np.ndarray, "*shape"]
) -> Float[np.ndarray, "*shape"]:
    """Deterministic DDIM sampling over every time step.

    Formula: for t = T, …, 1: x ← ddim_step(sched, model, t, x).
    Shapes: x_T (*shape) -> (*shape).
    """
    x = x_T
    for t in range(sched.T, 0, -1):
        x = ddim_step(sched, model, t, x)
    return x


def ddim_timesteps(T: Index, num_steps: Index) -> Int[np.ndarray, " n_plus_1"]:
    """An evenly strided time grid from T: T = τ_0 > τ_1 > … > τ_n = 0 (`timestep_grid`'s "even").

    Formula: n = num_steps ∈ {1..T}; τ_i = (T·(n − i) + n // 2) // n, i = 0..n
    (integer round-half-up of T·(n − i)/n; strictly decreasing since T/n ≥ 1).
    This is not the DDIM paper's grid. DDIM's sub-sequence τ (§4.2; App. D.2's "linear" choice
    τ_i = ⌊c·i⌋) is, in the authors' code, range(0, T, T // n) in 0-based timesteps, i.e.
    1 + i·⌊T/n⌋ in our 1-based t (for n dividing T): `timestep_grid(T, n, "leading")` (901, 801,
    …, 1 for T = 1000, n = 10) is the spacing that reproduces the paper; "even" starts at T
    (1000, 900, …, 100).
    Shapes: -> (num_steps + 1,), int64.
    """
    T, n = check(in_range("T", T, 1, 2**62), in_range("num_steps", num_steps, 1, T))
    i = np.arange(n + 1, dtype=np.int64)
    return (T * (n - i) + n // 2) // n


def ddim_sample_strided(
    sched: VPSchedule,
    model: AnyModel,
    x_T: Float[np.ndarray, "*shape"],
    grid: Sequence[Index] | Int[np.ndarray, " n_plus_1"],
    noise: Float[np.ndarray, "..."] | None = None,
    *,
    eta: Scalar = 0.0,
    clip: bool = False,
) -> Float[np.ndarray, "*shape"]:
    """DDIM sampling on a strided grid τ_0 > … > τ_n = 0 (DDIM Eq. 12 and 16, §4.2).

    Formula: for i = 0..n−1: x ← ddim_step_between(τ_i, τ_{i+1}, x, η, noise[i], clip).
    noise[i] is used by the step τ_i → τ_{i+1}, in the order the steps run; it is required
    when η > 0. The grid must be strictly decreasing ints, τ_0 ∈ {1..T}, τ_n = 0.
    Shapes: x_T (*shape), grid (n + 1,), noise (n, *shape) or None -> (*shape).
    """
    steps = check(decreasing_grid("grid", grid, 0, sched.T, end=0, integers=True))
    n = len(steps) - 1
    check(
        holds(noise is not None or not eta > 0,
              f"noise is required when eta > 0, got eta = {eta!r} and noise = None"),
        same_shape("noise", noise, "(len(grid) - 1, *x_T.shape)", (n, *x_T.shape)),
    )
    x = x_T
    for i in range(n):
        z = noise[i] if noise is not None else None
        x = ddim_step_between(sched, model, steps[i], steps[i + 1], x, eta, z, clip)
    return x
