"""Ancestral sampling (DDPM, Ho et al. 2020, Algorithm 2 and Eq. 11).

The reverse step with index k ∈ {0..T−1} maps x_{k+1} → x_k, i.e. it runs at time t = k + 1.
Its variance is the "fixed small" choice σ_t² = β̃_t (DDPM §3.2), so β̃_1 = 0 makes the last
step noiseless.
"""

import numpy as np
from jaxtyping import Float

from spec.core import (
    EpsModel,
    Index,
    check_index,
    check_same_shape,
    safe_div,
    sqrt_nonneg,
)
from spec.schedule import VPSchedule, time_of_index

__all__ = ["x0_pred", "ddpm_step", "ddpm_sample"]


def x0_pred(
    sched: VPSchedule, model: EpsModel, x_t: Float[np.ndarray, "*shape"], t: Index
) -> Float[np.ndarray, "*shape"]:
    """Predicted clean sample x̂_0 (DDPM Eq. 4 solved for x_0; DDIM Eq. 9; TorchLean `x0Pred`).

    Formula: ε̂ = ε_θ(x_t, t/T);  x̂_0 = safe_div(x_t − sqrt_nonneg(1 − ᾱ_t)·ε̂, sqrt_nonneg(ᾱ_t)),
    t ∈ {0..T}. Unclipped.
    Shapes: x_t (*shape) -> (*shape).
    """
    t = check_index("t", t, 0, sched.T)
    ab = sched.alpha_bar(t)
    eps_hat = model.eps(x_t, time_of_index(t, sched.T))
    return safe_div(x_t - sqrt_nonneg(1 - ab) * eps_hat, sqrt_nonneg(ab))


def ddpm_step(
    sched: VPSchedule,
    model: EpsModel,
    k: Index,
    x_t: Float[np.ndarray, "*shape"],
    z: Float[np.ndarray, "..."],
) -> Float[np.ndarray, "*shape"]:
    """Ancestral step x_t → x_{t−1}, t = k + 1, k ∈ {0..T−1} (DDPM Algorithm 2; `ddpmStep`).

    Formula: x_{t−1} = 1/√α_t · (x_t − β_t/√(1 − ᾱ_t) · ε_θ(x_t, t/T)) + σ_t·z,  σ_t² = β̃_t
    (Eq. 11), with safe_div / sqrt_nonneg as written below.
    Shapes: x_t (*shape), z (*shape) -> (*shape).
    """
    k = check_index("k", k, 0, sched.T - 1)
    check_same_shape("z", z, "x_t", x_t.shape)
    t = k + 1
    ab_prev, ab = sched.alpha_bar(t - 1), sched.alpha_bar(t)
    beta_t, alpha_t = sched.beta(k), sched.alpha(k)
    # 1. ε̂ = ε_θ(x_t, t/T)
    eps_hat = model.eps(x_t, time_of_index(t, sched.T))
    # 2. mean = (x_t − β_t/√(1 − ᾱ_t)·ε̂) / √α_t
    mean = safe_div(x_t - safe_div(beta_t, sqrt_nonneg(1 - ab)) * eps_hat, sqrt_nonneg(alpha_t))
    # 3. σ_t = √β̃_t, β̃_t = (1 − ᾱ_{t−1})·β_t / (1 − ᾱ_t)
    sigma = sqrt_nonneg(safe_div((1 - ab_prev) * beta_t, 1 - ab))
    # 4. x_{t−1} = mean + σ_t·z
    return mean + sigma * z


def ddpm_sample(
    sched: VPSchedule,
    model: EpsModel,
    x_T: Float[np.ndarray, "*shape"],
    noise: Float[np.ndarray, "..."],
) -> Float[np.ndarray, "*shape"]:
    """Ancestral sampling x_T → x_0 (DDPM Algorithm 2; TorchLean `ddpmSample`).

    Formula: for k = T−1, …, 0: x ← ddpm_step(sched, model, k, x, noise[k]).
    noise[k] is used by step k, so noise[T−1] is used first.
    Shapes: x_T (*shape), noise (T, *shape) -> (*shape).
    """
    check_same_shape("noise", noise, "(T, *x_T.shape)", (sched.T, *x_T.shape))
    x = x_T
    for k in reversed(range(sched.T)):
        x = ddpm_step(sched, model, k, x, noise[k])
    return x
