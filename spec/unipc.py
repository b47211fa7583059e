"""UniPC: the unified predictor-corrector of Zhao, Bai, Rao, Zhou & Lu 2023 ("UniPC: A Unified
Predictor-Corrector Framework for Fast Sampling of Diffusion Models"), in data-prediction (x̂_0)
form on the table-time grid of `spec.dpm_solver`.

Notation as in `spec.dpm_solver`: √ᾱ and σ = √(1 − ᾱ) of the discrete schedule (the paper's α_t
and σ_t), λ = half_log_snr(ᾱ). A step goes from t (with x̂_0 = m_0) to t_next, h = λ_next − λ_t
> 0; the earlier grid times t_1, t_2, … (with x̂_0 = m_1, m_2, …, most recent first) give

    r_k = (λ_{t_k} − λ_t)/h  (< 0),      D_k = (m_k − m_0)/r_k.

With z = −h (the data-prediction sign), B(h) = z ("bh1") or e^z − 1 ("bh2"), and

    ψ_1 = (e^z − 1 − z)/z,   ψ_{k+1} = ψ_k/z − 1/(k + 1)!,   b_k = k!·ψ_k/B(h)   (ψ_k = z·φ_{k+1}(z))

the p-th order updates are, from the DDIM part x_base = (σ_next/σ_t)·x_t + √ᾱ_next·(1 − e^{−h})·m_0:

    UniP-p (predictor):  x_pred = x_base − √ᾱ_next·B(h)·Σ_{k=1}^{p−1} ρ_k·D_k,
                         ρ = R_{p−1}^{−1}·(b_1..b_{p−1}), R_{p−1}[i, k] = r_k^i (i = 0..p−2)
    UniC-p (corrector):  x_corr = x_base − √ᾱ_next·B(h)·(Σ_{k=1}^{p−1} ρ^c_k·D_k + ρ^c_p·D_p),
                         D_p = m_next − m_0 with r_p = 1, m_next = x̂_0(x_pred, t_next),
                         ρ^c = R_p^{−1}·(b_1..b_p)

(the paper's §3.1–3.2: UniC's order condition "R_p(h)·a_p = φ_p(h)/B(h)", with UniP the same
construction without the new point; §3.3 and its appendix give the data-prediction form used
here). UniP-p has order p; UniC-p after UniP-p has order p + 1 (the paper's Theorem 3.1), and
costs no model evaluation: m_next, evaluated at x_pred, is also the history of the next step.

Choices of the spec, all those of the authors' code (uni_pc.py, `multistep_uni_pc_bh_update`
and `sample`):

* ρ = ½ for UniP-2 and ρ^c = ½ for UniC-1 instead of the solved b_1 (its h → 0 limit; the
  difference is O(h) in a term that is itself O(h²), so the order is kept);
* warm-up and final steps: step i of M (τ_{i−1} → τ_i) uses order q = min(p, i, M + 1 − i): the
  first steps have no history yet, the last ones are taken at lower order ("lower_order_final");
* the corrector runs on every step except the last (it would need a model evaluation at τ_M);
* a step into ᾱ = 1 (t = 0, λ = +∞) is first order and lands on m_0, as in `spec.dpm_solver`
  (the r_k are 0 there and R is singular); so is a step from ᾱ = 0 (zero terminal SNR,
  λ_t = −∞), where h = ∞ and bh1's B(h) = −h has no limit.

So M steps cost M model evaluations, with or without the corrector.
"""

import math
from collections.abc import Sequence

import numpy as np
from jaxtyping import Float, Int

from spec.core import (
    Index,
    check,
    decreasing_grid,
    deterministic,
    holds,
    in_range,
    same_shape,
    sqrt_nonneg,
)
from spec.ddpm import x0_pred
from spec.dpm_solver import _data_step, half_log_snr
from spec.prediction import AnyModel
from spec.schedule import VPSchedule

__all__ = ["UNIPC_VARIANTS", "unip_step", "unic_step", "unipc_sample"]

UNIPC_VARIANTS: tuple[str, ...] = ("bh1", "bh2")
"""B(h) = h ("bh1") or e^h − 1 ("bh2"), in the data-prediction sign h → −h."""

Array = Float[np.ndarray, "*shape"]


