"""The spec's laws as hypothesis properties: the Python counterparts of TorchLean's theorems.

Every property is stated for all inputs of its strategy (tests/spec_strategies.py). Exact
laws use ==; laws that hold only up to rounding say why next to their tolerance.
"""

import itertools
import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from spec_strategies import (
    OracleModel,
    betas_vectors,
    bin_counts,
    binned_samples,
    conv_configs,
    image_shapes,
    sample_pairs,
    samples,
    schedules,
    schedules_with_time,
    seeds,
    shapes,
    tanh_models,
)

import spec

# ---------------------------------------------------------------------------------------------
# Schedule


@given(betas_vectors())
def test_alpha_bar_starts_at_one_and_is_non_increasing_in_0_1(betas):
    sched = spec.VPSchedule(betas)
    ab = sched.alpha_bar
    assert ab.shape == (sched.T + 1,)
    assert ab[0] == 1.0 and sched.alpha_bar[0] == 1.0
    assert np.all(np.diff(ab) <= 0)
    # (0, 1]: every factor 1 − β ≥ 0.001, so the product of ≤ 30 of them stays ≥ 1e-90 > 0
    assert np.all((ab > 0) & (ab <= 1))
    for t in range(sched.T + 1):
        assert sched.alpha_bar[t] == ab[t]


@given(betas_vectors())
def test_alpha_bar_follows_its_recursion(betas):
    sched = spec.VPSchedule(betas)
    for t in range(1, sched.T + 1):
        assert sched.alpha_bar[t] == sched.alpha_bar[t - 1] * (1 - betas[t - 1])
        assert sched.alpha[t] == 1 - sched.beta[t]
    assert sched.beta[0] == 0.0 and sched.alpha[0] == 1.0 and sched.alpha_bar[0] == 1.0


@given(
    st.integers(1, 2000),
    st.floats(0.0, 0.5, width=64),
    st.floats(0.0, 0.999, width=64),
)
def test_linear_betas_hit_both_endpoints_exactly(T, beta_start, beta_end):
    betas = spec.linear_betas(T, beta_start, beta_end)
    assert betas.shape == (T,) and betas.dtype == np.float64
    assert betas[-1] == beta_end
    if T > 1:
        assert betas[0] == beta_start
    else:
        assert list(betas) == [beta_end]


@given(st.integers(1, 1000))
def test_cosine_betas_are_valid_betas(T):
    betas = spec.cosine_betas(T)
    spec.VPSchedule(betas)
    assert np.all(betas <= 0.999)


@given(st.integers(0, 1000).flatmap(lambda T: st.tuples(st.just(T), st.integers(0, T))))
def test_time_of_index_is_t_over_T(T_t):
    T, t = T_t
    assert spec.time_of_index(t, T) == (t / T if T else 0.0)
    assert 0.0 <= spec.time_of_index(t, T) <= 1.0


# ---------------------------------------------------------------------------------------------
# Forward process and loss


def inversion_tolerance(alpha_bar, x0, eps):
    """(rtol, atol) for recovering x0 from x_t = √ᾱ·x0 + √(1 − ᾱ)·ε: dividing by √ᾱ + EPS costs
    EPS/√ᾱ·|x0|, and the rounding of x_t (~1e-16·(|x0| + |ε|)) is amplified by 1/√ᾱ. Absolute,
    because results built from x̂0 (DDIM) can cancel to values far smaller than x0."""
    root = math.sqrt(alpha_bar)
    scale = float(np.max(np.abs(x0), initial=0) + np.max(np.abs(eps), initial=0)) + 1
    return 1e-12, (2 * spec.EPS + 4e-16) * scale / root


@given(schedules(), sample_pairs())
def test_q_sample_at_t0_is_the_identity(sched, pair):
    x0, eps = pair
    assert np.array_equal(spec.q_sample(sched, x0, 0, eps), x0)


