"""DPM-Solver++(2M): the second-order multistep data-prediction solver of the PF ODE
(Lu, Zhou, Bao, Chen, Li & Zhu 2022, "DPM-Solver++", Algorithm 2).

Notation: DPM-Solver's α_t and σ_t are √ᾱ_t and √(1 − ᾱ_t) of the discrete schedule of
`spec.schedule`; they are written that way here (α_t and σ_t keep DDPM's meaning), and

    λ_t = log(√ᾱ_t/√(1 − ᾱ_t)) = ½·(log ᾱ_t − log(1 − ᾱ_t))   (half the log-SNR; Eq. 3)

which grows as t decreases (λ = +∞ at ᾱ = 1, i.e. at t = 0). x̂_0(x_t, t) is the model's
data prediction, from ε̂ by `spec.ddpm.x0_pred` (the one place the model's output becomes x̂_0).
On a grid t_0 > t_1 > … > t_M, with h_i = λ_{t_i} − λ_{t_{i−1}} > 0 and r_i = h_{i−1}/h_i:

    D_i = (1 + 1/(2r_i))·x̂_0(t_{i−1}) − 1/(2r_i)·x̂_0(t_{i−2})                 (line 7)
    x_{t_i} = (s_i/s_{i−1})·x_{t_{i−1}} − √ᾱ_{t_i}·(e^{−h_i} − 1)·D_i            (line 8)

with s_i = √(1 − ᾱ_{t_i}). Since e^{−h_i} = √ᾱ_{t_{i−1}}·s_i/(s_{i−1}·√ᾱ_{t_i}), line 8 is
computed as

    x_{t_i} = (s_i/s_{i−1})·(x_{t_{i−1}} − √ᾱ_{t_{i−1}}·D_i) + √ᾱ_{t_i}·D_i,

which stays finite when t_i = 0 (s_i = 0, λ = h = +∞); with D_i = x̂_0(t_{i−1}) it is DDIM's
η = 0 step (DPM-Solver++(1) = DDIM). Two steps are first order (D_i = x̂_0(t_{i−1})):

* the first step (i = 1): there is no earlier x̂_0 yet (Algorithm 2, line 3);
* a step into ᾱ = 1 (t = 0 of a discrete grid): h_i = +∞ makes r_i = 0 and 1/(2r_i) undefined.
  This is the "lower-order final step" of DPM-Solver++ implementations; it lands exactly on
  x̂_0(t_{M−1}). Its error is O(σ²) with σ² = (1 − ᾱ_{t_{M−1}})/ᾱ_{t_{M−1}}, EDM's noise
  level at t_{M−1} (the denoiser's change between σ and 0), so the method's global order is 2
  only on grids whose last nonzero point has σ² of order h² or below
  (tests/test_sampler_order.py uses EDM's ρ-grid with a small σ_min; a uniform grid in t
  ending at 0 has σ² ∝ h there, which limits it to order 1).

M model evaluations for M steps, one per grid point except t_M.
"""

from collections.abc import Sequence

import numpy as np
from jaxtyping import Float, Int

from spec.core import (
    Index,
    Scalar,
    check,
    decreasing_grid,
    deterministic,
    holds,
    in_range,
    safe_div,
    same_shape,
    sqrt_nonneg,
)
from spec.ddpm import x0_pred
from spec.prediction import AnyModel
from spec.schedule import VPSchedule

__all__ = ["half_log_snr", "dpm_solver_pp_2m_step", "dpm_solver_pp_2m_sample"]


def half_log_snr(
    alpha_bar: Float[np.ndarray, "*shape"] | Scalar,
) -> Float[np.ndarray, "*shape"] | Scalar:
    """λ = log(√ᾱ/√(1 − ᾱ)), half the log signal-to-noise ratio (DPM-Solver++ §2, Eq. 3).

    Formula: λ = ½·(log ᾱ − log(1 − ᾱ)), ᾱ ∈ [0, 1]; ᾱ = 0 gives −∞ and ᾱ = 1 gives +∞.
    Shapes: alpha_bar (*shape) or scalar -> (*shape) or scalar.
    """
    ab = np.asarray(alpha_bar, dtype=np.float64 if np.ndim(alpha_bar) == 0 else None)
    if np.any(~((ab >= 0) & (ab <= 1))):
        raise ValueError(f"alpha_bar must lie in [0, 1], got {alpha_bar!r}")
    with np.errstate(divide="ignore"):
        return 0.5 * (np.log(ab) - np.log(1 - ab))


