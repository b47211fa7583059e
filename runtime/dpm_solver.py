"""DPM-Solver++ (Lu et al. 2022): (2M) (Algorithm 2), (2S) (Algorithm 1) and (3M); the twins of
`spec.dpm_solver`, batched.

λ_t = ½·(log ᾱ_t − log(1 − ᾱ_t)). A step x_t → x_{t_next} with x̂_0 at t (and at the grid's
previous time t_prev) is

    D = (1 + c)·x̂_0 − c·x̂_0^prev,   c = 1/(2r) = (λ_next − λ_t)/(2(λ_t − λ_prev))
    x_next = (σ_next/σ_t)·(x_t − α_t·D) + α_next·D          (α = √ᾱ, σ = √(1 − ᾱ))

with D = x̂_0 (first order, DDIM's step) on the first step and on a step into ᾱ = 1 (t = 0),
where λ = +∞. x̂_0 comes from `runtime.ddpm.x0_pred` (the one place ε̂ becomes x̂_0 here).
c and the ratios are computed in float64 from the schedule's ᾱ table and cast once.

(2S) pairs consecutive grid intervals: τ_{2k} → τ_{2k+2} through s = τ_{2k+1} with
D = (1 − 1/(2r))·x̂_0(x, τ_{2k}) + 1/(2r)·x̂_0(u, s), u DDIM's step to s, r the λ-ratio of s.
(3M) adds, to the DDIM part, √ᾱ_next·((h + E)·d1 + (h² − 2(h + E))·d2), E = e^{−h} − 1, with d1 and
d2 the first and half the second derivative in λ of the quadratic through the last three x̂_0
(the exact integral; the reference code's φ_3 term is half of the d2 term, see the spec).
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
    return _data_step(sched, x_t, D, t, t_next).to(x_t.dtype)


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


def _data_step(sched: Schedule, x_t: Tensor, D: Tensor, t: TimeIndex, t_next: TimeIndex) -> Tensor:
    """(σ_next/σ_t)·(x_t − √ᾱ_t·D) + √ᾱ_next·D in the working dtype (coefficients from float64)."""
    wd = work_dtype(x_t.dtype)
    ab, ab_next = sched.alpha_bar.coef(t, x_t), sched.alpha_bar.coef(t_next, x_t)
    ratio = safe_div(sqrt_nonneg(1.0 - ab_next), sqrt_nonneg(1.0 - ab)).to(wd)
    D = D.to(wd)
    return ratio * (x_t.to(wd) - sqrt_nonneg(ab).to(wd) * D) + sqrt_nonneg(ab_next).to(wd) * D


def _check_order(*times: TimeIndex, T: int) -> None:
    """Int times must satisfy T ≥ times[0] > times[1] > … ≥ 0 (tensors are not checked)."""
    ints = [v for v in times if not isinstance(v, Tensor)]
    if len(ints) == len(times):
        if not (times[0] <= T and all(a > b for a, b in zip(times, times[1:], strict=False))
                and times[-1] >= 0):
            raise ValueError(f"need T = {T} >= {' > '.join(str(v) for v in times)} >= 0")


def dpm_solver_pp_2s_step(sched: Schedule, model: torch.nn.Module, x_t: Tensor, t: TimeIndex,
                          t_mid: TimeIndex, t_next: TimeIndex) -> Tensor:
    """One DPM-Solver++(2S) step x_t → x_{t_next} through t_mid (Algorithm 1, lines 3–6),
    0 ≤ t_next < t_mid < t ≤ T: u = DDIM step to t_mid, D = (1 − c)·x̂_0(x_t, t) + c·x̂_0(u, t_mid),
    c = 1/(2r) = (λ_next − λ_t)/(2(λ_mid − λ_t)); per sample, where ᾱ_next = 1 or ᾱ_t = 0, two
    first-order steps (DDIM from (u, t_mid) with x̂_0(u, t_mid)). Two model evaluations. Shapes: x_t (B, C, H, W); t's int or (B,)."""
    _check_order(t, t_mid, t_next, T=sched.T)
    wd = work_dtype(x_t.dtype)
    # 1.–3. x̂_0 at (x_t, t), DDIM's step to t_mid (line 4), x̂_0 at (u, t_mid)
    m = x0_pred(sched, model, x_t, t)
    u = _data_step(sched, x_t, m, t, t_mid).to(x_t.dtype)
    m_mid = x0_pred(sched, model, u, t_mid).to(wd)
    # 4. D (line 5); c = 0 where ᾱ_next = 1 (that sample returns x̂_0(u, t_mid))
    ab_next = sched.alpha_bar.coef(t_next, x_t)
    lam = half_log_snr(sched.alpha_bar.coef(t, x_t))
    lam_mid, lam_next = half_log_snr(sched.alpha_bar.coef(t_mid, x_t)), half_log_snr(ab_next)
    first = (ab_next == 1.0) | (sched.alpha_bar.coef(t, x_t) == 0.0)  # an infinite λ-interval
    c = torch.where(first, torch.zeros_like(lam), (lam_next - lam) / (2.0 * (lam_mid - lam))).to(wd)
    D = (1.0 - c) * m.to(wd) + c * m_mid
    # 5. the step t → t_next (line 6); two first-order steps where the λ-interval is infinite
    x_next = _data_step(sched, x_t, D, t, t_next)
    x_two = _data_step(sched, u, m_mid, t_mid, t_next)
    return torch.where(first.to(x_next.device), x_two, x_next).to(x_t.dtype)


