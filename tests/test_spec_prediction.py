"""Laws and closed forms of ε / x0 / v prediction, min-SNR weights, timestep grids, zero terminal
SNR and classifier-free guidance (spec.prediction, spec.schedule, spec.loss, spec.guidance).

Closed forms: for Gaussian data x0 ~ N(μ, s²) the optimal predictors are linear in x_t,
    ε* = √(1 − ᾱ)(x_t − √ᾱμ)/D,  x0* = μ + √ᾱ s²(x_t − √ᾱμ)/D,  v* = √ᾱ ε* − √(1 − ᾱ) x0*,
D = ᾱs² + 1 − ᾱ; driven by x0* or v*, every sampler must carry N(0, I) to N(μ, s²) as it does
with ε* (tests/test_spec_golden.py), including from t = T of a zero-terminal-SNR schedule.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from spec_strategies import TanhModel, sample_pairs, schedules_with_time, tanh_models
from test_spec_golden import (
    COSINE_400,
    MU,
    PF_STEPS,
    VP,
    S,
    assert_is_data_distribution,
)

import spec
from spec.prediction import PredictionModel

N = 4096
PREDICTIONS = st.sampled_from(["eps", "x0", "v"])


class GaussianPredictor:
    """The optimal ε, x0 or v predictor of N(MU, S²) data under t_norm ↦ ᾱ."""

    def __init__(self, alpha_bar_of, prediction):
        self.alpha_bar_of, self.prediction = alpha_bar_of, prediction

    def output(self, x, t_norm):
        ab = self.alpha_bar_of(t_norm)
        d = ab * S**2 + 1 - ab
        eps = math.sqrt(1 - ab) * (x - math.sqrt(ab) * MU) / d
        x0 = MU + math.sqrt(ab) * S**2 * (x - math.sqrt(ab) * MU) / d
        return {"eps": eps, "x0": x0, "v": math.sqrt(ab) * eps - math.sqrt(1 - ab) * x0}[
            self.prediction]


def discrete(sched, prediction):
    ab = sched.alpha_bar
    return GaussianPredictor(lambda t_norm: ab[round(t_norm * sched.T)], prediction)


@pytest.fixture
def rng():
    return np.random.default_rng(20240602)


ZERO_SNR_400 = spec.VPSchedule(spec.rescale_zero_terminal_snr(spec.cosine_betas(400)))

# ---------------------------------------------------------------------------------------------
# Closed forms: samplers driven by the optimal x0- and v-predictors


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_ddpm_with_optimal_x0_or_v_maps_noise_to_the_data(rng, prediction):
    sched = spec.VPSchedule(spec.linear_betas(1000, 1e-4, 0.02))
    x_T, noise = rng.standard_normal(N), rng.standard_normal((1000, N))
    out = spec.ddpm_sample(sched, discrete(sched, prediction), x_T, list(range(1000, -1, -1)),
                           noise)
    assert_is_data_distribution(out, 0.02)  # the fixed-small-variance bias, as for ε*


@pytest.mark.parametrize("prediction", ["x0", "v"])
@pytest.mark.parametrize("spacing", ["trailing", "even"])
def test_ddim_with_optimal_x0_or_v_maps_noise_to_the_data(rng, prediction, spacing):
    grid = spec.timestep_grid(COSINE_400.T, 200, spacing)
    out = spec.ddim_sample_strided(COSINE_400, discrete(COSINE_400, prediction),
                                   rng.standard_normal(N), grid)
    assert_is_data_distribution(out, 0.04)  # stride-2 discretization, as for ε*


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_pf_ode_with_optimal_x0_or_v_maps_noise_to_the_data(rng, prediction):
    model = GaussianPredictor(VP.alpha_bar, prediction)
    out = spec.pf_ode_sample_euler(VP, model, rng.standard_normal(N),
                                   spec.pf_ode_uniform_grid(PF_STEPS))
    assert_is_data_distribution(out, 0.02)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_zero_terminal_snr_v_model_samples_from_pure_noise(rng, sampler):
    # at t = T, x_T = ε exactly: x̂0 = −v̂ = x0*(x_T) = μ (ᾱ_T = 0 makes x0* the data mean)
    model = discrete(ZERO_SNR_400, "v")
    x_T = rng.standard_normal(N)
    if sampler == "ddpm":
        out = spec.ddpm_sample(ZERO_SNR_400, model, x_T, list(range(400, -1, -1)),
                               rng.standard_normal((400, N)))
    else:
        out = spec.ddim_sample_strided(ZERO_SNR_400, model, x_T,
                                       spec.timestep_grid(400, 200, "trailing"))
    assert_is_data_distribution(out, 0.04)
    x0_T, eps_T = spec.denoise(ZERO_SNR_400, model, x_T, 400)
    np.testing.assert_allclose(x0_T, MU, atol=1e-12)
    np.testing.assert_array_equal(eps_T, x_T)


def test_zero_terminal_snr_eps_model_is_a_clear_error(rng):
    model = discrete(ZERO_SNR_400, "eps")
    with pytest.raises(ValueError, match="eps-prediction cannot give x0"):
        spec.ddim_sample_strided(ZERO_SNR_400, model, rng.standard_normal(8),
                                 spec.timestep_grid(400, 10, "trailing"))
    with pytest.raises(ValueError, match="zero terminal SNR"):
        spec.ddpm_step(ZERO_SNR_400, model, 400, np.zeros(8), np.zeros(8))
    # below T the ε-model is fine: a leading grid never visits T
    spec.ddim_sample_strided(ZERO_SNR_400, model, rng.standard_normal(8),
                             spec.timestep_grid(400, 10, "leading"))


def test_optimal_predictors_convert_into_each_other():
    sched = COSINE_400
    x = np.linspace(-3, 3, 13)
    for t in (1, 57, 200, 399):
        t_norm = t / sched.T
        want_x0 = discrete(sched, "x0").output(x, t_norm)
        want_eps = discrete(sched, "eps").output(x, t_norm)
        for prediction in ("eps", "x0", "v"):
            out = discrete(sched, prediction).output(x, t_norm)
            np.testing.assert_allclose(spec.predict_x0(sched, x, out, t, prediction), want_x0,
                                       rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(spec.predict_eps(sched, x, out, t, prediction), want_eps,
                                       rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# Laws of the conversions and the losses


@given(schedules_with_time(min_t=1), sample_pairs(), PREDICTIONS)
def test_the_true_target_converts_back_to_x0_and_eps(sched_t, pair, prediction):
    sched, t = sched_t
    x0, eps = pair
    x_t = spec.q_sample(sched, x0, t, eps)
    out = spec.prediction_target(sched, x0, t, eps, prediction)
    ab = sched.alpha_bar[t]
    # x̂0 of ε divides by √ᾱ, ε̂ of x0 by √(1 − ᾱ): rounding of x_t grows by those factors
    tol_x0 = 1e-9 / math.sqrt(ab) if prediction == "eps" else 1e-9
    tol_eps = 1e-9 / math.sqrt(1 - ab) if prediction == "x0" else 1e-9
    np.testing.assert_allclose(spec.predict_x0(sched, x_t, out, t, prediction), x0, atol=tol_x0)
    np.testing.assert_allclose(spec.predict_eps(sched, x_t, out, t, prediction), eps,
                               atol=tol_eps)


@given(schedules_with_time(min_t=1), sample_pairs(), st.floats(-3, 3), st.floats(0.01, 3))
def test_the_three_losses_coincide_up_to_the_stated_weight(sched_t, pair, shift, scale):
    # a wrong ε̂ = ε·scale + shift implies x̂0 and v̂; their errors obey
    # ‖ε − ε̂‖² = SNR·‖x0 − x̂0‖² = SNR/(SNR + 1)·‖v − v̂‖²
    sched, t = sched_t
    x0, eps = pair
    x_t = spec.q_sample(sched, x0, t, eps)
    eps_hat = eps * scale + shift
    x0_hat = spec.predict_x0(sched, x_t, eps_hat, t, "eps")
    ab = sched.alpha_bar[t]
    v_hat = math.sqrt(ab) * eps_hat - math.sqrt(1 - ab) * x0_hat
    snr = spec.snr(sched, t)
    l_eps = spec.mse(eps_hat, eps)
    np.testing.assert_allclose(snr * spec.mse(x0_hat, x0), l_eps, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(snr / (snr + 1) * spec.mse(v_hat, spec.v_target(sched, x0, t, eps)),
                               l_eps, rtol=1e-6, atol=1e-9)


@given(schedules_with_time(min_t=1), sample_pairs(), tanh_models(), PREDICTIONS)
def test_min_snr_with_infinite_gamma_is_the_plain_eps_loss(sched_t, pair, model, prediction):
    sched, t = sched_t
    x0, eps = pair
    net = PredictionModel(model, prediction)
    weighted = spec.prediction_loss(sched, net, x0, t, eps, min_snr_gamma=math.inf)
    x_t = spec.q_sample(sched, x0, t, eps)
    _, eps_hat = spec.denoise(sched, net, x_t, t)
    np.testing.assert_allclose(weighted, spec.mse(eps_hat, eps), rtol=1e-6, atol=1e-9)
    if prediction == "eps":  # and the ε-model's loss is TorchLean's epsPredLoss
        assert spec.prediction_loss(sched, net, x0, t, eps) == spec.eps_pred_loss(
            sched, model, x0, t, eps)


@given(schedules_with_time(min_t=0), st.floats(0.01, 100), PREDICTIONS)
def test_min_snr_weights_in_closed_form(sched_t, gamma, prediction):
    sched, t = sched_t
    s = spec.snr(sched, t)
    w = spec.min_snr_weight(sched, t, gamma, prediction)
    want = {"eps": min(s, gamma) / s if s > 0 else 1.0, "x0": min(s, gamma),
            "v": min(s, gamma) / (s + 1)}[prediction]
    assert math.isclose(w, want, rel_tol=1e-9, abs_tol=1e-15)
    assert w <= spec.min_snr_weight(sched, t, gamma * 2, prediction)  # monotone in γ


def test_min_snr_applied_as_max_would_differ():
    sched = COSINE_400
    # low noise (SNR > γ) is down-weighted: w_ε = γ/SNR < 1; high noise keeps w_ε = 1
    assert spec.snr(sched, 10) > 5 and spec.min_snr_weight(sched, 10, 5.0, "eps") < 1
    assert spec.snr(sched, 390) < 5 and spec.min_snr_weight(sched, 390, 5.0, "eps") == 1.0
    assert spec.min_snr_weight(sched, 10, 5.0, "x0") == 5.0


# ---------------------------------------------------------------------------------------------
# Timestep grids (Lin et al. 2023, Table 2)


def test_the_grids_of_lin_et_al_table_2():
    assert list(spec.timestep_grid(1000, 10, "trailing")) == [*range(1000, 0, -100), 0]
    assert list(spec.timestep_grid(1000, 10, "leading")) == [*range(901, 0, -100), 0]
    assert list(spec.timestep_grid(1000, 10, "linspace")) == [
        1000, 889, 778, 667, 556, 445, 334, 223, 112, 1, 0]
    # the question of the trackers: a 13-step trailing grid over T = 1000
    assert list(spec.timestep_grid(1000, 13, "trailing")) == [
        1000, 923, 846, 769, 692, 615, 538, 462, 385, 308, 231, 154, 77, 0]
    assert list(spec.timestep_grid(1000, 13, "even")) == list(spec.ddim_timesteps(1000, 13))


@pytest.mark.parametrize("spacing", spec.SPACINGS)
def test_every_grid_has_n_strictly_decreasing_steps_for_every_n(spacing):
    # every n for T ≤ 40 and T = 97; for T = 1000 the n that divide it, that do not, and the
    # extremes (every n there was 1,000 grids of up to 1,001 times: a minute of CPU)
    for T in [*range(1, 41), 97, 1000]:
        ns = range(1, T + 1) if T < 1000 else [*range(1, 41), 97, 100, 125, 250, 333, 500, 999,
                                                 1000]
        for n in ns:
            grid = spec.timestep_grid(T, n, spacing)
            assert grid.dtype == np.int64 and len(grid) == n + 1, (T, n)
            assert grid[-1] == 0 and np.all(np.diff(grid) < 0) and grid[0] <= T, (T, n)
            first = {"even": T, "trailing": T, "leading": 1 + (n - 1) * (T // n),
                     "linspace": T if n > 1 else 1}[spacing]
            assert grid[0] == first, (T, n)
            if spacing in ("leading", "linspace"):
                assert grid[n - 1] == 1, (T, n)  # the last model time, as the paper states


def test_trailing_rounds_ties_to_even_where_even_rounds_up():
    assert list(spec.timestep_grid(10, 4, "trailing")) == [10, 8, 5, 2, 0]  # 7.5 → 8, 2.5 → 2
    assert list(spec.timestep_grid(10, 4, "even")) == [10, 8, 5, 3, 0]


# ---------------------------------------------------------------------------------------------
# Zero terminal SNR (Lin et al. 2023, Algorithm 1)


@given(st.integers(2, 300), st.sampled_from(["linear", "cosine"]))
def test_zero_terminal_snr_rescaling(T, kind):
    betas = spec.linear_betas(T, 1e-4, 0.02) if kind == "linear" else spec.cosine_betas(T)
    rescaled = spec.rescale_zero_terminal_snr(betas)
    sched = spec.VPSchedule(rescaled)
    assert spec.snr(sched, T) == 0.0 and sched.alpha_bar[T] == 0.0 and rescaled[-1] == 1.0
    assert np.all((rescaled > 0) & (rescaled <= 1))
    old = spec.VPSchedule(betas)
    assert math.isclose(math.sqrt(sched.alpha_bar[1]), math.sqrt(old.alpha_bar[1]),
                        rel_tol=1e-15)
    # √ᾱ is shifted and scaled: an affine map of the old √ᾱ_t, t = 1..T. (1e-7: ᾱ' is rebuilt
    # here from the rounded betas as a product of T factors 1 − β', each exact only to 1e-16
    # absolute, which near t = T, where ᾱ' falls to 0, is a large relative error.)
    s_old, s_new = np.sqrt(old.alpha_bar[1:]), np.sqrt(sched.alpha_bar[1:])
    slope = s_old[0] / (s_old[0] - s_old[-1])
    np.testing.assert_allclose(s_new, slope * (s_old - s_old[-1]), rtol=1e-7, atol=1e-12)


def _algorithm_1_alpha_bar(betas):
    """Lin et al. 2023, Algorithm 1, step by step: ᾱ' = s'² with s' = s_1·(s − s_T)/(s_1 − s_T)."""
    s = np.sqrt(np.cumprod(1 - betas))
    return (s[0] * (s - s[-1]) / (s[0] - s[-1])) ** 2


