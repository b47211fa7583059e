"""The variational bound in nats and bits/dim (DDPM, Ho et al. 2020, Eq. 5 and §3.3).

L = L_T + Σ_{t=2..T} L_{t−1} + L_0 with a fixed reverse variance σ_t² (DDPM §3.2):
    L_T     = KL(q(x_T | x_0) ‖ N(0, I))                                (no model)
    L_{t−1} = KL(q(x_{t−1} | x_t, x_0) ‖ N(μ_θ(x_t, t), σ_t²·I)),  t = 2..T
    L_0     = −log p(x_0 | x_1),  p the discretized Gaussian N(μ_θ(x_1, 1), σ_1²) on the data bins
μ_θ(x_t, t) is the posterior mean μ̃_t with x_0 replaced by x̂_0 = x0_pred(x_t, t). Per element,
with q = N(μ̃_t, β̃_t) (Eq. 7):
    σ_t² = β̃_t ("fixed small"):  L_{t−1} = (μ̃_t − μ_θ)²/(2β̃_t)
    σ_t² = β_t  ("fixed large"):  L_{t−1} = (μ̃_t − μ_θ)²/(2β_t) + ½·(β̃_t/β_t − 1 − log(β̃_t/β_t))
§3.2 finds both give similar samples: β̃_t is optimal for x_0 one fixed point, β_t for
x_0 ~ N(0, I); the second costs the variance mismatch even with an exact x̂_0 (β̃_t < β_t).
Since β̃_1 = 0, L_0's decoder needs another variance σ_1², and papers and code differ here and on
clipping x̂_0; `convention` picks one of VLB_CONVENTIONS:

    "reference-code"  σ_1² = β̃_2, x̂_0 clipped to [−1, 1] in every term: what the reference code
                      of DDPM (diffusion_utils_2.py, calc_bpd_loop with clip_denoised=True and
                      the "fixedsmall" posterior_log_variance_clipped, whose entry for L_0 is
                      log β̃_2) and of improved DDPM (Nichol & Dhariwal 2021, gaussian_diffusion.py,
                      the same) compute, so the numbers they report (DDPM Table 2: 3.75 on
                      CIFAR-10; improved DDPM: 2.94) are on this footing. The default.
    "beta-1"          σ_1² = β_1 (DDPM §3.2's other choice of reverse variance, σ_t² = β_t, at
                      t = 1), x̂_0 unclipped: the bound as Eq. 5 reads with that σ_1.
    "fixed-large"     σ_t² = β_t in every L_{t−1} (t = 2..T), σ_1² = β̃_2, x̂_0 clipped: the
                      reference code's model_var_type "fixedlarge", whose variance table is
                      [β̃_2, β_2, β_3, …, β_T] (posterior_variance[1] at t = 1, then betas[1:]).

The first two use σ_t² = β̃_t ("fixed small") in every L_{t−1}.

With the linear betas of DDPM (β_1 = 1e-4, β̃_2 ≈ 5.45e-5) and an exact x̂_0 on 256 bins, L_0
per element is −log(2Φ(δ/σ_1) − 1) (δ = 1/255): 1.71 bits with β_1 against 1.31 with β̃_2, so
"beta-1" and "reference-code" differ by about 0.41 bits/dim there; "fixed-large" adds the
mismatch terms, Σ_{t=2..T} ½·(r_t − 1 − log r_t) with r_t = β̃_t/β_t, 0.49 bits/dim at T = 1000
(0.18 of it at t = 2). Clipping only moves x̂_0 toward the data range [−1, 1], where x_0 lies,
so it never increases a KL term.

Data bins: the values 2k/(bins − 1) − 1, k = 0..bins−1 (256 for 8-bit images, 17 for the digits);
the bin of x is [x − 1/(bins−1), x + 1/(bins−1)], the lowest extended to −∞ and the highest to
+∞. A value of x0 farther than 1e-3·(1/(bins − 1)) from every bin centre is a ValueError.
Log-probabilities are log(max(p, 1e-12)). Each term is summed over every element of x0.
"""

import math
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float

from spec.core import Index, Scalar, check, in_range, same_shape, sqrt_nonneg
from spec.ddpm import VARIANCES, x0_pred
from spec.forward import q_posterior_mean_variance, q_sample
from spec.prediction import AnyModel
from spec.schedule import VPSchedule

__all__ = [
    "normal_kl",
    "standard_normal_cdf",
    "discretized_gaussian_log_likelihood",
    "vlb_terms",
    "bits_per_dim",
]

ArrayOrScalar = Float[np.ndarray, "..."] | Scalar
PROB_FLOOR = 1e-12
"""Probabilities are floored here before the log: log(max(p, 1e-12))."""


