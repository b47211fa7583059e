"""DPM-Solver++: the data-prediction solvers of the PF ODE (Lu, Zhou, Bao, Chen, Li & Zhu 2022,
"DPM-Solver++"): (2M), second-order multistep (Algorithm 2); (2S), second-order singlestep
(Algorithm 1); (3M), third-order multistep (below).

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

DPM-Solver++(2S) (Algorithm 1) takes each step t → t_next through an intermediate time s with
λ_s = λ_t + r·h, 0 < r < 1:

    u = (σ_s/σ_t)·x_t − √ᾱ_s·(e^{−r·h} − 1)·x̂_0(x_t, t)                         (line 4)
    D = (1 − 1/(2r))·x̂_0(x_t, t) + 1/(2r)·x̂_0(u, s)                               (line 5)
    x_next = (σ_next/σ_t)·x_t − √ᾱ_next·(e^{−h} − 1)·D                            (line 6)

(σ = √(1 − ᾱ) here; both updates are computed in the form above that stays finite at ᾱ = 1).
The paper takes r = ½ in λ, which a discrete grid cannot: s must be a table time. The spec's
choice: the sampler pairs consecutive grid intervals, τ_{2k} → τ_{2k+2} through s = τ_{2k+1}, with
the r this gives, r = (λ_s − λ_t)/(λ_next − λ_t) ∈ (0, 1). Line 5 is a linear extrapolation of
x̂_0 in λ (D ≈ x̂_0 at λ_t + h/2), second order for every fixed r ∈ (0, 1), so nothing requires
r = ½. It is what diffusers' DPMSolverSinglestepScheduler (solver_order = 2) does: its order list
[1, 2, 1, 2, …] is the DDIM step τ_{2k} → τ_{2k+1} (line 4) followed by the second-order update
from τ_{2k} to τ_{2k+2} with the model outputs at both, D0 = x̂_0(τ_{2k}) and r0 = the λ-ratio
of the middle point. Each pair costs 2 model evaluations for 2 grid intervals, so M grid
intervals cost M evaluations, as for (2M). An odd last interval is a first-order (DDIM) step; a
pair that ends at ᾱ = 1 (r = 0) or starts at ᾱ = 0 (zero terminal SNR, λ_t = −∞: r = 1) is two
first-order steps (into ᾱ = 1 the second lands on x̂_0(u, s)).

DPM-Solver++(3M) integrates, on each step, the quadratic through the last three x̂_0 in λ exactly.
With the points λ_t > λ_{t_prev} > λ_{t_prev2} and their x̂_0 = m0, m1, m2, the divided
differences f01 = (m0 − m1)/(λ_t − λ_prev), f12 = (m1 − m2)/(λ_prev − λ_prev2),
d2 = (f01 − f12)/(λ_t − λ_prev2) (half the second derivative) and d1 = f01 + (λ_t − λ_prev)·d2
(the first derivative at λ_t) give, with h = λ_next − λ_t,

    x_next = (σ_next/σ_t)·x_t + √ᾱ_next·[(1 − e^{−h})·m0 + (h − 1 + e^{−h})·d1
                                          + (h² − 2h + 2 − 2e^{−h})·d2]

(Eq. 9's integral σ_next·∫ e^λ·x̂_0(λ) dλ of that quadratic: ∫_0^h e^{u−h}·u^k du for k = 0, 1, 2).
The third-order multistep method is not one of the paper's algorithms; the authors' code
(dpm_solver_pytorch.py, `multistep_dpm_solver_third_update`) and diffusers' DPMSolverMultistep-
Scheduler (solver_order = 3) write the same update as … − √ᾱ_next·φ_3·D2 with φ_3 = φ_2/h − ½ and
D2 = h²·d2, which is ½·(h² − 2h + 2 − 2e^{−h})·d2: half the quadratic term. With that factor the
update is exact only for x̂_0 linear in λ, i.e. second order (tests/test_sampler_order.py
measures both). The spec keeps the exact integral, third order. The 3M sampler follows the
reference's schedule of orders: step i of M uses order min(3, i, M + 1 − i) (first order, then
(2M), then (3M); the last two steps again (2M) and first order), M model evaluations.
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

__all__ = [
    "half_log_snr",
    "dpm_solver_pp_2m_step",
    "dpm_solver_pp_2m_sample",
    "dpm_solver_pp_2s_step",
    "dpm_solver_pp_2s_sample",
    "dpm_solver_pp_3m_step",
    "dpm_solver_pp_3m_sample",
]


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


def _data_step(
    sched: VPSchedule, x_t: Float[np.ndarray, "*shape"], D: Float[np.ndarray, "*shape"],
    t: Index, t_next: Index,
) -> Float[np.ndarray, "*shape"]:
    """x_next = (σ_next/σ_t)·x_t − √ᾱ_next·(e^{−h} − 1)·D, computed as
    safe_div(σ_next, σ_t)·(x_t − √ᾱ_t·D) + √ᾱ_next·D (finite at ᾱ_next = 1)."""
    ab, ab_next = sched.alpha_bar[t], sched.alpha_bar[t_next]
    ratio = safe_div(sqrt_nonneg(1 - ab_next), sqrt_nonneg(1 - ab))
    return ratio * (x_t - sqrt_nonneg(ab) * D) + sqrt_nonneg(ab_next) * D


def dpm_solver_pp_2s_step(
    sched: VPSchedule,
    model: AnyModel,
    x_t: Float[np.ndarray, "*shape"],
    t: Index,
    t_mid: Index,
    t_next: Index,
) -> Float[np.ndarray, "*shape"]:
    """One DPM-Solver++(2S) step x_t → x_{t_next} through t_mid (Lu et al. 2022, Algorithm 1,
    lines 3–6), 0 ≤ t_next < t_mid < t ≤ T.

    Formula: m = x0_pred(x_t, t); u = safe_div(σ_mid, σ_t)·(x_t − √ᾱ_t·m) + √ᾱ_mid·m (line 4,
    DDIM's step to t_mid); m_s = x0_pred(u, t_mid); if ᾱ_{t_next} = 1 or ᾱ_t = 0 (an infinite
    λ-interval): two first-order steps, x_next = the DDIM step from (u, t_mid) with m_s (= m_s
    when ᾱ_{t_next} = 1); else r = (λ_mid − λ_t)/(λ_next − λ_t),
    D = (1 − 1/(2r))·m + 1/(2r)·m_s (line 5) and
    x_next = safe_div(σ_next, σ_t)·(x_t − √ᾱ_t·D) + √ᾱ_next·D (line 6), σ = sqrt_nonneg(1 − ᾱ),
    √ᾱ = sqrt_nonneg(ᾱ), λ = half_log_snr(ᾱ). Two model evaluations.
    Shapes: x_t (*shape) -> (*shape).
    """
    t, t_mid, t_next = check(
        in_range("t", t, 2, sched.T),
        in_range("t_mid", t_mid, 1, t - 1),
        in_range("t_next", t_next, 0, t_mid - 1),
    )
    # 1.–2. x̂_0 at (x_t, t) and the DDIM step to the intermediate time (line 4)
    m = x0_pred(sched, model, x_t, t)
    u = _data_step(sched, x_t, m, t, t_mid)
    # 3. x̂_0 at (u, t_mid)
    m_mid = x0_pred(sched, model, u, t_mid)
    if sched.alpha_bar[t_next] == 1 or sched.alpha_bar[t] == 0:
        return _data_step(sched, u, m_mid, t_mid, t_next)  # λ_next = +∞ or λ_t = −∞: r = 0 or 1
    # 4. D, the extrapolation of x̂_0 to λ_t + h/2 (line 5)
    lam, lam_mid, lam_next = half_log_snr(
        np.array([sched.alpha_bar[t], sched.alpha_bar[t_mid], sched.alpha_bar[t_next]]))
    c = (lam_next - lam) / (2 * (lam_mid - lam))  # 1/(2r)
    D = (1 - c) * m + c * m_mid
    # 5. the step t → t_next (line 6)
    return _data_step(sched, x_t, D, t, t_next)


def dpm_solver_pp_2s_sample(
    sched: VPSchedule,
    model: AnyModel,
    x_T: Float[np.ndarray, "*shape"],
    grid: Sequence[Index] | Int[np.ndarray, " n_plus_1"],
    noise: Float[np.ndarray, "..."] | None = None,
) -> Float[np.ndarray, "*shape"]:
    """DPM-Solver++(2S) on a grid τ_0 > … > τ_M = 0 (Lu et al. 2022, Algorithm 1), the
    intermediate times being every other grid point (see the module docstring).

    Formula: for k = 0..⌊M/2⌋−1: x ← dpm_solver_pp_2s_step(x, τ_{2k} → τ_{2k+2} through
    τ_{2k+1}); if M is odd, the last interval is DDIM's step x ← m + safe_div(σ_M, σ_{M−1})·
    (x − √ᾱ·m), m = x0_pred(x, τ_{M−1}) (which lands on m, τ_M = 0). M model evaluations. The
    grid must be strictly decreasing ints, τ_0 ∈ {1..T}, τ_M = 0; deterministic: noise is None.
    Shapes: x_T (*shape) -> (*shape).
    """
    steps = check(decreasing_grid("grid", grid, 0, sched.T, end=0, integers=True),
                  deterministic(noise))
    x, M = x_T, len(steps) - 1
    for k in range(M // 2):
        x = dpm_solver_pp_2s_step(sched, model, x, steps[2 * k], steps[2 * k + 1], steps[2 * k + 2])
    if M % 2:
        x = _data_step(sched, x, x0_pred(sched, model, x, steps[-2]), steps[-2], steps[-1])
    return x


def dpm_solver_pp_3m_step(
    sched: VPSchedule,
    x_t: Float[np.ndarray, "*shape"],
    x0_hat: Float[np.ndarray, "*shape"],
    t: Index,
    t_next: Index,
    x0_hat_prev: Float[np.ndarray, "*shape"],
    t_prev: Index,
    x0_hat_prev2: Float[np.ndarray, "*shape"],
    t_prev2: Index,
) -> Float[np.ndarray, "*shape"]:
    """One DPM-Solver++(3M) step x_t → x_{t_next}: the exact integral (DPM-Solver++ Eq. 9) of
    the quadratic through x̂_0 at the last three grid times, in λ (see the module docstring).

    Formula: λ = half_log_snr(ᾱ) at t_prev2 < … (λ_2 < λ_1 < λ_0 < λ_n for t_prev2, t_prev, t,
    t_next); f01 = (m0 − m1)/(λ_0 − λ_1), f12 = (m1 − m2)/(λ_1 − λ_2),
    d2 = (f01 − f12)/(λ_0 − λ_2), d1 = f01 + (λ_0 − λ_1)·d2, h = λ_n − λ_0, E = e^{−h} − 1
    (expm1); x_next = safe_div(σ_n, σ_t)·(x_t − √ᾱ_t·m0) + √ᾱ_n·m0 + √ᾱ_n·(h + E)·d1
    + √ᾱ_n·(h² − 2(h + E))·d2, with m0, m1, m2 = x0_hat, x0_hat_prev, x0_hat_prev2. Into
    ᾱ_{t_next} = 1 (λ_n = +∞) the step is first order: x_next = m0.
    0 ≤ t_next < t < t_prev < t_prev2 ≤ T.
    Shapes: x_t, x0_hat, x0_hat_prev, x0_hat_prev2 (*shape) -> (*shape).
    """
    t, t_next, t_prev, t_prev2 = check(
        in_range("t", t, 1, sched.T),
        in_range("t_next", t_next, 0, t - 1),
        in_range("t_prev", t_prev, t + 1, sched.T),
        in_range("t_prev2", t_prev2, t_prev + 1, sched.T),
        same_shape("x0_hat", x0_hat, "x_t", x_t.shape),
        same_shape("x0_hat_prev", x0_hat_prev, "x_t", x_t.shape),
        same_shape("x0_hat_prev2", x0_hat_prev2, "x_t", x_t.shape),
    )
    # 1. the DDIM part, (σ_n/σ_t)·x_t + √ᾱ_n·(1 − e^{−h})·m0; all of it into ᾱ_n = 1
    x_next = _data_step(sched, x_t, x0_hat, t, t_next)
    ab_next = sched.alpha_bar[t_next]
    if ab_next == 1:
        return x_next
    # 2. divided differences of x̂_0 in λ: d1 = f'(λ_0), d2 = f''(λ_0)/2
    lam2, lam1, lam0, lam_n = half_log_snr(np.array(
        [sched.alpha_bar[t_prev2], sched.alpha_bar[t_prev], sched.alpha_bar[t], ab_next]))
    f01 = (x0_hat - x0_hat_prev) / (lam0 - lam1)
    f12 = (x0_hat_prev - x0_hat_prev2) / (lam1 - lam2)
    d2 = (f01 - f12) / (lam0 - lam2)
    d1 = f01 + (lam0 - lam1) * d2
    # 3. ∫_0^h e^{u−h}·u du = h + E and ∫_0^h e^{u−h}·u² du = h² − 2(h + E), E = e^{−h} − 1
    h = lam_n - lam0
    hE = h + np.expm1(-h)
    return x_next + sqrt_nonneg(ab_next) * (hE * d1 + (h**2 - 2 * hE) * d2)


def dpm_solver_pp_3m_sample(
    sched: VPSchedule,
    model: AnyModel,
    x_T: Float[np.ndarray, "*shape"],
    grid: Sequence[Index] | Int[np.ndarray, " n_plus_1"],
    noise: Float[np.ndarray, "..."] | None = None,
) -> Float[np.ndarray, "*shape"]:
    """DPM-Solver++(3M) on a grid τ_0 > … > τ_M = 0 (see the module docstring).

    Formula: for i = 1..M (the step τ_{i−1} → τ_i), m_{i−1} = x0_pred(x, τ_{i−1}) and the order
    q = min(3, i, M + 1 − i): q = 1 DDIM's step (dpm_solver_pp_2m_step without history), q = 2
    dpm_solver_pp_2m_step with m_{i−2}, q = 3 dpm_solver_pp_3m_step with m_{i−2}, m_{i−3}
    (the reference's warm-up and "lower_order_final"). M model evaluations. The grid must be
    strictly decreasing ints, τ_0 ∈ {1..T}, τ_M = 0; deterministic: noise is None.
    Shapes: x_T (*shape) -> (*shape).
    """
    steps = check(decreasing_grid("grid", grid, 0, sched.T, end=0, integers=True),
                  deterministic(noise))
    x, M, m = x_T, len(steps) - 1, []
    for i in range(1, M + 1):
        t, t_next = steps[i - 1], steps[i]
        m.append(x0_pred(sched, model, x, t))
        q = min(3, i, M + 1 - i)
        if q == 3:
            x = dpm_solver_pp_3m_step(sched, x, m[-1], t, t_next, m[-2], steps[i - 2],
                                      m[-3], steps[i - 3])
        elif q == 2:
            x = dpm_solver_pp_2m_step(sched, x, m[-1], t, t_next, m[-2], steps[i - 2])
        else:
            x = dpm_solver_pp_2m_step(sched, x, m[-1], t, t_next)
    return x