def test_zero_terminal_snr_of_ddpm_linear_is_algorithm_1():
    # ᾱ'_999 = 4.2e-9: dividing by ᾱ'_{t−1} + EPS (the old safe_div) moved β'_998 by 2e-5 and
    # ᾱ'_999 by 1.4e-4 relative; the exact division leaves only the rounding of 999 products
    betas = spec.linear_betas(1000, 1e-4, 0.02)
    want = _algorithm_1_alpha_bar(betas)
    got = spec.VPSchedule(spec.rescale_zero_terminal_snr(betas)).alpha_bar[1:]
    assert want[-2] < 5e-9 and got[-1] == 0.0
    np.testing.assert_allclose(got[:-1], want[:-1], rtol=1e-12, atol=0)


def test_zero_terminal_snr_with_trailing_zero_betas_ends_in_betas_of_one():
    # s = (√0.9, √0.72, √0.72, √0.72): ᾱ' = (0.9, 0, 0, 0), so β' = (0.1, 1, 1, 1), and the
    # ratios ᾱ'_t/ᾱ'_{t−1} = 0/0 of t = 3, 4 are the explicit zero case, not a NaN
    got = spec.rescale_zero_terminal_snr(np.array([0.1, 0.2, 0.0, 0.0]))
    np.testing.assert_allclose(got, [0.1, 1.0, 1.0, 1.0], rtol=1e-15, atol=0)