@given(schedules_with_time(min_t=0), sample_pairs())
def test_x0_pred_inverts_q_sample_under_the_oracle(sched_t, pair):
    sched, t = sched_t
    x0, eps = pair
    x_t = spec.q_sample(sched, x0, t, eps)
    x0_hat = spec.x0_pred(sched, OracleModel(eps), x_t, t)
    rtol, atol = inversion_tolerance(sched.alpha_bar[t], x0, eps)
    np.testing.assert_allclose(x0_hat, x0, rtol=rtol, atol=atol)


@given(schedules_with_time(min_t=1), sample_pairs())
def test_posterior_mean_of_a_noiseless_x_t_is_the_scaled_x0(sched_t, pair):
    # For x_t = √ᾱ_t·x0: μ̃ = (√ᾱ_{t−1}·β_t + α_t·√ᾱ_{t−1}·(1 − ᾱ_{t−1}))/(1 − ᾱ_t)·x0
    # = √ᾱ_{t−1}·x0 (DDPM Eq. 7). EPS in the denominators costs a relative EPS/(1 − ᾱ_t) ≤ 1e-8.
    sched, t = sched_t
    x0, _ = pair
    x_t = math.sqrt(sched.alpha_bar[t]) * x0
    mean, var = spec.q_posterior_mean_variance(sched, x0, x_t, t)
    np.testing.assert_allclose(mean, math.sqrt(sched.alpha_bar[t - 1]) * x0, rtol=1e-7, atol=1e-12)
    assert var >= 0
    if t == 1:
        assert var == 0.0


@given(schedules_with_time(min_t=0), sample_pairs(image_shapes()), conv_configs(), seeds())
def test_eps_pred_loss_is_mse_of_the_body_on_the_noised_sample(sched_t, pair, cfg, seed):
    # The residual net's `body` takes the time-augmented input that noised_sample_from_eps builds
    sched, t = sched_t
    x0, eps = pair
    cfg = spec.EpsConvNetConfig(x0.shape[-3], cfg.hidden_channels, cfg.residual_blocks)
    net = spec.eps_residual_conv_net(spec.init_params(cfg, seed))
    model_input, target = spec.noised_sample_from_eps(sched, x0, t, eps)
    assert model_input[..., -1, :, :].min() == model_input[..., -1, :, :].max() == t / sched.T
    assert spec.eps_pred_loss(sched, net, x0, t, eps) == spec.mse(net.body(model_input), target)


@given(shapes().flatmap(samples))
def test_diffusion_range_round_trips(x01):
    np.testing.assert_allclose(
        spec.from_diffusion_range(spec.to_diffusion_range(x01)), x01, atol=1e-15
    )


# ---------------------------------------------------------------------------------------------
# DDPM and DDIM


@given(schedules(), tanh_models(), shapes().flatmap(samples))
def test_ddim_step_is_ddim_step_between_adjacent_times(sched, model, x):
    for t in range(1, sched.T + 1):
        assert np.array_equal(
            spec.ddim_step(sched, model, t, x), spec.ddim_step_between(sched, model, t, t - 1, x)
        )


@given(schedules(max_T=15), tanh_models(), sample_pairs())
def test_torchlean_step_index_aliases_run_at_t_equals_k_plus_1(sched, model, pair):
    x, z = pair
    for k in range(sched.T):
        assert np.array_equal(spec.ddpmStep(sched, model, k, x, z),
                              spec.ddpm_step(sched, model, k + 1, x, z))
        assert np.array_equal(spec.ddimStep(sched, model, k, x), spec.ddim_step(sched, model, k + 1, x))
        assert np.array_equal(spec.ddimStepSystem(sched, model, k).step(x),
                              spec.ddim_step_system(sched, model, k + 1).step(x))


@given(schedules(max_T=15), tanh_models(), shapes().flatmap(samples))
def test_ddim_sample_iterates_the_step_systems_from_T_down_to_1(sched, model, x_T):
    x = x_T
    for t in range(sched.T, 0, -1):
        x = spec.iterate(spec.ddim_step_system(sched, model, t), 1, x)
    assert np.array_equal(spec.ddim_sample(sched, model, x_T), x)


