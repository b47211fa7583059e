"""spec.flow (rectified flow; Esser et al. 2024, "SD3") against closed forms: the interpolation
and its velocity, the conversions, SD3's shift and logit-normal density, the grid, the exact VP ↔
flow map, and flow Euler = DDIM (η = 0) on a VP model. Plus ancestral Euler (spec.edm): its noise
split and its marginals on Gaussian data."""

import math

import numpy as np
import pytest

import spec
from conformance import order
from conformance.gaussian import GaussianData, GaussianDenoiserNumpy

RNG = np.random.default_rng(11)
X0, EPS_ = RNG.standard_normal((2, 3, 4)), RNG.standard_normal((2, 3, 4))


def test_interpolation_endpoints_and_velocity():
    np.testing.assert_array_equal(spec.flow_interpolation(X0, 0.0, EPS_), X0)
    np.testing.assert_array_equal(spec.flow_interpolation(X0, 1.0, EPS_), EPS_)
    # the path is a straight line with velocity ε − x0: x_b − x_a = (b − a)·u
    a, b = 0.2, 0.7
    np.testing.assert_allclose(spec.flow_interpolation(X0, b, EPS_)
                               - spec.flow_interpolation(X0, a, EPS_),
                               (b - a) * spec.flow_velocity_target(X0, EPS_), atol=1e-15)


@pytest.mark.parametrize("sigma", [0.0, 0.3, 1.0])
def test_velocity_conversions_invert_the_interpolation(sigma):
    x = spec.flow_interpolation(X0, sigma, EPS_)
    v = spec.flow_velocity_target(X0, EPS_)
    np.testing.assert_allclose(spec.x0_from_velocity(x, sigma, v), X0, atol=1e-15)
    np.testing.assert_allclose(spec.eps_from_velocity(x, sigma, v), EPS_, atol=1e-15)


def test_time_shift_properties():
    s = np.linspace(0, 1, 101)
    np.testing.assert_array_equal(spec.time_shift(s, 1.0), s)
    for shift in (0.3, 3.0, 10.0):
        out = spec.time_shift(s, shift)
        assert out[0] == 0.0 and out[-1] == pytest.approx(1.0, abs=1e-15)  # fixed, up to rounding
        assert np.all(np.diff(out) > 0)
        assert np.all(out[1:-1] > s[1:-1]) if shift > 1 else np.all(out[1:-1] < s[1:-1])
        # a one-parameter group: shifting by a then b is shifting by a·b; 1/s undoes s
        np.testing.assert_allclose(spec.time_shift(spec.time_shift(s, shift), 2.0),
                                   spec.time_shift(s, 2.0 * shift), atol=1e-15)
        np.testing.assert_allclose(spec.time_shift(out, 1 / shift), s, atol=1e-15)
    assert spec.time_shift(0.5, 3.0) == 0.75  # 3·½/(1 + 2·½)
    assert spec.resolution_shift(1024**2, 256**2) == 4.0


def test_logit_normal_draws_have_the_density_of_eq_19():
    """σ = logistic(m + s·z) with z ~ N(0, 1): change of variables gives
    π_ln(σ(z))·dσ/dz = φ(z), with dσ/dz = s·σ·(1 − σ), exactly."""
    z = np.linspace(-4, 4, 81)
    for m, s in ((0.0, 1.0), (0.5, 0.6), (-1.0, 2.0)):
        sigma = spec.logit_normal_sigma(z, m, s)
        assert np.all(np.diff(sigma) > 0) and 0 < sigma.min() and sigma.max() < 1
        phi = np.exp(-(z**2) / 2) / math.sqrt(2 * math.pi)
        np.testing.assert_allclose(spec.logit_normal_density(sigma, m, s) * s * sigma * (1 - sigma),
                                   phi, rtol=1e-12)
        assert spec.logit_normal_sigma(0.0, m, s) == pytest.approx(1 / (1 + math.exp(-m)),
                                                                   rel=1e-15)
    u = np.linspace(0, 1, 11)
    np.testing.assert_array_equal(spec.uniform_sigma(u), u)
    with pytest.raises(ValueError):
        spec.uniform_sigma(1.5)


