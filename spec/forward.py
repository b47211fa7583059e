"""The forward (noising) process q (DDPM, Ho et al. 2020, §2).

q(x_t | x_0) = N(√ᾱ_t·x_0, (1 − ᾱ_t)·I)                      (Eq. 4)
q(x_{t−1} | x_t, x_0) = N(μ̃_t(x_t, x_0), β̃_t·I)               (Eq. 6–7)
"""

import numpy as np
from jaxtyping import Float

from spec.core import Index, Scalar, check, in_range, safe_div, same_shape, sqrt_nonneg
from spec.schedule import VPSchedule

__all__ = ["q_sample", "q_posterior_mean_variance"]


def q_sample(
    sched: VPSchedule, x0: Float[np.ndarray, "*shape"], t: Index, eps: Float[np.ndarray, "..."]
) -> Float[np.ndarray, "*shape"]:
    """Sample x_t ~ q(x_t | x_0) with explicit noise (DDPM Eq. 4).

    Formula: x_t = sqrt_nonneg(ᾱ_t)·x_0 + sqrt_nonneg(1 − ᾱ_t)·ε,  t ∈ {0..T}
    (t = 0 gives x_0 itself).
    Shapes: x0 (*shape), eps (*shape) -> (*shape).
    """
    t = check(in_range("t", t, 0, sched.T), same_shape("eps", eps, "x0", x0.shape))
    ab = sched.alpha_bar[t]
    return sqrt_nonneg(ab) * x0 + sqrt_nonneg(1 - ab) * eps


def q_posterior_mean_variance(
    sched: VPSchedule, x0: Float[np.ndarray, "*shape"], x_t: Float[np.ndarray, "..."], t: Index
) -> tuple[Float[np.ndarray, "*shape"], Scalar]:
    """Mean and variance of the posterior q(x_{t−1} | x_t, x_0), t ∈ {1..T} (DDPM Eq. 6–7).

    Formula: μ̃_t = coef_x0·x_0 + coef_xt·x_t with
      coef_x0 = safe_div(sqrt_nonneg(ᾱ_{t−1})·β_t, 1 − ᾱ_t),
      coef_xt = safe_div(sqrt_nonneg(α_t)·(1 − ᾱ_{t−1}), 1 − ᾱ_t);
    β̃_t = safe_div((1 − ᾱ_{t−1})·β_t, 1 − ᾱ_t)   (so β̃_1 = 0).
    Shapes: x0 (*shape), x_t (*shape) -> (mean (*shape), variance scalar).
    """
    t = check(in_range("t", t, 1, sched.T), same_shape("x_t", x_t, "x0", x0.shape))
    ab_prev, ab = sched.alpha_bar[t - 1], sched.alpha_bar[t]
    beta_t, alpha_t = sched.beta[t], sched.alpha[t]
    coef_x0 = safe_div(sqrt_nonneg(ab_prev) * beta_t, 1 - ab)
    coef_xt = safe_div(sqrt_nonneg(alpha_t) * (1 - ab_prev), 1 - ab)
    mean = coef_x0 * x0 + coef_xt * x_t
    variance = safe_div((1 - ab_prev) * beta_t, 1 - ab)
    return mean, variance