def dpm_solver_pp_2m_step(
    sched: VPSchedule,
    x_t: Float[np.ndarray, "*shape"],
    x0_hat: Float[np.ndarray, "*shape"],
    t: Index,
    t_next: Index,
    x0_hat_prev: Float[np.ndarray, "*shape"] | None = None,
    t_prev: Index | None = None,
) -> Float[np.ndarray, "*shape"]:
    """One DPM-Solver++(2M) step x_t → x_{t_next} (Lu et al. 2022, Algorithm 2, lines 3 and 6–8).

    Formula: λ = half_log_snr(ᾱ); D = x̂_0 if x0_hat_prev is None or ᾱ_{t_next} = 1, else
    D = (1 + c)·x̂_0 − c·x̂_0^prev with c = 1/(2r) = (λ_{t_next} − λ_t)/(2(λ_t − λ_{t_prev}));
    x_{t_next} = safe_div(√(1 − ᾱ_{t_next}), √(1 − ᾱ_t))·(x_t − √ᾱ_t·D) + √ᾱ_{t_next}·D
    (all square roots sqrt_nonneg). x0_hat is x̂_0(x_t, t); x0_hat_prev is x̂_0 at the grid's
    previous time t_prev (given with it, or neither). 0 ≤ t_next < t < t_prev ≤ T.
    Shapes: x_t, x0_hat, x0_hat_prev (*shape) -> (*shape).
    """
    t, t_next, *_ = check(
        in_range("t", t, 1, sched.T),
        in_range("t_next", t_next, 0, t - 1),
        same_shape("x0_hat", x0_hat, "x_t", x_t.shape),
        holds((x0_hat_prev is None) == (t_prev is None),
              "x0_hat_prev and t_prev go together: give both or neither"),
        in_range("t_prev", t_prev, t + 1, sched.T),
        same_shape("x0_hat_prev", x0_hat_prev, "x_t", x_t.shape),
    )
    ab, ab_next = sched.alpha_bar[t], sched.alpha_bar[t_next]
    # 1. D: first order without history or into ᾱ = 1, else the 2M combination (line 7)
    D = x0_hat
    if x0_hat_prev is not None and ab_next < 1:
        lam_prev, lam, lam_next = half_log_snr(np.array([sched.alpha_bar[t_prev], ab, ab_next]))
        c = (lam_next - lam) / (2 * (lam - lam_prev))
        D = (1 + c) * x0_hat - c * x0_hat_prev
    # 2. line 8 with e^{−h} = √ᾱ_t·√(1 − ᾱ_next)/(√(1 − ᾱ_t)·√ᾱ_next)
    ratio = safe_div(sqrt_nonneg(1 - ab_next), sqrt_nonneg(1 - ab))
    return ratio * (x_t - sqrt_nonneg(ab) * D) + sqrt_nonneg(ab_next) * D


def dpm_solver_pp_2m_sample(
    sched: VPSchedule,
    model: AnyModel,
    x_T: Float[np.ndarray, "*shape"],
    grid: Sequence[Index] | Int[np.ndarray, " n_plus_1"],
    noise: Float[np.ndarray, "..."] | None = None,
) -> Float[np.ndarray, "*shape"]:
    """DPM-Solver++(2M) on a grid τ_0 > … > τ_M = 0 (Lu et al. 2022, Algorithm 2).

    Formula: for i = 0..M−1: x̂_0 = x0_pred(sched, model, x, τ_i);
    x ← dpm_solver_pp_2m_step(x, x̂_0, τ_i, τ_{i+1}, x̂_0 of step i − 1, τ_{i−1}) (step 0 has no
    history; the last step, into ᾱ_0 = 1, is first order). M model evaluations. The grid must
    be strictly decreasing ints, τ_0 ∈ {1..T}, τ_M = 0 (as `ddim_sample_strided`'s).
    Deterministic: noise must be None.
    Shapes: x_T (*shape), grid (M + 1,) -> (*shape).
    """
    steps = check(decreasing_grid("grid", grid, 0, sched.T, end=0, integers=True),
                  deterministic(noise))
    x, x0_prev, t_prev = x_T, None, None
    for i in range(len(steps) - 1):
        x0 = x0_pred(sched, model, x, steps[i])
        x = dpm_solver_pp_2m_step(sched, x, x0, steps[i], steps[i + 1], x0_prev, t_prev)
        x0_prev, t_prev = x0, steps[i]
    return x