def test_ddim_sigma_eta_under_zero_terminal_snr_is_eq_16_exactly():
    # an x0-model that outputs 0 at x_t = 0 gives x̂0 = ε̂ = 0, so x_prev = σ_η·z = σ_η for z = 1;
    # σ_η = η·√((1 − ᾱ_prev)/(1 − ᾱ_t)·(1 − ᾱ_t/ᾱ_prev)) (DDIM Eq. 16). With ᾱ_prev down to
    # 4.2e-9 the old safe_div denominators moved it by 1e-5 relative (999 → 998, 998 → 997); the
    # exact divisions by rounding only.
    sched = spec.VPSchedule(spec.rescale_zero_terminal_snr(spec.linear_betas(1000, 1e-4, 0.02)))
    zero = PredictionModel(TanhModel(0.0, 0.0, 0.0), "x0")
    assert np.all(zero.output(np.zeros(1), 0.5) == 0.0)
    for t, t_prev, eta in [(1000, 999, 1.0), (999, 998, 1.0), (998, 997, 0.5), (2, 1, 1.0)]:
        ab, ab_prev = sched.alpha_bar[t], sched.alpha_bar[t_prev]
        want = eta * math.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
        got = spec.ddim_step_between(sched, zero, t, t_prev, np.zeros(1), eta, np.ones(1))
        assert math.isclose(float(got[0]), want, rel_tol=1e-14), (t, t_prev, float(got[0]), want)