@given(schedules(max_T=15), tanh_models(), shapes().flatmap(samples))
def test_ddim_sample_strided_on_the_full_grid_is_ddim_sample(sched, model, x_T):
    full = spec.ddim_timesteps(sched.T, sched.T)
    assert list(full) == list(range(sched.T, -1, -1))
    assert np.array_equal(
        spec.ddim_sample_strided(sched, model, x_T, full), spec.ddim_sample(sched, model, x_T)
    )


@given(schedules_with_time(min_t=1, max_T=10), tanh_models(), sample_pairs())
def test_ddim_with_eta_one_has_the_ddpm_posterior_variance(sched_t, model, pair):
    sched, t = sched_t
    x_t, z = pair
    with_noise = spec.ddim_step_between(sched, model, t, t - 1, x_t, eta=1.0, z=np.ones_like(x_t))
    without = spec.ddim_step_between(sched, model, t, t - 1, x_t, eta=1.0, z=np.zeros_like(x_t))
    sigma = with_noise - without  # = σ·1 elementwise
    _, beta_tilde = spec.q_posterior_mean_variance(sched, x_t, x_t, t)
    # σ² = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·(1 − ᾱ_t/ᾱ_{t−1}) = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t = β̃_t.
    # 1 − ᾱ_t/(ᾱ_{t−1} + EPS) is off by a relative ~EPS/(ᾱ_{t−1}·β_t) (≤ 1e-5 for these
    # schedules), plus rounding of 1 − α_t (1e-16/β_t) and of σ = (σ·1 + rest) − rest.
    ab_prev, beta = sched.alpha_bar[t - 1], sched.beta[t]
    rtol = 2 * spec.EPS / (ab_prev * beta) + 1e-15 / beta + 1e-12
    np.testing.assert_allclose(
        sigma**2, beta_tilde, rtol=rtol, atol=1e-13 * (1 + np.abs(without).max())
    )


@given(schedules_with_time(min_t=1), tanh_models(), sample_pairs())
def test_ddim_eta_zero_ignores_z_and_ddim_prev_is_its_update(sched_t, model, pair):
    sched, t = sched_t
    x_t, z = pair
    for t_prev in range(t):
        plain = spec.ddim_step_between(sched, model, t, t_prev, x_t)
        assert np.array_equal(
            spec.ddim_step_between(sched, model, t, t_prev, x_t, eta=0.0, z=z), plain
        )
        eps_hat = model.eps(x_t, t / sched.T)
        prev = spec.ddim_prev(sched.alpha_bar[t_prev], sched.alpha_bar[t], x_t, eps_hat, clip=False)
        assert np.array_equal(prev, plain)


@given(schedules_with_time(min_t=1), sample_pairs())
def test_ddim_with_the_oracle_jumps_to_the_noised_sample_at_t_prev(sched_t, pair):
    # deterministic DDIM keeps ε:
    # x_{t_prev} = √ᾱ_prev·x0 + √(1 − ᾱ_prev)·ε = q_sample(x0, t_prev, ε)
    sched, t = sched_t
    x0, eps = pair
    x_t = spec.q_sample(sched, x0, t, eps)
    for t_prev in range(t):
        got = spec.ddim_step_between(sched, OracleModel(eps), t, t_prev, x_t)
        rtol, atol = inversion_tolerance(sched.alpha_bar[t], x0, eps)
        np.testing.assert_allclose(got, spec.q_sample(sched, x0, t_prev, eps), rtol=rtol, atol=atol)


@given(schedules(), tanh_models(), shapes().flatmap(samples), seeds())
def test_ddpm_sample_uses_noise_t_minus_1_in_the_step_at_t(sched, model, x_T, seed):
    noise = np.random.default_rng(seed).standard_normal((sched.T, *x_T.shape))
    x = x_T
    for t in range(sched.T, 0, -1):
        x = spec.ddpm_step(sched, model, t, x, noise[t - 1])
    every = list(range(sched.T, -1, -1))
    assert np.array_equal(spec.ddpm_sample(sched, model, x_T, every, noise), x)
    assert np.array_equal(spec.ddpmSample(sched, model, x_T, noise), x)