def test_flow_sigmas_grid():
    np.testing.assert_allclose(spec.flow_sigmas(4), [1.0, 0.75, 0.5, 0.25, 0.0], atol=0)
    g = spec.flow_sigmas(10, shift=3.0)
    assert g[0] == 1.0 and g[-1] == 0.0 and np.all(np.diff(g) < 0)
    np.testing.assert_allclose(g, spec.time_shift(1 - np.arange(11) / 10, 3.0), atol=1e-15)
    # terminal stretch: σ = [1, ½, 0], scale (1 − 0.2)/(1 − ½) = 1.6: σ_1 = 1 − ½·1.6 = 0.2
    np.testing.assert_allclose(spec.flow_sigmas(2, 1.0, 0.2), [1.0, 0.2, 0.0], atol=1e-15)
    g = spec.flow_sigmas(12, 3.0, 0.1)
    assert g[0] == 1.0 and g[-2] == pytest.approx(0.1, abs=1e-15) and g[-1] == 0.0
    assert np.all(np.diff(g) < 0)
    # one step: nothing strictly between 1 and 0 to stretch (or shift), the grid is [1, 0]
    for shift in (1.0, 3.0):
        np.testing.assert_array_equal(spec.flow_sigmas(1, shift, 0.1), [1.0, 0.0])
    # n = T: the nonzero σ's are time_shift(t/T), t = T..1, shifted once (rebuilt: the same grid)
    np.testing.assert_allclose(spec.flow_sigmas(20, 3.0)[:-1],
                               spec.time_shift(np.arange(20, 0, -1) / 20, 3.0), atol=1e-15)
    with pytest.raises(ValueError):
        spec.flow_sigmas(2, 1.0, 1.0)


@pytest.mark.parametrize("t", [0, 1, 7, 19, 20])
def test_vp_to_flow_is_exact(t):
    """q_sample(x0, t, ε) mapped by vp_to_flow is the flow state of the same x0 and ε at the
    mapped σ; flow_to_vp maps it back; EDM's σ of the state is σ/(1 − σ)."""
    sched = spec.VPSchedule(spec.cosine_betas(20))
    ab = sched.alpha_bar[t]
    x_sigma, sigma = spec.vp_to_flow(ab, spec.q_sample(sched, X0, t, EPS_))
    np.testing.assert_allclose(x_sigma, spec.flow_interpolation(X0, sigma, EPS_), atol=1e-14)
    ab_back, x_t = spec.flow_to_vp(sigma, x_sigma)
    assert ab_back == pytest.approx(ab, rel=1e-13, abs=1e-15)
    np.testing.assert_allclose(x_t, spec.q_sample(sched, X0, t, EPS_), atol=1e-14)
    if 0 < ab < 1:
        assert sigma / (1 - sigma) == pytest.approx(math.sqrt((1 - ab) / ab), rel=1e-12)


def test_velocity_of_the_gaussian_vp_denoiser_is_the_exact_flow_velocity():
    """velocity_from_vp of the exact ε-predictor of N(μ, s²) data equals E[ε − x0 | x_σ]."""
    sched = spec.VPSchedule(spec.linear_betas(30, 1e-4, 0.1))
    model = order._SpecOracle(order._table_lookup(sched.alpha_bar))
    x = RNG.standard_normal((1, 2, 3))
    for t in (1, 9, 30):
        sigma = spec.vp_to_flow(sched.alpha_bar[t], x)[1]
        np.testing.assert_allclose(spec.velocity_from_vp(sched, model, x, t),
                                   order.velocity_star(x, sigma), rtol=1e-9, atol=1e-9)


