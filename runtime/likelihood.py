"""The variational bound in nats and bits/dim: the twins of `spec.likelihood`, batched.

L = L_T + Σ_{t=2..T} L_{t−1} + L_0 (Ho et al. 2020, Eq. 5) with a fixed reverse variance σ_t²
(§3.2); see `spec.likelihood` for the full statement. `convention` (VLB_CONVENTIONS) picks σ_t²
of the L_{t−1} terms, L_0's decoder variance σ_1² and whether x̂_0 is clipped: "reference-code"
(the default: σ_t² = β̃_t, σ_1² = β̃_2, x̂_0 clipped to [−1, 1] in every term, as the reference
code of DDPM and improved DDPM computes the figures they publish), "beta-1" (σ_t² = β̃_t,
σ_1² = β_1, x̂_0 unclipped) or "fixed-large" (σ_t² = β_t, σ_1² = β̃_2, x̂_0 clipped: the
reference code's "fixedlarge"). Data bins: the values 2k/(bins − 1) − 1; the bin of
x is [x − 1/(bins−1), x + 1/(bins−1)], the lowest extended to −∞ and the highest to +∞; a value
farther than 1e-3/(bins − 1) from every bin centre is a ValueError. Log-probabilities are
log(max(p, 1e-12)).

Batching: x0 (B, C, H, W), noise (T, B, C, H, W). `vlb_terms` returns the per-sample terms
(B, T + 1), each summed over one sample's elements, and `bits_per_dim` a (B,) tensor: the spec
applied to each sample. Results are in the working dtype (float32 for 16-bit inputs). Checking
x0 against the bins reads the data back to the host once per call (this is evaluation code).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from runtime.core import EpsModel, coef_dtype, sqrt_nonneg, work_dtype
from runtime.ddpm import x0_pred
from runtime.forward import q_posterior_mean_variance, q_sample
from runtime.prediction import prediction_of
from runtime.schedule import Schedule

PROB_FLOOR = 1e-12
"""Probabilities are floored here before the log: log(max(p, 1e-12))."""


@dataclass(frozen=True)
class VLBConvention:
    """One convention of the bound (see `spec.likelihood`)."""

    decoder_variance: str  # σ_1² of L_0: "beta_tilde_2" (β̃_2) or "beta_1" (β_1)
    clip_x0: bool  # x̂_0 clipped to [−1, 1] before μ_θ, in every term
    reverse_variance: str  # σ_t² of L_{t−1}, t = 2..T: a name of runtime.ddpm.VARIANCES
    summary: str  # what the commands print beside a figure in this convention


VLB_CONVENTIONS = {
    "reference-code": VLBConvention(
        "beta_tilde_2", clip_x0=True, reverse_variance="fixed_small",
        summary="L_0 variance β̃_2, x̂0 clipped: the footing of DDPM's and improved DDPM's "
                "published bits/dim"),
    "beta-1": VLBConvention("beta_1", clip_x0=False, reverse_variance="fixed_small",
                            summary="L_0 variance β_1, x̂0 unclipped"),
    "fixed-large": VLBConvention(
        "beta_tilde_2", clip_x0=True, reverse_variance="fixed_large",
        summary="reverse variance β_t in L_1..L_T-1, L_0 variance β̃_2, x̂0 clipped: the "
                "reference code's fixedlarge"),
}
DEFAULT_VLB_CONVENTION = "reference-code"
# σ_1² by decoder variance: (table of the schedule, t)
DECODER_VARIANCE = {"beta_tilde_2": ("beta_tilde", 2), "beta_1": ("beta", 1)}
# σ_t² of L_{t−1} (t = 2..T) by reverse variance (runtime.ddpm.VARIANCES): table of the schedule
REVERSE_VARIANCE = {"fixed_small": "beta_tilde", "fixed_large": "beta"}


def _exp(x: Tensor | float) -> Tensor | float:
    return torch.exp(x) if isinstance(x, Tensor) else math.exp(x)


def normal_kl(
    mean1: Tensor | float, logvar1: Tensor | float, mean2: Tensor | float, logvar2: Tensor | float
) -> Tensor | float:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) elementwise, in nats:
    ½·(−1 + logvar2 − logvar1 + exp(logvar1 − logvar2) + (mean1 − mean2)²·exp(−logvar2)).
    Shapes: broadcastable -> broadcast shape."""
    return 0.5 * (
        -1.0
        + logvar2
        - logvar1
        + _exp(logvar1 - logvar2)
        + (mean1 - mean2) ** 2 * _exp(-logvar2)
    )


