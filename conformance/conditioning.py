"""The conditioning of the model-free formulas: for each, the `scale` of
`conformance.tolerances.conditioned`, named after the spec function and called with the spec's
arguments (one sample, float64, the inputs already rounded to the runtime's dtype).

A formula a·x + b·y (divided by d) made of float64 coefficients cast once to the working dtype
makes a few roundings, each relative to the magnitude of what it rounds; so its error is a few
units of roundoff times scale = (|a|·|x| + |b|·|y|)/|d|, the sum of the magnitudes of the terms
it adds over the magnitude of what it divides by. That is small where nothing cancels and large
where the formula is ill-conditioned (x̂0 of ε at ᾱ → 0 divides by √ᾱ; D of DPM-Solver++ weighs
two x̂0 by 1 + c and c), and it is what a flat rtol cannot express: at t = 1 of a linear
schedule (1 − ᾱ = 1e-4) a coefficient formed in float32 instead (√(1 − ᾱ) after rounding ᾱ) is
off by ~2^-24/(1 − ᾱ) = 6e-4 relative, far above the roundings this allows and far below a flat
2e-5 on a term of size 1e-2.

Records name their twin here with `conditioning=` (conformance/record.py); the fixed small-t
cases of test_precision.py use the same functions. A formula with literal coefficients 0 and 1
only (ε̂ = out of an ε-model) computes nothing: its scale is 0 and only the rounding of the
result to its dtype is allowed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import spec.dpm_solver
import spec.prediction
import spec.unipc
from spec.core import EPS

Array = np.ndarray


def combine(coefficients: spec.prediction.Coefficients, x: Array, y: Array) -> Array:
    """The scale of spec.prediction.combine: (|a|·|x| + |b|·|y|)/(|d| + EPS) over the terms it
    computes (a literal 0 leaves its term out, a literal 1 divisor divides by nothing); 0 where
    it computes nothing (one term, coefficient and divisor the literal 1)."""
    a, b, d = coefficients
    lit = spec.prediction._is
    terms = [(c, z) for c, z in ((a, x), (b, y)) if not lit(c, 0)]
    if len(terms) == 1 and lit(terms[0][0], 1) and lit(d, 1):
        return np.zeros_like(np.asarray(terms[0][1], dtype=np.float64))
    total = sum(abs(float(c)) * np.abs(z) for c, z in terms)
    return total if lit(d, 1) else total / (abs(float(d)) + EPS)


def _roots(ab: float) -> tuple[float, float]:
    return math.sqrt(max(ab, 0.0)), math.sqrt(max(1.0 - ab, 0.0))


def x0_from_output(ab: float, x_t: Array, out: Array, prediction: str) -> Array:
    """x̂0 = (a·x_t + b·out)/d of the prediction's row: for ε (|x_t| + √(1 − ᾱ)·|out|)/√ᾱ."""
    return combine(spec.prediction.PREDICTION_TABLE[prediction].x0(*_roots(ab)), x_t, out)


def eps_from_output(ab: float, x_t: Array, out: Array, prediction: str) -> Array:
    """ε̂ = (a·x_t + b·out)/d of the prediction's row: for x0 (|x_t| + √ᾱ·|out|)/√(1 − ᾱ)."""
    return combine(spec.prediction.PREDICTION_TABLE[prediction].eps(*_roots(ab)), x_t, out)


def predict_x0(sched: Any, x_t: Array, out: Array, t: int, prediction: str = "eps") -> Array:
    return x0_from_output(float(sched.alpha_bar[t]), x_t, out, prediction)


def predict_eps(sched: Any, x_t: Array, out: Array, t: int, prediction: str = "eps") -> Array:
    return eps_from_output(float(sched.alpha_bar[t]), x_t, out, prediction)


def prediction_target(sched: Any, x0: Array, t: int, eps: Array, prediction: str) -> Array:
    """The target row's a·x0 + b·ε: for v √ᾱ_t·|ε| + √(1 − ᾱ_t)·|x0|."""
    row = spec.prediction.PREDICTION_TABLE[prediction]
    return combine(row.target(*_roots(float(sched.alpha_bar[t]))), x0, eps)


def v_target(sched: Any, x0: Array, t: int, eps: Array) -> Array:
    return prediction_target(sched, x0, t, eps, "v")


def q_sample(sched: Any, x0: Array, t: int, eps: Array) -> Array:
    """√ᾱ_t·|x0| + √(1 − ᾱ_t)·|ε|."""
    a, s = _roots(float(sched.alpha_bar[t]))
    return a * np.abs(x0) + s * np.abs(eps)


def q_posterior_mean_variance(sched: Any, x0: Array, x_t: Array, t: int) -> tuple[Array, float]:
    """(coef_x0·|x0| + coef_xt·|x_t|, 0): the variance β̃_t is the float64 table's, rounded once."""
    ab_prev, ab, beta = sched.alpha_bar[t - 1], sched.alpha_bar[t], sched.beta[t]
    c0 = math.sqrt(ab_prev) * beta / (1 - ab + EPS)
    ct = math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab + EPS)
    return c0 * np.abs(x0) + ct * np.abs(x_t), 0.0


def data_step(sched: Any, x_t: Array, d: Array, t: int, t_next: int) -> Array:
    """The scale of DPM-Solver++'s line 8 (σ_next/σ_t)·(x_t − √ᾱ_t·D) + √ᾱ_next·D, given the
    scale d of D: (σ_next/σ_t)·(|x_t| + √ᾱ_t·d) + √ᾱ_next·d."""
    (a, s), (a_next, s_next) = _roots(sched.alpha_bar[t]), _roots(sched.alpha_bar[t_next])
    return s_next / (s + EPS) * (np.abs(x_t) + a * d) + a_next * d