class _TableVelocity:
    """A VP model as a velocity model on a grid of table times: σ → the t it came from."""

    def __init__(self, sched, model, times):
        self.sched, self.model = sched, model
        self.time_of = {float(spec.vp_to_flow(sched.alpha_bar[t], np.zeros(1))[1]): t
                        for t in times}

    def velocity(self, x, sigma):
        return spec.velocity_from_vp(self.sched, self.model, x, self.time_of[float(sigma)])


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_flow_euler_is_ddim_on_a_vp_model(prediction):
    """One flow-Euler step σ → σ' with v̂ = ε̂ − x̂_0 gives (1 − σ)·x̂_0 + σ·ε̂ + (σ' − σ)·(ε̂ − x̂_0)
    = (1 − σ')·x̂_0 + σ'·ε̂, which is DDIM's √ᾱ'·x̂_0 + √(1 − ᾱ')·ε̂ divided by √ᾱ' + √(1 − ᾱ'):
    the two samplers agree exactly on every grid (up to safe_div's EPS in x̂_0 of an ε-model)."""
    sched = spec.VPSchedule(spec.cosine_betas(40))
    betas = sched.beta[1:]
    data = GaussianData(np.full((2, 1, 1), 0.2), np.full((2, 1, 1), 0.3),
                              ("discrete", betas.tolist()), prediction)
    model = GaussianDenoiserNumpy(data)
    grid = [37, 30, 22, 15, 9, 4, 1, 0]
    x_T = RNG.standard_normal((2, 3, 3))
    ddim = spec.ddim_sample_strided(sched, model, x_T, grid)
    x_sigma, _ = spec.vp_to_flow(sched.alpha_bar[grid[0]], x_T)
    sigmas = [spec.vp_to_flow(sched.alpha_bar[t], x_T)[1] for t in grid]
    flow = spec.flow_euler_sample(spec.RectifiedFlow(), _TableVelocity(sched, model, grid),
                                  x_sigma, sigmas)
    np.testing.assert_allclose(flow, ddim, rtol=1e-9, atol=1e-9)  # σ_M = 0: x_σ = x_0 = x_t


# --- ancestral Euler (spec.edm) ----------------------------------------------------------------

@pytest.mark.parametrize(("sigma", "sigma_next"), [(80.0, 40.0), (2.0, 1.9), (1.0, 0.01),
                                                   (0.5, 0.0)])
def test_ancestral_sigmas_split_the_next_noise_level(sigma, sigma_next):
    down, up = spec.edm_ancestral_sigmas(sigma, sigma_next)
    assert down**2 + up**2 == pytest.approx(sigma_next**2, rel=1e-14, abs=1e-300)
    assert 0 <= up <= sigma_next and 0 <= down <= sigma_next
    # the posterior's variance in EDM scale: σ_up² = σ_next²·(σ² − σ_next²)/σ²
    assert up**2 == pytest.approx(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2, rel=1e-13)


def test_ancestral_euler_marginals_on_gaussian_data():
    """With the exact denoiser of N(μ, s²) data, D(x̃; σ) = μ + s²·(x̃ − μ)/(s² + σ²), every
    ancestral step is linear-Gaussian: x̃' − μ = a·(x̃ − μ) + σ_up·z with
    a = 1 + (σ_down − σ)·σ/(s² + σ²). So the mean and variance after the chain follow
    m' = μ + a·(m − μ), v' = a²·v + σ_up² from x̃ ~ N(μ, s² + σ_0²), in closed form; many samples
    must match them within 5 standard errors (n = 20000: the mean's is √(v/n), the variance's
    v·√(2/(n − 1))). As the grid is refined the closed form approaches N(μ, s²) at first order
    (the ODE part is Euler's): doubling N halves the variance's error."""
    vp = spec.VPLinearSchedule(order.BETA0, order.BETA1)
    model = order._SpecOracle(vp.alpha_bar)
    mu, s2 = order.MU, order.S**2

    def closed_form(sigmas):
        m, v = mu, s2 + sigmas[0] ** 2
        for sig, nxt in zip(sigmas[:-1], sigmas[1:], strict=True):
            down, up = spec.edm_ancestral_sigmas(sig, nxt)
            a = 1 + (down - sig) * sig / (s2 + sig**2)
            m, v = mu + a * (m - mu), a**2 * v + up**2
        return m, v

    sigmas = spec.edm_sigmas(12, 0.02, 20.0).tolist()
    n = 20000
    rng = np.random.default_rng(12)
    x_T = mu + math.sqrt(s2 + sigmas[0] ** 2) * rng.standard_normal((n, 1, 1))
    noise = rng.standard_normal((len(sigmas) - 1, n, 1, 1))
    out = spec.edm_euler_ancestral_sample(vp, model, x_T, sigmas, noise)
    m, v = closed_form(sigmas)
    assert abs(out.mean() - m) < 5 * math.sqrt(v / n)
    assert abs(out.var(ddof=1) - v) < 5 * v * math.sqrt(2 / (n - 1))
    (m1, v1), (m2, v2) = (closed_form(spec.edm_sigmas(k, 1e-3, 20.0).tolist())
                          for k in (1000, 2000))
    assert m1 == pytest.approx(mu, abs=1e-12) and m2 == pytest.approx(mu, abs=1e-12)
    assert 1.6 < abs(v1 - s2) / abs(v2 - s2) < 2.5 and abs(v2 - s2) < 1e-2 * s2
