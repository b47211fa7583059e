"""The forward (noising) process: the twins of `spec.forward`, batched.

Shapes: x0, x_t, eps (B, C, H, W) (any trailing shape works); t an int or a (B,) LongTensor.
Coefficients come from the schedule's float64 tables, cast once to the working dtype, and the
arithmetic runs in the working dtype (float32 for 16-bit inputs; an int t gives a 0-d
coefficient, which would otherwise let a 16-bit input set the dtype of the products).
"""

from __future__ import annotations

from torch import Tensor

from runtime.core import work_dtype
from runtime.schedule import Schedule, TimeIndex


def q_sample(sched: Schedule, x0: Tensor, t: TimeIndex, eps: Tensor) -> Tensor:
    """x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·ε   (DDPM Eq. 4). Shapes: (B, …) -> (B, …)."""
    wd = work_dtype(x0.dtype)
    out = (
        sched.sqrt_alpha_bar.at(t, x0) * x0.to(wd)
        + sched.sqrt_one_minus_alpha_bar.at(t, x0) * eps.to(wd)
    )
    return out.to(x0.dtype)


def q_posterior_mean_variance(
    sched: Schedule, x0: Tensor, x_t: Tensor, t: TimeIndex
) -> tuple[Tensor, Tensor]:
    """Mean and variance of q(x_{t−1} | x_t, x0), t ∈ {1..T}   (DDPM Eq. 6–7).

    mean = coef_x0·x0 + coef_x_t·x_t with coef_x0 = √ᾱ_{t−1}·β_t/(1 − ᾱ_t),
    coef_x_t = √α_t·(1 − ᾱ_{t−1})/(1 − ᾱ_t); variance β̃_t = (1 − ᾱ_{t−1})·β_t/(1 − ᾱ_t).
    Shapes: x0, x_t (B, …) -> mean (B, …), variance 0-d (int t) or (B, 1, …, 1) (tensor t).
    """
    if not isinstance(t, Tensor) and not 1 <= t <= sched.T:
        raise ValueError(f"t = {t} is outside 1..{sched.T} (q(x_{{t-1}} | x_t, x0) needs t >= 1)")
    wd = work_dtype(x0.dtype)
    mean = (
        sched.mu_tilde_coef_x0.at(t, x0) * x0.to(wd)
        + sched.mu_tilde_coef_x_t.at(t, x0) * x_t.to(wd)
    )
    variance = sched.beta_tilde.at(t, x0)
    return mean.to(x0.dtype), variance.to(device=x0.device, dtype=x0.dtype)


__all__ = ["q_posterior_mean_variance", "q_sample"]