@torch.no_grad()
def dpm_solver_pp_2s_sample(sched: Schedule, model: torch.nn.Module, x_T: Tensor,
                            grid: Sequence[int] | Tensor, noise: None = None,
                            progress: bool = False) -> Tensor:
    """DPM-Solver++(2S) on τ_0 > … > τ_M = 0: the pairs τ_{2k} → τ_{2k+2} through τ_{2k+1}, an
    odd last interval DDIM's step. M model evaluations; noise must be None.
    Shapes: x_T (B, C, H, W) -> (B, C, H, W). Runs under torch.no_grad()."""
    ts = decreasing_grid("grid", grid, 0, sched.T, end=0, integers=True)
    check_deterministic(noise)
    x, M = x_T, len(ts) - 1
    for k in tqdm(range(M // 2), desc="dpm-solver++(2s)", disable=not progress):
        x = dpm_solver_pp_2s_step(sched, model, x, ts[2 * k], ts[2 * k + 1], ts[2 * k + 2])
    if M % 2:
        x = _data_step(sched, x, x0_pred(sched, model, x, ts[-2]), ts[-2], ts[-1]).to(x_T.dtype)
    return x


def dpm_solver_pp_3m_step(sched: Schedule, x_t: Tensor, x0_hat: Tensor, t: TimeIndex,
                          t_next: TimeIndex, x0_hat_prev: Tensor, t_prev: TimeIndex,
                          x0_hat_prev2: Tensor, t_prev2: TimeIndex) -> Tensor:
    """One DPM-Solver++(3M) step, 0 ≤ t_next < t < t_prev < t_prev2 ≤ T: the DDIM part plus
    √ᾱ_next·((h + E)·d1 + (h² − 2(h + E))·d2), E = e^{−h} − 1; per sample first order
    (x_next = x̂_0) where ᾱ_next = 1. Coefficients in float64, cast once.
    Shapes: x_t and the three x̂_0 (B, C, H, W); t's int or (B,)."""
    _check_order(t_prev2, t_prev, t, t_next, T=sched.T)
    wd = work_dtype(x_t.dtype)
    # 1. the DDIM part
    x_next = _data_step(sched, x_t, x0_hat, t, t_next)
    # 2. the weights of d1 and d2 on x̂_0, x̂_0^prev, x̂_0^prev2 (float64)
    lam2, lam1 = half_log_snr(sched.alpha_bar.coef(t_prev2, x_t)), \
        half_log_snr(sched.alpha_bar.coef(t_prev, x_t))
    lam0 = half_log_snr(sched.alpha_bar.coef(t, x_t))
    ab_next = sched.alpha_bar.coef(t_next, x_t)
    h = half_log_snr(ab_next) - lam0
    hE = h + torch.expm1(-h)
    c1, c2 = hE, h**2 - 2.0 * hE  # ∫ e^{u−h}·u du, ∫ e^{u−h}·u² du over [0, h]
    a01, a12, a02 = 1.0 / (lam0 - lam1), 1.0 / (lam1 - lam2), 1.0 / (lam0 - lam2)
    # f01 = (m0 − m1)·a01, f12 = (m1 − m2)·a12, d2 = (f01 − f12)·a02, d1 = f01 + d2/a01, so
    # c1·d1 + c2·d2 = c1·f01 + K·(f01 − f12) with K = (c1/a01 + c2)·a02
    K = (c1 / a01 + c2) * a02
    w0, w1, w2 = (c1 + K) * a01, -(c1 + K) * a01 - K * a12, K * a12
    land = ab_next == 1.0
    scale = torch.where(land, torch.zeros_like(ab_next), sqrt_nonneg(ab_next))
    w0, w1, w2 = ((torch.where(land, torch.zeros_like(w), w) * scale).to(wd) for w in (w0, w1, w2))
    x_next = x_next + w0 * x0_hat.to(wd) + w1 * x0_hat_prev.to(wd) + w2 * x0_hat_prev2.to(wd)
    return x_next.to(x_t.dtype)


@torch.no_grad()
def dpm_solver_pp_3m_sample(sched: Schedule, model: torch.nn.Module, x_T: Tensor,
                            grid: Sequence[int] | Tensor, noise: None = None,
                            progress: bool = False) -> Tensor:
    """DPM-Solver++(3M) on τ_0 > … > τ_M = 0: step i of M at order min(3, i, M + 1 − i)
    (1: DDIM, 2: the (2M) step, 3: the (3M) step). M model evaluations; noise must be None.
    Shapes: x_T (B, C, H, W) -> (B, C, H, W). Runs under torch.no_grad()."""
    ts = decreasing_grid("grid", grid, 0, sched.T, end=0, integers=True)
    check_deterministic(noise)
    x, M, m = x_T, len(ts) - 1, []
    for i in tqdm(range(1, M + 1), desc="dpm-solver++(3m)", disable=not progress):
        t, t_next = ts[i - 1], ts[i]
        m.append(x0_pred(sched, model, x, t))
        q = min(3, i, M + 1 - i)
        if q == 3:
            x = dpm_solver_pp_3m_step(sched, x, m[-1], t, t_next, m[-2], ts[i - 2], m[-3],
                                      ts[i - 3])
        elif q == 2:
            x = dpm_solver_pp_2m_step(sched, x, m[-1], t, t_next, m[-2], ts[i - 2])
        else:
            x = dpm_solver_pp_2m_step(sched, x, m[-1], t, t_next)
    return x


__all__ = [
    "dpm_solver_pp_2m_sample",
    "dpm_solver_pp_2m_step",
    "dpm_solver_pp_2s_sample",
    "dpm_solver_pp_2s_step",
    "dpm_solver_pp_3m_sample",
    "dpm_solver_pp_3m_step",
    "half_log_snr",
]