def standard_normal_cdf(x: Tensor) -> Tensor:
    """Φ(x) = ½·(1 + erf(x/√2)) (exact erf). Shapes: (…) -> (…)."""
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _bin_index(x: Tensor, bins: int) -> Tensor:
    """k with x = 2k/(bins − 1) − 1 (ValueError when x is off the grid; syncs once)."""
    k = torch.round((x + 1) * (bins - 1) / 2)
    off = (torch.abs(x - (2 * k / (bins - 1) - 1)) > 1e-3 / (bins - 1)) | (k < 0) | (k > bins - 1)
    if bool(off.any()):
        bad = float(x[off].flatten()[0])
        raise ValueError(
            f"x0 values must lie on the {bins} bins 2k/({bins}-1) - 1, k = 0..{bins - 1}, "
            f"got x0 value {bad!r} ({int(off.sum())} value(s) off the grid)"
        )
    return k


def discretized_gaussian_log_likelihood(
    x: Tensor, mean: Tensor, log_scale: Tensor | float, bins: int = 256
) -> Tensor:
    """log p(x) of N(mean, e^(2·log_scale)) integrated over x's data bin (DDPM §3.3):
    δ = 1/(bins − 1); p = Φ((x + δ − mean)/σ) − Φ((x − δ − mean)/σ), with Φ(−∞) = 0 for the
    lowest bin and Φ(+∞) = 1 for the highest; log(max(p, 1e-12)).
    Computed in float64 (where the device has it): p is a difference of two CDF values, which
    float32 cannot resolve below ~1e-7.
    Shapes: x, mean (…), log_scale broadcastable -> (…) in the working dtype."""
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got bins = {bins}")
    wd, cd = work_dtype(x.dtype), coef_dtype(x.device)
    x, mean = x.to(cd), mean.to(cd)
    k = _bin_index(x, bins)
    delta = 1.0 / (bins - 1)
    inv_sigma = _exp(-log_scale)
    if isinstance(inv_sigma, Tensor):
        inv_sigma = inv_sigma.to(device=x.device, dtype=cd)
    cdf_plus = torch.where(k == bins - 1, 1.0, standard_normal_cdf(inv_sigma * (x - mean + delta)))
    cdf_min = torch.where(k == 0, 0.0, standard_normal_cdf(inv_sigma * (x - mean - delta)))
    return torch.log(torch.clamp(cdf_plus - cdf_min, min=PROB_FLOOR)).to(wd)


def _sum_per_sample(x: Tensor) -> Tensor:
    return x.flatten(1).sum(dim=1)  # (B, …) -> (B,)


def _convention(name: str, T: int) -> VLBConvention:
    if name not in VLB_CONVENTIONS:
        raise ValueError(f"convention must be one of {sorted(VLB_CONVENTIONS)}, got {name!r}")
    if VLB_CONVENTIONS[name].decoder_variance == "beta_tilde_2" and T < 2:
        raise ValueError(f"convention {name!r} takes L_0's variance from β̃_2, which needs T >= 2, "
                         f"got T = {T}; use convention 'beta-1'")
    return VLB_CONVENTIONS[name]


def _model_mean(sched: Schedule, model: EpsModel, x_t: Tensor, t: int, clip: bool) -> Tensor:
    """μ_θ(x_t, t) = μ̃_t(x̂_0, x_t), x̂_0 = x0_pred(x_t, t) clipped to [−1, 1] if clip."""
    x0_hat = x0_pred(sched, model, x_t, t)
    if clip:
        x0_hat = x0_hat.clamp(-1.0, 1.0)
    return q_posterior_mean_variance(sched, x0_hat, x_t, t)[0]


