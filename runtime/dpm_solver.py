"""DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): the twins of `spec.dpm_solver`, batched.

λ_t = ½·(log ᾱ_t − log(1 − ᾱ_t)). A step x_t → x_{t_next} with x̂_0 at t (and at the grid's
previous time t_prev) is

    D = (1 + c)·x̂_0 − c·x̂_0^prev,   c = 1/(2r) = (λ_next − λ_t)/(2(λ_t − λ_prev))
    x_next = (σ_next/σ_t)·(x_t − α_t·D) + α_next·D          (α = √ᾱ, σ = √(1 − ᾱ))

with D = x̂_0 (first order, DDIM's step) on the first step and on a step into ᾱ = 1 (t = 0),
where λ = +∞. x̂_0 comes from `runtime.ddpm.x0_pred` (the one place ε̂ becomes x̂_0 here).
c and the ratios are computed in float64 from the schedule's ᾱ table and cast once.
Shapes: x_t, x̂_0 (B, C, H, W); t, t_next, t_prev an int or a (B,) LongTensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from runtime.core import (
    check_deterministic,
    decreasing_grid,
    safe_div,
    sqrt_nonneg,
    work_dtype,
)
from runtime.ddpm import x0_pred
from runtime.schedule import Schedule, TimeIndex


def half_log_snr(alpha_bar: Tensor | float) -> Tensor | float:
    """λ = ½·(log ᾱ − log(1 − ᾱ)), ᾱ ∈ [0, 1] (−∞ at 0, +∞ at 1). A float gives a float;
    a tensor gives a tensor of its dtype (16-bit evaluated in float32). Shapes: elementwise."""
    if not isinstance(alpha_bar, Tensor):
        ab = float(alpha_bar)
        if not 0.0 <= ab <= 1.0:
            raise ValueError(f"alpha_bar must lie in [0, 1], got {alpha_bar!r}")
        if ab == 0.0 or ab == 1.0:
            return -math.inf if ab == 0.0 else math.inf
        return 0.5 * (math.log(ab) - math.log(1.0 - ab))
    ab = alpha_bar.to(work_dtype(alpha_bar.dtype))
    return (0.5 * (torch.log(ab) - torch.log(1.0 - ab))).to(alpha_bar.dtype)


def dpm_solver_pp_2m_step(
    sched: Schedule,
    x_t: Tensor,
    x0_hat: Tensor,
    t: TimeIndex,
    t_next: TimeIndex,
    x0_hat_prev: Tensor | None = None,
    t_prev: TimeIndex | None = None,
) -> Tensor:
    """One DPM-Solver++(2M) step x_t → x_{t_next}, 0 ≤ t_next < t < t_prev ≤ T (Algorithm 2,
    lines 3 and 6–8). First order (D = x̂_0) without history (x0_hat_prev None) and, per sample,
    when ᾱ_{t_next} = 1. Shapes: x_t, x0_hat, x0_hat_prev (B, C, H, W); t's int or (B,)."""
    if (x0_hat_prev is None) != (t_prev is None):
        raise ValueError("x0_hat_prev and t_prev go together: give both or neither")
    ints = [v for v in (t, t_next, t_prev) if v is not None and not isinstance(v, Tensor)]
    if len(ints) == (2 if t_prev is None else 3):
        if not 0 <= t_next < t <= sched.T:
            raise ValueError(f"need 0 <= t_next < t <= T = {sched.T}, got t = {t}, "
                             f"t_next = {t_next}")
        if t_prev is not None and not t < t_prev <= sched.T:
            raise ValueError(f"need t < t_prev <= T = {sched.T}, got t = {t}, t_prev = {t_prev}")
    wd = work_dtype(x_t.dtype)
    ab = sched.alpha_bar.coef(t, x_t)  # float64
    ab_next = sched.alpha_bar.coef(t_next, x_t)
    x0 = x0_hat.to(wd)
    # 1. D (line 7); c = 0 gives the first-order D = x̂_0
    if x0_hat_prev is None:
        D = x0
    else:
        lam_prev = half_log_snr(sched.alpha_bar.coef(t_prev, x_t))
        lam, lam_next = half_log_snr(ab), half_log_snr(ab_next)
        c = (lam_next - lam) / (2.0 * (lam - lam_prev))
        c = torch.where(ab_next < 1.0, c, torch.zeros_like(c)).to(wd)
        D = (1.0 + c) * x0 - c * x0_hat_prev.to(wd)
    # 2. line 8 with e^{−h} = α_t·σ_next/(σ_t·α_next)
    ratio = safe_div(sqrt_nonneg(1.0 - ab_next), sqrt_nonneg(1.0 - ab)).to(wd)
    x_next = ratio * (x_t.to(wd) - sqrt_nonneg(ab).to(wd) * D) + sqrt_nonneg(ab_next).to(wd) * D
    return x_next.to(x_t.dtype)


@torch.no_grad()
def dpm_solver_pp_2m_sample(
    sched: Schedule,
    model: torch.nn.Module,
    x_T: Tensor,
    grid: Sequence[int] | Tensor,
    noise: Tensor | torch.Generator | None = None,
    *,
    progress: bool = False,
) -> Tensor:
    """DPM-Solver++(2M) on a grid τ_0 > … > τ_M = 0 (strictly decreasing ints, τ_0 ∈ 1..T):
    x̂_0 = x0_pred(x, τ_i), then the step τ_i → τ_{i+1} with the previous step's x̂_0 (none on
    the first step; the last step, into ᾱ_0 = 1, is first order). M model evaluations.
    Deterministic: noise must be None.
    Shapes: x_T (B, C, H, W), grid (M + 1,) -> (B, C, H, W). Runs under torch.no_grad()."""
    ts = decreasing_grid("grid", grid, 0, sched.T, end=0, integers=True)
    check_deterministic(noise)
    x, x0_prev, t_prev = x_T, None, None
    for i in tqdm(range(len(ts) - 1), desc="dpm-solver++", disable=not progress):
        x0 = x0_pred(sched, model, x, ts[i])
        x = dpm_solver_pp_2m_step(sched, x, x0, ts[i], ts[i + 1], x0_prev, t_prev)
        x0_prev, t_prev = x0, ts[i]
    return x


__all__ = ["dpm_solver_pp_2m_sample", "dpm_solver_pp_2m_step", "half_log_snr"]