def _check_history(
    sched: VPSchedule, x_t: Array, x0_hats: Sequence[Array] | Float[np.ndarray, " p *shape"],
    times: Sequence[Index],
    t_next: Index, variant: str,
) -> list[int]:
    """The history (oldest first, the last at the current time t) and t_next: strictly
    decreasing times in {0..T}, one x̂_0 of x_t's shape per time, order 1..3."""
    check(
        holds(variant in UNIPC_VARIANTS,
              f"variant must be one of {', '.join(UNIPC_VARIANTS)}, got {variant!r}"),
        holds(1 <= len(times) <= 3, f"times must hold 1 to 3 grid times, got {list(times)}"),
        holds(len(x0_hats) == len(times), f"x0_hats and times must have the same length, got "
              f"{len(x0_hats)} and {len(times)}"),
        *(same_shape(f"x0_hats[{k}]", m, "x_t", x_t.shape) for k, m in enumerate(x0_hats)),
    )
    ts = [check(in_range(f"times[{k}]", s, 1, sched.T)) for k, s in enumerate(times)]
    check(holds(all(a > b for a, b in zip(ts, ts[1:], strict=False)),
                f"times must be strictly decreasing (oldest first), got {ts}"),
          in_range("t_next", t_next, 0, ts[-1] - 1))
    return ts


def _coefficients(
    sched: VPSchedule, times: list[int], t_next: int, variant: str
) -> tuple[float, list[float], np.ndarray]:
    """(B(h), [r_1, …, r_{p−1}] (most recent first), [b_1, …, b_p]) of a step t → t_next."""
    lam = half_log_snr(sched.alpha_bar[[*times, t_next]])
    h = lam[-1] - lam[-2]
    r = [(lam[k] - lam[-2]) / h for k in range(len(times) - 2, -1, -1)]
    z = -h
    B = z if variant == "bh1" else math.expm1(z)
    psi, b = math.expm1(z) / z - 1, []
    for k in range(1, len(times) + 1):
        b.append(math.factorial(k) * psi / B)
        psi = psi / z - 1 / math.factorial(k + 1)
    return B, r, np.array(b)


def unip_step(
    sched: VPSchedule,
    x_t: Array,
    x0_hats: Sequence[Array] | Float[np.ndarray, " p *shape"],
    times: Sequence[Index],
    t_next: Index,
    variant: str = "bh2",
) -> Array:
    """One UniP-p step x_t → x_{t_next} (Zhao et al. 2023, §3.2, UniP; data prediction), p =
    len(times) ∈ {1, 2, 3}.

    Formula: times = (t_{p−1}, …, t_1, t) oldest first with x0_hats their x̂_0 (the last, m_0, at
    the current time t); 0 ≤ t_next < t. x_base = _data_step(m_0) = (σ_n/σ_t)·(x_t − √ᾱ_t·m_0)
    + √ᾱ_n·m_0 (safe_div, sqrt_nonneg); if p = 1, ᾱ_{t_next} = 1 or ᾱ_t = 0: x_base; else
    x_base − √ᾱ_n·B(h)·Σ_k ρ_k·D_k with ρ = ½ (p = 2) or R_{p−1}^{−1}·b (p = 3) (module docstring).
    Shapes: x_t (*shape), x0_hats (p, *shape) or p arrays of (*shape) -> (*shape).
    """
    ts = _check_history(sched, x_t, x0_hats, times, t_next, variant)
    m = list(x0_hats)
    # 1. the DDIM part (UniP-1 is DDIM); a step into ᾱ = 1 stops here
    x_next = _data_step(sched, x_t, m[-1], ts[-1], t_next)
    if len(ts) == 1 or sched.alpha_bar[t_next] == 1 or sched.alpha_bar[ts[-1]] == 0:
        return x_next
    # 2. r_k, B(h), b (most recent earlier point first) and the differences D_k
    B, r, b = _coefficients(sched, ts, t_next, variant)
    D = [(m[-2 - k] - m[-1]) / r[k] for k in range(len(r))]
    # 3. ρ: ½ for UniP-2, else the Vandermonde system R_{p−1}·ρ = (b_1..b_{p−1})
    rho = [0.5] if len(r) == 1 else np.linalg.solve(np.vander(r, increasing=True).T, b[:-1])
    return x_next - sqrt_nonneg(sched.alpha_bar[t_next]) * B * sum(
        rho[k] * D[k] for k in range(len(r)))