@torch.no_grad()
def vlb_terms(
    sched: Schedule, model: EpsModel, x0: Tensor, noise: Tensor, bins: int = 256,
    convention: str = DEFAULT_VLB_CONVENTION,
) -> Tensor:
    """Per-sample terms of the variational bound in nats (Ho et al. 2020, Eq. 5): column 0 is L_0,
    column t−1 (t = 2..T) is L_{t−1}, column T is L_T; x_t = q_sample(x0, t, noise[t−1]); the
    reverse variance σ_t² of L_{t−1}, L_0's σ_1² and the clipping of x̂_0 follow `convention`
    (VLB_CONVENTIONS).
    Shapes: x0 (B, C, H, W) on the bins grid, noise (T, B, C, H, W) -> (B, T + 1)."""
    T = sched.T
    if tuple(noise.shape) != (T, *x0.shape):
        raise ValueError(
            f"noise must have shape (T, *x0.shape) = {(T, *x0.shape)}, got {tuple(noise.shape)}"
        )
    conv = _convention(convention, T)
    _bin_index(x0, bins)
    wd, in_dtype = work_dtype(x0.dtype), x0.dtype
    x0 = x0.to(wd)

    def model_wd(x: Tensor, t_norm: Tensor | float) -> Tensor:
        # The model sees the caller's dtype; the bound's arithmetic stays in the working dtype.
        return model(x.to(in_dtype), t_norm).to(wd)

    model_wd.prediction = prediction_of(model)  # type: ignore[attr-defined]

    terms = x0.new_zeros((x0.shape[0], T + 1))
    # L_T: the prior term, no model
    ab_T = sched.alpha_bar.coef(T, x0).to(x0.device)
    prior = normal_kl(sqrt_nonneg(ab_T).to(wd) * x0, torch.log(1 - ab_T).to(wd), 0.0, 0.0)
    terms[:, T] = _sum_per_sample(prior)
    # L_{t−1}, t = 2..T: posterior N(μ̃_t, β̃_t) vs model N(μ_θ, σ_t²), σ_t² = β̃_t or β_t
    reverse = getattr(sched, REVERSE_VARIANCE[conv.reverse_variance])
    for t in range(2, T + 1):
        x_t = q_sample(sched, x0, t, noise[t - 1].to(wd))
        mean_q = q_posterior_mean_variance(sched, x0, x_t, t)[0]
        mean_p = _model_mean(sched, model_wd, x_t, t, conv.clip_x0)
        log_var = torch.log(sched.beta_tilde.coef(t, x0)).to(x0.device, wd)
        log_var_p = torch.log(reverse.coef(t, x0)).to(x0.device, wd)
        terms[:, t - 1] = _sum_per_sample(normal_kl(mean_q, log_var, mean_p, log_var_p))
    # L_0: discretized decoder with σ_1² = β̃_2 or β_1 (β̃_1 = 0)
    x_1 = q_sample(sched, x0, 1, noise[0].to(wd))
    mean_p = _model_mean(sched, model_wd, x_1, 1, conv.clip_x0)
    table, t_sigma = DECODER_VARIANCE[conv.decoder_variance]
    log_scale = (0.5 * torch.log(getattr(sched, table).coef(t_sigma, x0))).to(x0.device, wd)
    terms[:, 0] = -_sum_per_sample(discretized_gaussian_log_likelihood(x0, mean_p, log_scale, bins))
    return terms


def bits_per_dim(
    sched: Schedule, model: EpsModel, x0: Tensor, noise: Tensor, bins: int = 256,
    convention: str = DEFAULT_VLB_CONVENTION,
) -> Tensor:
    """Σ_t vlb_terms / (elements per sample · ln 2), per sample, in `convention`.
    Shapes: x0 (B, C, H, W) -> (B,)."""
    terms = vlb_terms(sched, model, x0, noise, bins, convention)
    return terms.sum(dim=1) / (x0[0].numel() * math.log(2))


__all__ = [
    "DEFAULT_VLB_CONVENTION",
    "PROB_FLOOR",
    "VLBConvention",
    "VLB_CONVENTIONS",
    "bits_per_dim",
    "discretized_gaussian_log_likelihood",
    "normal_kl",
    "standard_normal_cdf",
    "vlb_terms",
]