@given(schedules(), tanh_models(), shapes().flatmap(samples))
def test_last_ddpm_step_is_noiseless(sched, model, x):
    # β̃_1 = 0, so the step at t = 1 ignores z
    a = spec.ddpm_step(sched, model, 1, x, np.zeros_like(x))
    b = spec.ddpm_step(sched, model, 1, x, np.full_like(x, 7.0))
    assert np.array_equal(a, b)


@given(st.integers(1, 1000).flatmap(lambda T: st.tuples(st.just(T), st.integers(1, T))))
def test_ddim_timesteps_run_strictly_down_from_T_to_0(T_n):
    T, n = T_n
    ts = spec.ddim_timesteps(T, n)
    assert len(ts) == n + 1 and ts[0] == T and ts[-1] == 0
    assert np.all(np.diff(ts) < 0)
    for i, t in enumerate(ts):  # round-half-up of T·(n − i)/n
        assert t == math.floor(T * (n - i) / n + 0.5)


# ---------------------------------------------------------------------------------------------
# Dynamics


def affine_system(a: float, b: float) -> spec.DynamicalSystem:
    return spec.DynamicalSystem(lambda x: a * x + b)


@given(st.integers(0, 6), st.integers(0, 6), tanh_models(), shapes().flatmap(samples))
def test_iterate_m_plus_n_is_iterate_m_after_iterate_n(m, n, model, x):
    sys = spec.DynamicalSystem(lambda y: model.eps(y, 0.5) + 0.5 * y)
    assert np.array_equal(
        spec.iterate(sys, m + n, x), spec.iterate(sys, m, spec.iterate(sys, n, x))
    )
    traj = spec.trajectory(sys, x, m + n)
    assert len(traj) == m + n + 1 and np.array_equal(traj[-1], spec.iterate(sys, m + n, x))


@given(st.integers(0, 10), st.floats(-2, 2, width=64), shapes().flatmap(samples))
def test_a_fixed_point_stays_fixed(n, a, x):
    # x ↦ a·(x − p) + p fixes p exactly
    sys = spec.DynamicalSystem(lambda y: a * (y - x) + x)
    assert spec.is_fixed_point(sys, x)
    assert np.array_equal(spec.iterate(sys, n, x), x)
    assert all(np.array_equal(s, x) for s in spec.trajectory(sys, x, n))


@given(st.integers(0, 8), shapes().flatmap(lambda s: st.tuples(samples(s), samples(s))))
def test_frozen_driven_system_is_the_driven_system_fed_a_constant_input(n, xu):
    x, u = xu
    driven = spec.DrivenSystem(lambda y, v: np.tanh(y) + v)
    constant = [u] * n
    frozen = driven.freeze(u)
    assert np.array_equal(
        spec.iterate(frozen, n, x), spec.iterate_with_input(driven, constant, n, x)
    )
    for a, b in zip(
        spec.trajectory(frozen, x, n), spec.driven_trajectory(driven, constant, x, n), strict=True
    ):
        assert np.array_equal(a, b)


@given(st.integers(1, 6), tanh_models(), shapes().flatmap(samples))
def test_pf_ode_sampler_iterates_its_euler_systems_from_t_equals_1(steps, model, x1):
    sch = spec.VPLinearSchedule()
    grid = spec.pf_ode_uniform_grid(steps)
    assert grid == [1 - i * (1 / steps) for i in range(steps)] + [0.0]
    x = x1
    for i in range(steps):
        x = spec.pf_ode_euler_system(sch, model, grid[i], grid[i + 1] - grid[i]).step(x)
    assert np.array_equal(spec.pf_ode_sample_euler(sch, model, x1, grid), x)
    assert np.array_equal(spec.pfOdeSampleEuler(sch, model, steps, x1), x)


# ---------------------------------------------------------------------------------------------
# Model


