"""The conventions of the variational bound (`spec.likelihood.VLB_CONVENTIONS` and its runtime
twin): the reverse variance of L_{t−1} (β̃_t or β_t), L_0's decoder variance (β̃_2 or β_1) and
the clipping of x̂_0, in closed form."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from spec_strategies import bin_counts, binned_samples, schedules, seeds

import runtime.ddpm
import runtime.likelihood as rl
import runtime.schedule as rs
import spec
from spec.likelihood import VLB_CONVENTIONS
from spec.prediction import PredictionModel

# L_0 depends on β_1 and β_2 only: the first three betas of DDPM's schedule (linear 1e-4..0.02,
# T = 1000) give its L_0, with the loop over t three steps long.
BETA_1 = 1e-4
BETAS = spec.linear_betas(1000, BETA_1, 0.02)[:3]
T = len(BETAS)
# μ̃_1's weight on x̂_0 is β_1/(1 − ᾱ_1 + EPS) with safe_div's EPS = 1e-12: μ_θ = x_0·(1 − 1e-8),
# which moves the end bins' log-mass by ~1e-6 relative; interior bins are flat there.
REL = 1e-5


def phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def beta_tilde_2(betas: np.ndarray) -> float:
    """β̃_2 = (1 − ᾱ_1)·β_2/(1 − ᾱ_2) (DDPM Eq. 7)."""
    ab1, ab2 = 1 - betas[0], (1 - betas[0]) * (1 - betas[1])
    return (1 - ab1) * betas[1] / (1 - ab2)


@dataclass
class ExactEps:
    """The ε-model that returns, at time t, the noise that made x_t: x̂_0 = x_0 exactly, so
    every L_{t−1} (t = 2..T) is 0 and L_0 is the decoder's mass on x_0's own bin."""

    noise: np.ndarray  # (T, *shape)

    def eps(self, x, t_norm):
        return self.noise[round(t_norm * T) - 1]


def l0_bits_of_an_exact_model(x0: np.ndarray, sigma2: float, bins: int) -> float:
    """−Σ log2 p(x0 | x_1) with μ_θ = x_0: p = 2Φ(δ/σ) − 1 inside, Φ(δ/σ) at the two end bins."""
    z = (1.0 / (bins - 1)) / math.sqrt(sigma2)
    edge = (x0 == -1.0) | (x0 == 1.0)
    return float(-(edge * math.log2(phi(z)) + ~edge * math.log2(2 * phi(z) - 1)).sum())


X0 = np.array([-1.0, -1 + 2 / 255, 0 - 1 / 255, 77 * 2 / 255 - 1, 1.0])  # on the 256 bins


def test_l0_of_each_convention_in_closed_form_and_their_difference_of_about_041_bits():
    betas = BETAS
    sched = spec.VPSchedule(betas)
    noise = np.random.default_rng(0).standard_normal((T, *X0.shape))
    l0 = {}
    for name, sigma2 in (("reference-code", beta_tilde_2(betas)), ("beta-1", BETA_1)):
        terms = spec.vlb_terms(sched, ExactEps(noise), X0, noise, 256, convention=name)
        assert np.abs(terms[1:T]).max() < 1e-9  # x̂_0 = x_0: the KL terms vanish
        l0[name] = terms[0] / math.log(2)
        assert l0[name] == pytest.approx(l0_bits_of_an_exact_model(X0, sigma2, 256), rel=REL)
    # β̃_2 ≈ 5.45e-5 < β_1 = 1e-4: the reference convention's decoder is sharper, so an exact
    # x̂_0 costs less; per interior element 1.713 − 1.305 = 0.407 bits (the "about 0.41")
    interior = l0_bits_of_an_exact_model(np.zeros(1) + 1 / 255, BETA_1, 256) - \
        l0_bits_of_an_exact_model(np.zeros(1) + 1 / 255, beta_tilde_2(betas), 256)
    assert interior == pytest.approx(0.4075, abs=5e-4)
    assert l0["beta-1"] - l0["reference-code"] == pytest.approx(
        l0_bits_of_an_exact_model(X0, BETA_1, 256)
        - l0_bits_of_an_exact_model(X0, beta_tilde_2(betas), 256), rel=REL)


# β̃_t = safe_div(…, 1 − ᾱ_t) adds EPS = 1e-12 to 1 − ᾱ_t ≥ 1e-4: up to 1e-8 on β̃_t/β_t
MISMATCH_REL = 1e-7


def variance_mismatch_nats(betas: np.ndarray, t: int) -> float:
    """KL(N(μ, β̃_t) ‖ N(μ, β_t)) per element = ½·(r − 1 − log r), r = β̃_t/β_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)
    (Eq. 7): what σ_t² = β_t costs an exact x̂_0 in L_{t−1}."""
    ab = np.cumprod(1 - betas)  # ᾱ_1..ᾱ_T
    r = (1 - ab[t - 2]) / (1 - ab[t - 1])
    return 0.5 * (r - 1 - math.log(r))


def test_the_runtime_twin_gives_the_same_closed_form():
    betas = BETAS
    noise = np.random.default_rng(0).standard_normal((T, 1, 1, 1, X0.size))
    sched = rs.Schedule(torch.from_numpy(betas))
    noise_t = torch.from_numpy(noise)

    def exact_eps(x, t_norm):
        return noise_t[round(float(t_norm) * T) - 1]

    x0 = torch.from_numpy(X0).reshape(1, 1, 1, X0.size)
    for name, sigma2 in (("reference-code", beta_tilde_2(betas)), ("beta-1", BETA_1),
                         ("fixed-large", beta_tilde_2(betas))):
        terms = rl.vlb_terms(sched, exact_eps, x0, noise_t, 256, convention=name)
        assert float(terms[0, 0]) / math.log(2) == pytest.approx(
            l0_bits_of_an_exact_model(X0, sigma2, 256), rel=REL)
        large = VLB_CONVENTIONS[name].reverse_variance == "fixed_large"
        for t in range(2, T + 1):
            assert float(terms[0, t - 1]) == pytest.approx(
                X0.size * variance_mismatch_nats(betas, t) * large, rel=MISMATCH_REL, abs=1e-9)


@dataclass
class PerStepOracle:
    """The ε-model of a T-step schedule that returns the noise that made x_t: x̂_0 = x_0."""

    noise: np.ndarray  # (T, *shape)

    def eps(self, x, t_norm):
        return self.noise[round(t_norm * len(self.noise)) - 1]


@given(schedules(min_T=2, max_T=8),
       bin_counts().flatmap(lambda b: st.tuples(st.just(b), binned_samples((2, 3), b))), seeds())
def test_fixed_large_costs_an_exact_model_the_variance_mismatch_in_every_kl_term(
    sched, bins_x0, seed
):
    # x̂_0 = x_0, so μ_θ = μ̃_t and L_{t−1} is the KL of two Gaussians of one mean: 0 with
    # σ_t² = β̃_t (fixed small), ½·(β̃_t/β_t − 1 − log(β̃_t/β_t)) per element with σ_t² = β_t;
    # L_0 and L_T are the reference code's (same σ_1² = β̃_2, same clipping).
    bins, x0 = bins_x0
    noise = np.random.default_rng(seed).standard_normal((sched.T, *x0.shape))
    model = PerStepOracle(noise)
    large = spec.vlb_terms(sched, model, x0, noise, bins, convention="fixed-large")
    small = spec.vlb_terms(sched, model, x0, noise, bins, convention="reference-code")
    betas = np.asarray(sched.beta[1:])
    for t in range(2, sched.T + 1):
        mismatch = x0.size * variance_mismatch_nats(betas, t)
        assert large[t - 1] == pytest.approx(mismatch, rel=MISMATCH_REL, abs=1e-12)
        assert small[t - 1] == pytest.approx(0.0, abs=1e-9)
        assert large[t - 1] >= small[t - 1]
    assert (large[0], large[sched.T]) == (small[0], small[sched.T])


@dataclass
class X0Constant:
    """An x0-model whose x̂_0 is `value` everywhere (prediction "x0")."""

    value: float

    def eps(self, x, t_norm):
        return np.full_like(x, self.value)


def test_clipping_x0_hat_removes_an_overshoot_from_every_kl_term():
    # x_0 = 1 everywhere and x̂_0 = 3: unclipped, L_{t−1} = ½·coef_t²·(3 − 1)²/β̃_t per element,
    # coef_t = √ᾱ_{t−1}·β_t/(1 − ᾱ_t) (μ̃'s weight on x_0, Eq. 7); clipped, x̂_0 = 1 = x_0: 0.
    betas = np.array([0.1, 0.2, 0.3, 0.4])
    sched = spec.VPSchedule(betas)
    model = PredictionModel(X0Constant(3.0), "x0")
    x0, noise = np.ones(2), np.random.default_rng(1).standard_normal((4, 2))
    ab = np.cumprod(1 - betas)
    unclipped = spec.vlb_terms(sched, model, x0, noise, bins=3, convention="beta-1")
    clipped = spec.vlb_terms(sched, model, x0, noise, bins=3, convention="reference-code")
    for t in range(2, 5):
        coef = math.sqrt(ab[t - 2]) * betas[t - 1] / (1 - ab[t - 1])
        bt = (1 - ab[t - 2]) * betas[t - 1] / (1 - ab[t - 1])
        # rel 1e-9: safe_div adds EPS = 1e-12 to the denominators 1 − ᾱ_t of coef_t and β̃_t
        assert unclipped[t - 1] == pytest.approx(2 * 0.5 * coef**2 * 4 / bt, rel=1e-9)
        assert clipped[t - 1] == pytest.approx(0.0, abs=1e-12)
    assert clipped[4] == unclipped[4]  # L_T has no model in it


def test_runtime_table_equals_the_spec_table_and_the_default_is_the_reference_code():
    assert set(rl.VLB_CONVENTIONS) == set(VLB_CONVENTIONS)
    for name, conv in VLB_CONVENTIONS.items():
        twin = rl.VLB_CONVENTIONS[name]
        assert (twin.decoder_variance, twin.clip_x0, twin.reverse_variance) == (
            conv.decoder_variance, conv.clip_x0, conv.reverse_variance)
        assert conv.reverse_variance in spec.ddpm.VARIANCES
    assert set(rl.REVERSE_VARIANCE) == set(runtime.ddpm.VARIANCES) == set(spec.ddpm.VARIANCES)
    assert rl.DEFAULT_VLB_CONVENTION == spec.likelihood.DEFAULT_VLB_CONVENTION == "reference-code"


def test_conventions_are_checked():
    sched = spec.VPSchedule(np.array([0.1]))
    x0, noise = np.zeros(2), np.zeros((1, 2))
    model = PredictionModel(X0Constant(0.0), "x0")
    with pytest.raises(ValueError, match="needs T >= 2, got T = 1"):
        spec.vlb_terms(sched, model, x0, noise, bins=3)  # the default needs β̃_2
    with pytest.raises(ValueError, match="needs T >= 2, got T = 1"):
        spec.vlb_terms(sched, model, x0, noise, bins=3, convention="fixed-large")
    assert spec.vlb_terms(sched, model, x0, noise, bins=3, convention="beta-1").shape == (2,)
    with pytest.raises(ValueError, match="convention must be one of"):
        spec.vlb_terms(sched, model, x0, noise, bins=3, convention="beta_1")
    with pytest.raises(ValueError, match="convention must be one of"):
        rl.vlb_terms(rs.Schedule(torch.tensor([0.1])), lambda x, t: x, torch.zeros(1, 1, 1, 2),
                     torch.zeros(1, 1, 1, 1, 2), 3, convention="beta_1")