def dpm_solver_pp_2m_step(sched: Any, x_t: Array, x0_hat: Array, t: int, t_next: int,
                          x0_hat_prev: Array | None = None, t_prev: int | None = None) -> Array:
    """data_step with d = |1 + c|·|x̂0| + |c|·|x̂0_prev| (d = |x̂0| at first order)."""
    ab, ab_next = sched.alpha_bar[t], sched.alpha_bar[t_next]
    d = np.abs(x0_hat)
    if x0_hat_prev is not None and ab_next < 1:
        lam = spec.dpm_solver.half_log_snr(np.array([sched.alpha_bar[t_prev], ab, ab_next]))
        c = (lam[2] - lam[1]) / (2 * (lam[1] - lam[0]))
        d = abs(1 + c) * np.abs(x0_hat) + abs(c) * np.abs(x0_hat_prev)
    return data_step(sched, x_t, d, t, t_next)


def dpm_solver_pp_3m_step(sched: Any, x_t: Array, x0_hat: Array, t: int, t_next: int,
                          x0_hat_prev: Array, t_prev: int, x0_hat_prev2: Array,
                          t_prev2: int) -> Array:
    """The DDIM part's scale plus Σ_k |w_k|·|m_k|, w_k the weight of m_k in the (3M) correction
    (the spec's correction is linear in the three x̂0: w_k is its value at m_k = 1, the others 0)."""
    scale = data_step(sched, x_t, np.abs(x0_hat), t, t_next)
    if sched.alpha_bar[t_next] == 1:
        return scale
    ab = sched.alpha_bar
    lam2, lam1, lam0, lam_n = spec.dpm_solver.half_log_snr(
        np.array([ab[t_prev2], ab[t_prev], ab[t], ab[t_next]]))

    def correction(m0: float, m1: float, m2: float) -> float:
        f01, f12 = (m0 - m1) / (lam0 - lam1), (m1 - m2) / (lam1 - lam2)
        d2 = (f01 - f12) / (lam0 - lam2)
        d1 = f01 + (lam0 - lam1) * d2
        h = lam_n - lam0
        hE = h + np.expm1(-h)
        return math.sqrt(ab[t_next]) * (hE * d1 + (h**2 - 2 * hE) * d2)

    weights = (correction(1, 0, 0), correction(0, 1, 0), correction(0, 0, 1))
    return scale + sum(abs(w) * np.abs(m) for w, m in zip(weights, (x0_hat, x0_hat_prev,
                                                                    x0_hat_prev2), strict=True))


def _unipc(sched: Any, x_t: Array, x0_hats: Any, times: Any, t_next: int, variant: str,
           x0_hat_next: Array | None) -> Array:
    """The DDIM part's scale plus √ᾱ_n·|B(h)|·Σ_k |ρ_k|·(|m_k| + |m_0|)/|r_k| (spec.unipc)."""
    m, ts = list(x0_hats), [int(s) for s in times]
    scale = data_step(sched, x_t, np.abs(m[-1]), ts[-1], t_next)
    ab = sched.alpha_bar
    if ab[t_next] == 1 or ab[ts[-1]] == 0 or (x0_hat_next is None and len(ts) == 1):
        return scale
    B, r, b = spec.unipc._coefficients(sched, ts, t_next, variant)
    points = [m[-2 - k] for k in range(len(r))]
    if x0_hat_next is not None:
        r, points = [*r, 1.0], [*points, x0_hat_next]
    else:
        b = b[:-1]
    rho = [0.5] if len(r) == 1 else np.linalg.solve(np.vander(r, increasing=True).T, b)
    diffs = sum(abs(rho[k] / r[k]) * (np.abs(points[k]) + np.abs(m[-1])) for k in range(len(r)))
    return scale + math.sqrt(ab[t_next]) * abs(B) * diffs


def unip_step(sched: Any, x_t: Array, x0_hats: Any, times: Any, t_next: int,
              variant: str = "bh2") -> Array:
    return _unipc(sched, x_t, x0_hats, times, t_next, variant, None)


def unic_step(sched: Any, x_t: Array, x0_hats: Any, times: Any, t_next: int, x0_hat_next: Array,
              variant: str = "bh2") -> Array:
    return _unipc(sched, x_t, x0_hats, times, t_next, variant, x0_hat_next)


def ddim_prev(ab_prev: float, ab: float, x_t: Array, eps_hat: Array, clip: bool = True) -> Array:
    """√ᾱ_prev·(|x̂0| + scale of x̂0) + √(1 − ᾱ_prev)·|ε̂| (the scale of x̂0 kept where it is
    clipped: a bound)."""
    x0 = spec.prediction.x0_from_output(ab, x_t, eps_hat, "eps")
    if clip:
        x0 = np.clip(x0, -1, 1)
    a_prev, s_prev = _roots(ab_prev)
    return (a_prev * (np.abs(x0) + x0_from_output(ab, x_t, eps_hat, "eps"))
            + s_prev * np.abs(eps_hat))


__all__ = [
    "combine",
    "data_step",
    "ddim_prev",
    "dpm_solver_pp_2m_step",
    "dpm_solver_pp_3m_step",
    "eps_from_output",
    "predict_eps",
    "predict_x0",
    "prediction_target",
    "q_posterior_mean_variance",
    "q_sample",
    "unic_step",
    "unip_step",
    "v_target",
    "x0_from_output",
]