def conv2d_loop(x, weight, bias):
    """The definition: y[o, r, c] = b[o] + Σ_{i,a,b} w[o, i, a, b]·x[i, r + a − 1, c + b − 1]."""
    c_in, h, w = x.shape
    out = np.zeros((weight.shape[0], h, w))
    for o, r, c in itertools.product(range(weight.shape[0]), range(h), range(w)):
        total = bias[o]
        for i, a, b in itertools.product(range(c_in), range(3), range(3)):
            rr, cc = r + a - 1, c + b - 1
            if 0 <= rr < h and 0 <= cc < w:
                total += weight[o, i, a, b] * x[i, rr, cc]
        out[o, r, c] = total
    return out


@given(image_shapes(), st.integers(1, 3), seeds())
def test_conv2d_same_agrees_with_the_direct_loop(shape, out_channels, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    weight = rng.standard_normal((out_channels, shape[-3], 3, 3))
    bias = rng.standard_normal(out_channels)
    got = spec.conv2d_same(x, weight, bias)
    batch = x if x.ndim == 4 else x[None]
    want = np.stack([conv2d_loop(xi, weight, bias) for xi in batch])
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-12, atol=1e-12)


@given(image_shapes().flatmap(samples), st.floats(0, 1, width=64))
def test_append_time_channel_appends_a_constant_last_channel(x, t):
    y = spec.append_time_channel(x, t)
    assert y.shape[-3] == x.shape[-3] + 1
    assert np.array_equal(y[..., :-1, :, :], x) and np.all(y[..., -1, :, :] == t)


@given(conv_configs(), seeds(), image_shapes().flatmap(samples))
def test_conv_nets_treat_a_batch_as_its_samples(cfg, seed, x):
    cfg = spec.EpsConvNetConfig(x.shape[-3], cfg.hidden_channels, cfg.residual_blocks)
    params = spec.init_params(cfg, seed)
    for net in (spec.eps_residual_conv_net(params), spec.eps_conv_net(params)):
        batch = x if x.ndim == 4 else x[None]
        out = net.eps(batch, 0.25)
        assert out.shape == batch.shape
        for i in range(len(batch)):
            np.testing.assert_allclose(net.eps(batch[i], 0.25), out[i], rtol=1e-12, atol=1e-12)


@given(seeds())
def test_film_net_runs_and_treats_a_batch_as_its_samples(seed):
    cfg = spec.EpsFiLMNetConfig(
        data_channels=2, hidden_channels=4, residual_blocks=2, embed_dim=6, groups=2
    )
    params = spec.init_film_params(cfg, seed)
    x = np.random.default_rng(seed).standard_normal((2, 2, 3, 3))
    net = spec.eps_film_net(cfg, params)
    out = net.eps(x, 0.7)
    assert out.shape == x.shape and np.all(np.isfinite(out))
    np.testing.assert_allclose(net.eps(x[1], 0.7), out[1], rtol=1e-12, atol=1e-12)


@given(image_shapes().flatmap(samples), st.sampled_from([1, 2]))
def test_group_norm_normalizes_each_group(x, groups):
    c = x.shape[-3]
    if c % groups:
        groups = 1
    y = spec.group_norm(x, np.ones(c), np.zeros(c), groups)
    g = y.reshape(x.shape[:-3] + (groups, -1))
    np.testing.assert_allclose(g.mean(axis=-1), 0.0, atol=1e-12)


@given(st.floats(-50, 50, width=64))
def test_silu_is_x_times_sigmoid(x):
    assert math.isclose(
        spec.silu(np.array([x]))[0], x / (1 + math.exp(-x)), rel_tol=1e-13, abs_tol=1e-300
    )


@given(st.floats(0, 1, width=64), st.integers(1, 16).map(lambda h: 2 * h))
def test_sinusoidal_embedding_is_sin_then_cos(t, dim):
    emb = spec.sinusoidal_embedding(t, dim)
    half = dim // 2
    np.testing.assert_allclose(emb[:half] ** 2 + emb[half:] ** 2, 1.0, rtol=1e-12)
    assert math.isclose(emb[0], math.sin(1000 * t), abs_tol=1e-12)
    assert math.isclose(emb[half], math.cos(1000 * t), abs_tol=1e-12)