@dataclass(frozen=True)
class VLBConvention:
    """One convention of the bound (see the module docstring)."""

    decoder_variance: str  # σ_1² of L_0: "beta_tilde_2" (β̃_2) or "beta_1" (β_1)
    clip_x0: bool  # x̂_0 clipped to [−1, 1] before μ_θ, in every term
    reverse_variance: str  # σ_t² of L_{t−1}, t = 2..T: a name of spec.ddpm.VARIANCES


VLB_CONVENTIONS = {
    "reference-code": VLBConvention("beta_tilde_2", clip_x0=True, reverse_variance="fixed_small"),
    "beta-1": VLBConvention("beta_1", clip_x0=False, reverse_variance="fixed_small"),
    "fixed-large": VLBConvention("beta_tilde_2", clip_x0=True, reverse_variance="fixed_large"),
}
DEFAULT_VLB_CONVENTION = "reference-code"


def normal_kl(
    mean1: ArrayOrScalar, logvar1: ArrayOrScalar, mean2: ArrayOrScalar, logvar2: ArrayOrScalar
) -> ArrayOrScalar:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)), elementwise, in nats.

    Formula: ½·(−1 + logvar2 − logvar1 + exp(logvar1 − logvar2) + (mean1 − mean2)²·exp(−logvar2))
    (the Gaussian KL used for Ho et al. 2020 Eq. 5). (logvar2 − logvar1) is formed first, so
    equal arguments give exactly 0.
    Shapes: broadcastable arrays or scalars -> broadcast shape.
    """
    return 0.5 * (
        -1.0
        + (logvar2 - logvar1)
        + np.exp(logvar1 - logvar2)
        + (mean1 - mean2) ** 2 * np.exp(-logvar2)
    )


_erf = np.vectorize(math.erf, otypes=[np.float64])


def standard_normal_cdf(x: ArrayOrScalar) -> ArrayOrScalar:
    """Φ(x), the standard normal CDF (exact erf, elementwise).

    Formula: Φ(x) = ½·(1 + erf(x/√2)).
    Shapes: (*shape) or scalar -> same.
    """
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))


def _bin_index(x: np.ndarray, bins: int) -> np.ndarray:
    """k with x = 2k/(bins − 1) − 1 (ValueError when x is off the grid)."""
    k = np.rint((x + 1) * (bins - 1) / 2)
    off = np.abs(x - (2 * k / (bins - 1) - 1)) > 1e-3 / (bins - 1)
    off |= (k < 0) | (k > bins - 1)
    if np.any(off):
        bad = x[off].flat[0]
        raise ValueError(
            f"x0 values must lie on the {bins} bins 2k/({bins}-1) - 1, k = 0..{bins - 1}, "
            f"got x0 value {bad!r} ({int(off.sum())} value(s) off the grid)"
        )
    return k


def discretized_gaussian_log_likelihood(
    x: Float[np.ndarray, "*shape"],
    mean: Float[np.ndarray, "..."],
    log_scale: ArrayOrScalar,
    bins: Index = 256,
) -> Float[np.ndarray, "*shape"]:
    """log p(x) of N(mean, e^(2·log_scale)) integrated over x's data bin (DDPM §3.3, Eq. 13).

    Formula: δ = 1/(bins − 1); p = Φ((x + δ − mean)/σ) − Φ((x − δ − mean)/σ), σ = e^log_scale,
    with Φ(−∞) = 0 for the lowest bin (x = −1) and Φ(+∞) = 1 for the highest (x = 1);
    result log(max(p, 1e-12)). Summed over all bins of one coordinate, p is 1.
    Shapes: x (*shape), mean (*shape), log_scale broadcastable -> (*shape).
    """
    bins = check(in_range("bins", bins, 2, 2**31), same_shape("mean", mean, "x", x.shape))
    k = _bin_index(x, bins)
    delta = 1.0 / (bins - 1)
    inv_sigma = np.exp(-log_scale)
    cdf_plus = np.where(k == bins - 1, 1.0, standard_normal_cdf(inv_sigma * (x - mean + delta)))
    cdf_min = np.where(k == 0, 0.0, standard_normal_cdf(inv_sigma * (x - mean - delta)))
    return np.log(np.maximum(cdf_plus - cdf_min, PROB_FLOOR)).astype(x.dtype)


def _convention(name: str, T: int) -> VLBConvention:
    if name not in VLB_CONVENTIONS:
        raise ValueError(f"convention must be one of {sorted(VLB_CONVENTIONS)}, got {name!r}")
    if VLB_CONVENTIONS[name].decoder_variance == "beta_tilde_2" and T < 2:
        raise ValueError(f"convention {name!r} takes L_0's variance from β̃_2, which needs T >= 2, "
                         f"got T = {T}; use convention 'beta-1'")
    return VLB_CONVENTIONS[name]


def _model_mean(
    sched: VPSchedule, model: AnyModel, x_t: Float[np.ndarray, "*shape"], t: Index, clip: bool
) -> Float[np.ndarray, "*shape"]:
    """μ_θ(x_t, t) = μ̃_t(x̂_0, x_t), x̂_0 = x0_pred(x_t, t) clipped to [−1, 1] if clip."""
    x0_hat = x0_pred(sched, model, x_t, t)
    if clip:
        x0_hat = np.clip(x0_hat, -1.0, 1.0)
    return q_posterior_mean_variance(sched, x0_hat, x_t, t)[0]


def vlb_terms(
    sched: VPSchedule,
    model: AnyModel,
    x0: Float[np.ndarray, "*shape"],
    noise: Float[np.ndarray, "..."],
    bins: Index = 256,
    convention: str = DEFAULT_VLB_CONVENTION,
) -> Float[np.ndarray, " T_plus_1"]:
    """The per-timestep terms of the variational bound, in nats (Ho et al. 2020, Eq. 5).

    Formula: x_t = q_sample(x0, t, noise[t−1]);  index 0: L_0 = −Σ log p(x0 | x_1) with
    p = N(μ_θ(x_1, 1), σ_1²) discretized (Eq. 13);
    index t−1 (t = 2..T): L_{t−1} = Σ KL(N(μ̃_t(x_0, x_t), β̃_t) ‖ N(μ_θ(x_t, t), σ_t²));
    index T: L_T = Σ KL(N(√ᾱ_T·x0, 1 − ᾱ_T) ‖ N(0, 1)). σ_t², σ_1² and the clipping of x̂_0 in
    μ_θ follow `convention` (VLB_CONVENTIONS: "reference-code" σ_t² = β̃_t, σ_1² = β̃_2 and
    clipped x̂_0, needs T ≥ 2; "beta-1" σ_t² = β̃_t, σ_1² = β_1 and unclipped x̂_0;
    "fixed-large" σ_t² = β_t, σ_1² = β̃_2 and clipped x̂_0, needs T ≥ 2); see the module docstring.
    Shapes: x0 (*shape) on the bins grid, noise (T, *shape) -> (T + 1,).
    """
    T = sched.T
    bins = check(same_shape("noise", noise, "(T, *x0.shape)", (T, *x0.shape)),
                 in_range("bins", bins, 2, 2**31))
    conv = _convention(convention, T)
    _bin_index(x0, bins)
    terms = np.zeros(T + 1, dtype=np.result_type(x0, sched.beta))
    # L_T: the prior term, no model
    ab_T = sched.alpha_bar[T]
    terms[T] = np.sum(normal_kl(sqrt_nonneg(ab_T) * x0, np.log(1 - ab_T), 0.0, 0.0))
    # L_{t−1}, t = 2..T: posterior N(μ̃_t, β̃_t) vs model N(μ_θ, σ_t²), σ_t² = β̃_t or β_t (§3.2)
    for t in range(2, T + 1):
        x_t = q_sample(sched, x0, t, noise[t - 1])
        mean_q, var = q_posterior_mean_variance(sched, x0, x_t, t)
        mean_p = _model_mean(sched, model, x_t, t, conv.clip_x0)
        var_p = VARIANCES[conv.reverse_variance](sched, t, var)
        terms[t - 1] = np.sum(normal_kl(mean_q, np.log(var), mean_p, np.log(var_p)))
    # L_0: discretized decoder with variance σ_1² = β̃_2 (Eq. 7 at t = 2) or β_1 (β̃_1 = 0)
    x_1 = q_sample(sched, x0, 1, noise[0])
    mean_p = _model_mean(sched, model, x_1, 1, conv.clip_x0)
    if conv.decoder_variance == "beta_tilde_2":
        sigma2 = q_posterior_mean_variance(sched, x0, x0, 2)[1]
    else:
        sigma2 = sched.beta[1]
    log_scale = 0.5 * np.log(sigma2)
    terms[0] = -np.sum(discretized_gaussian_log_likelihood(x0, mean_p, log_scale, bins))
    return terms


def bits_per_dim(
    sched: VPSchedule,
    model: AnyModel,
    x0: Float[np.ndarray, "*shape"],
    noise: Float[np.ndarray, "..."],
    bins: Index = 256,
    convention: str = DEFAULT_VLB_CONVENTION,
) -> Scalar:
    """The variational bound in bits per dimension (Ho et al. 2020, Table 2's NLL column).

    Formula: bits_per_dim = Σ_t vlb_terms[t] / (x0.size · ln 2), in `convention` (the
    reference code's by default, the footing of the published figures).
    Shapes: x0 (*shape), noise (T, *shape) -> scalar.
    """
    return np.sum(vlb_terms(sched, model, x0, noise, bins, convention)) / (x0.size * math.log(2))