def unic_step(
    sched: VPSchedule,
    x_t: Array,
    x0_hats: Sequence[Array] | Float[np.ndarray, " p *shape"],
    times: Sequence[Index],
    t_next: Index,
    x0_hat_next: Array,
    variant: str = "bh2",
) -> Array:
    """One UniC-p correction of the step x_t → x_{t_next} (Zhao et al. 2023, §3.1, UniC; data
    prediction), p = len(times) ∈ {1, 2, 3}: order p + 1 after UniP-p.

    Formula: as `unip_step` with one more point, the model's x̂_0 at the predicted state,
    m_next = x0_hat_next, at r_p = 1: x_base − √ᾱ_n·B(h)·(Σ_{k<p} ρ^c_k·D_k + ρ^c_p·(m_next − m_0)),
    ρ^c = ½ (p = 1) or R_p^{−1}·b (p = 2, 3). Into ᾱ_{t_next} = 1 or from ᾱ_t = 0: x_base
    (first order).
    Shapes: x_t, x0_hat_next (*shape), x0_hats (p, *shape) or p arrays of (*shape) -> (*shape).
    """
    ts = _check_history(sched, x_t, x0_hats, times, t_next, variant)
    check(same_shape("x0_hat_next", x0_hat_next, "x_t", x_t.shape))
    m = list(x0_hats)
    # 1. the DDIM part; a step into ᾱ = 1 stops here
    x_next = _data_step(sched, x_t, m[-1], ts[-1], t_next)
    if sched.alpha_bar[t_next] == 1 or sched.alpha_bar[ts[-1]] == 0:
        return x_next
    # 2. r_k (with r_p = 1 for the new point), B(h), b and the differences D_k
    B, r, b = _coefficients(sched, ts, t_next, variant)
    r = [*r, 1.0]
    D = [(m[-2 - k] - m[-1]) / r[k] for k in range(len(r) - 1)] + [x0_hat_next - m[-1]]
    # 3. ρ^c: ½ for UniC-1, else the Vandermonde system R_p·ρ^c = (b_1..b_p)
    rho = [0.5] if len(r) == 1 else np.linalg.solve(np.vander(r, increasing=True).T, b)
    return x_next - sqrt_nonneg(sched.alpha_bar[t_next]) * B * sum(
        rho[k] * D[k] for k in range(len(r)))


def unipc_sample(
    sched: VPSchedule,
    model: AnyModel,
    x_T: Array,
    grid: Sequence[Index] | Int[np.ndarray, " n_plus_1"],
    noise: Float[np.ndarray, "..."] | None = None,
    order: Index = 2,
    variant: str = "bh2",
    corrector: bool = True,
) -> Array:
    """UniPC-p on a grid τ_0 > … > τ_M = 0 (Zhao et al. 2023, the multistep UniPC of §3 with
    the reference code's schedule of orders; see the module docstring).

    Formula: m_0 = x0_pred(x_T, τ_0); for i = 1..M: q = min(p, i, M + 1 − i);
    x_pred = unip_step(x, last q x̂_0, last q times, τ_i); if i = M: x = x_pred; else
    m_i = x0_pred(x_pred, τ_i) and x = unic_step(…, τ_i, m_i) if corrector else x_pred.
    M model evaluations. order p ∈ {1, 2, 3}; the grid must be strictly decreasing ints,
    τ_0 ∈ {1..T}, τ_M = 0; deterministic: noise is None.
    Shapes: x_T (*shape) -> (*shape).
    """
    steps, _ = check(
        decreasing_grid("grid", grid, 0, sched.T, end=0, integers=True), deterministic(noise),
        in_range("order", order, 1, 3),
        holds(variant in UNIPC_VARIANTS,
              f"variant must be one of {', '.join(UNIPC_VARIANTS)}, got {variant!r}"))
    M = len(steps) - 1
    x, m = x_T, [x0_pred(sched, model, x_T, steps[0])]
    for i in range(1, M + 1):
        q = min(order, i, M + 1 - i)
        history, times = m[-q:], steps[i - q:i]
        # 1. predictor (UniP-q)
        x_pred = unip_step(sched, x, history, times, steps[i], variant)
        if i == M:
            return x_pred
        # 2. the model at the predicted state; 3. corrector (UniC-q), or the prediction as is
        m.append(x0_pred(sched, model, x_pred, steps[i]))
        x = unic_step(sched, x, history, times, steps[i], m[-1], variant) if corrector else x_pred
    return x