# ---------------------------------------------------------------------------------------------
# Training


@given(st.floats(0, 1, exclude_max=True, width=64), st.integers(1, 10**7))
def test_ema_warmup_decay_rises_to_the_decay_and_stays_there(decay, n):
    d_n, d_next = spec.ema_decay_at(decay, n, True), spec.ema_decay_at(decay, n + 1, True)
    assert d_n <= d_next <= decay  # monotone in n, capped at d
    assert d_n in (decay, (1 + n) / (10 + n))  # the cap, or the warm-up's own value


# ---------------------------------------------------------------------------------------------
# Likelihood


@given(
    bin_counts(),
    st.floats(-1.5, 1.5, width=64),
    st.floats(-6, 1, width=64),
)
def test_discretized_gaussian_sums_to_one_over_all_bins(bins, mean, log_scale):
    grid = 2 * np.arange(bins) / (bins - 1) - 1.0
    logp = spec.discretized_gaussian_log_likelihood(grid, np.full(bins, mean), log_scale, bins)
    # the bins partition the real line, so Σ p telescopes to 1; the 1e-12 floor and rounding
    # of each difference of CDFs add at most bins·1e-12
    assert abs(np.exp(logp).sum() - 1.0) <= bins * 2e-12 + 1e-12
    assert np.all(logp <= 0)


@given(shapes().flatmap(lambda s: st.tuples(*[samples(s)] * 4)))
def test_normal_kl_is_non_negative_and_zero_for_equal_arguments(args):
    mean1, logvar1, mean2, logvar2 = args
    kl = spec.normal_kl(mean1, logvar1, mean2, logvar2)
    # rounding: exp(d) − 1 − d loses ~1e-16·e^|d| to cancellation
    assert np.all(kl >= -1e-12)
    assert np.all(spec.normal_kl(mean1, logvar1, mean1, logvar1) == 0)


@given(st.floats(-8, 8, width=64))
def test_standard_normal_cdf_is_symmetric(x):
    total = spec.standard_normal_cdf(np.array([x])) + spec.standard_normal_cdf(np.array([-x]))
    assert math.isclose(total[0], 1.0, rel_tol=1e-15)


@given(
    schedules(min_T=1, max_T=6),
    tanh_models(),
    bin_counts().flatmap(lambda b: st.tuples(st.just(b), binned_samples((2, 3), b))),
    seeds(),
    st.sampled_from(sorted(spec.likelihood.VLB_CONVENTIONS)),
)
def test_vlb_terms_are_non_negative_and_bits_per_dim_is_their_scaled_sum(
    sched, model, bins_x0, seed, convention
):
    if sched.T < 2:  # "reference-code" reads β̃_2
        convention = "beta-1"
    bins, x0 = bins_x0
    noise = np.random.default_rng(seed).standard_normal((sched.T, *x0.shape))
    terms = spec.vlb_terms(sched, model, x0, noise, bins, convention)
    assert terms.shape == (sched.T + 1,)
    assert np.all(terms >= -1e-9)  # KLs ≥ 0 and −log p ≥ 0
    bpd = spec.bits_per_dim(sched, model, x0, noise, bins, convention)
    assert math.isclose(bpd, terms.sum() / (x0.size * math.log(2)), rel_tol=1e-12)


@given(schedules(min_T=2, max_T=6), seeds())
def test_vlb_middle_terms_vanish_for_the_oracle(sched, seed):
    # with the true noise and x0 = 0, x0_pred is exactly 0 = x0, so μ_θ = μ̃ and every
    # L_{t−1} (t = 2..T) is exactly 0
    noise = np.random.default_rng(seed).standard_normal((sched.T, 3))

    class PerStepOracle:
        def eps(self, x, t_norm):
            return noise[round(t_norm * sched.T) - 1]

    terms = spec.vlb_terms(sched, PerStepOracle(), np.zeros(3), noise, bins=3)
    assert np.all(terms[1 : sched.T] == 0.0)