def test_zero_terminal_snr_errors():
    with pytest.raises(ValueError, match="T >= 2"):
        spec.rescale_zero_terminal_snr(np.array([0.1]))
    with pytest.raises(ValueError, match="alpha_bar_1 > alpha_bar_T"):
        spec.rescale_zero_terminal_snr(np.array([0.1, 0.0]))


# ---------------------------------------------------------------------------------------------
# Classifier-free guidance (Ho & Salimans 2022)


def _cond_net(seed=0):
    cfg = spec.CondFiLMNetConfig(1, 3, 8, 1, 8, 2)
    return spec.cond_film_net(cfg, spec.init_cond_film_params(cfg, seed))


@given(st.floats(-2, 6), PREDICTIONS, st.integers(0, 2))
def test_guidance_commutes_with_the_conversions(scale, prediction, label):
    net = _cond_net()
    sched = spec.VPSchedule(spec.linear_betas(10, 0.01, 0.2))
    x = np.random.default_rng(label).standard_normal((1, 4, 4))
    t = 6
    guided = spec.GuidedModel(net, label, scale, prediction)
    x0_g, eps_g = spec.denoise(sched, guided, x, t)
    conv = [spec.denoise(sched, spec.GuidedModel(net, y, 1.0, prediction), x, t)
            for y in (3, label)]  # the null label, then the class
    np.testing.assert_allclose(x0_g, spec.guided_output(conv[0][0], conv[1][0], scale),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(eps_g, spec.guided_output(conv[0][1], conv[1][1], scale),
                               rtol=1e-9, atol=1e-9)


def test_guidance_scale_one_is_the_conditional_net_and_zero_the_unconditional():
    net = _cond_net(1)
    x = np.random.default_rng(3).standard_normal((2, 1, 4, 4))
    labels = np.array([0, 2])
    np.testing.assert_array_equal(spec.GuidedModel(net, labels, 1.0).output(x, 0.4),
                                  net.eps(x, 0.4, labels))
    np.testing.assert_allclose(spec.GuidedModel(net, labels, 0.0).output(x, 0.4),
                               net.eps(x, 0.4, np.array([3, 3])), rtol=1e-12, atol=1e-12)


def test_cond_net_with_a_zero_label_embedding_is_the_film_net():
    cfg = spec.CondFiLMNetConfig(1, 3, 8, 2, 8, 2)
    params = spec.init_cond_film_params(cfg, 5)
    params["label_emb.weight"] = np.zeros_like(params["label_emb.weight"])
    film = {k: v for k, v in params.items() if k != "label_emb.weight"}
    x = np.random.default_rng(0).standard_normal((1, 4, 4))
    np.testing.assert_array_equal(spec.cond_film_net(cfg, params).eps(x, 0.3, 1),
                                  spec.eps_film_net(cfg.film(), film).eps(x, 0.3))
    with pytest.raises(ValueError, match="labels must lie in 0..3"):
        spec.cond_film_net(cfg, params).eps(x, 0.3, 4)


def test_tanh_model_is_an_eps_model():
    assert spec.denoise(COSINE_400, TanhModel(0.1, 0.2, 0.3), np.zeros(3), 5)[1].shape == (3,)
