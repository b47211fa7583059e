"""Golden values derived in closed form, never copied from a run.

The main witness is Gaussian data x0 ~ N(μ, s²·I). Then x_t ~ N(√ᾱ_t·μ, ᾱ_t·s² + 1 − ᾱ_t) and
the optimal noise predictor E[ε | x_t] is linear:

    ε*(x_t, t) = √(1 − ᾱ_t)·(x_t − √ᾱ_t·μ) / (ᾱ_t·s² + 1 − ᾱ_t).

Driven by ε*, every sampler must carry N(0, I) to (close to) N(μ, s²). One "image" is a vector of
N independent coordinates, so its empirical mean and std estimate μ and s with standard errors
s/√N and s/√(2N). Each check allows Z of those standard errors plus a stated allowance for the
sampler's discretization bias (O(step size); it is a bound for the sampler, not a fitted value).
"""

import math

import numpy as np
import pytest
from spec_strategies import TanhModel

import spec

MU, S = 0.3, 0.5  # the data distribution N(μ, s²)
N = 4096  # independent coordinates of one sample
Z = 4.5  # standard errors allowed (two-sided false-alarm rate ≈ 7e-6 per check)
SE_MEAN, SE_STD = S / math.sqrt(N), S / math.sqrt(2 * N)


class GaussianOracle:
    """ε* for data N(MU, S²) under a schedule given as t_norm ↦ ᾱ."""

    def __init__(self, alpha_bar_of):
        self.alpha_bar_of = alpha_bar_of

    def eps(self, x, t_norm):
        ab = self.alpha_bar_of(t_norm)
        return math.sqrt(1 - ab) * (x - math.sqrt(ab) * MU) / (ab * S**2 + 1 - ab)


def discrete_oracle(sched: spec.VPSchedule) -> GaussianOracle:
    alpha_bars = sched.alpha_bar
    return GaussianOracle(lambda t_norm: alpha_bars[round(t_norm * sched.T)])


def assert_is_data_distribution(x, allowance):
    """Empirical mean and std of x within Z standard errors + allowance·S of (MU, S)."""
    assert abs(x.mean() - MU) <= Z * SE_MEAN + allowance * S, f"mean {x.mean()} vs {MU}"
    assert abs(x.std() - S) <= Z * SE_STD + allowance * S, f"std {x.std()} vs {S}"


@pytest.fixture
def rng():
    return np.random.default_rng(20240601)


LINEAR_1000 = spec.VPSchedule(spec.linear_betas(1000, 1e-4, 0.02))  # DDPM's schedule
COSINE_400 = spec.VPSchedule(spec.cosine_betas(400))


# ---------------------------------------------------------------------------------------------
# Samplers driven by ε*


def test_ddpm_maps_noise_to_the_data_distribution(rng):
    # allowance 2%: the "fixed small" variance β̃_t omits the posterior's x0-uncertainty term,
    # a bias of order 1/T
    x_T = rng.standard_normal(N)
    noise = rng.standard_normal((LINEAR_1000.T, N))
    assert_is_data_distribution(
        spec.ddpm_sample(LINEAR_1000, discrete_oracle(LINEAR_1000), x_T,
                         list(range(LINEAR_1000.T, -1, -1)), noise), 0.02
    )


def test_ddim_full_maps_noise_to_the_data_distribution(rng):
    x_T = rng.standard_normal(N)
    assert_is_data_distribution(
        spec.ddim_sample(COSINE_400, discrete_oracle(COSINE_400), x_T), 0.02
    )


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_strided_maps_noise_to_the_data_distribution(rng, eta):
    # 200 steps over T = 400: allowance 4% for the stride-2 discretization
    grid = spec.ddim_timesteps(COSINE_400.T, 200)
    x_T = rng.standard_normal(N)
    noise = rng.standard_normal((len(grid) - 1, N))
    out = spec.ddim_sample_strided(COSINE_400, discrete_oracle(COSINE_400), x_T, grid, noise,
                                   eta=eta)
    assert_is_data_distribution(out, 0.04)


PF_STEPS = 100
VP = spec.VPLinearSchedule()
PF_ORACLE = GaussianOracle(VP.alpha_bar)
PF_GRID = spec.pf_ode_uniform_grid(PF_STEPS)


def test_pf_ode_euler_maps_noise_to_the_data_distribution(rng):
    # allowance 2%: Euler's O(1/steps) error; ᾱ(1) = e^(−10.05) makes N(0, I) the right start
    x1 = rng.standard_normal(N)
    assert_is_data_distribution(spec.pf_ode_sample_euler(VP, PF_ORACLE, x1, PF_GRID), 0.02)


# ---------------------------------------------------------------------------------------------
# The two TorchLean divergences, decided by the same closed form


def torchlean_pf_ode_rhs(x, t):
    """TorchLean's pfOdeRhs: −½β(t)·x + (β(t)/√(1 − ᾱ(t)))·ε̂ (no ½ on the score term)."""
    beta = VP.beta(t)
    return -0.5 * beta * x + spec.safe_div(beta, VP.sqrt_one_minus_alpha_bar(t)) * PF_ORACLE.eps(x, t)


def torchlean_order_sample(x1, steps):
    """TorchLean's pfOdeSampleEuler recursion: the drift is taken at t = h, 2h, …, 1."""
    h, x = 1 / steps, x1
    for i in range(steps):
        x = spec.euler_step(lambda y, s: spec.pf_ode_rhs(VP, PF_ORACLE, y, s), x, (i + 1) * h, -h)
    return x


def test_torchlean_doubled_score_term_collapses_the_std(rng):
    x1 = rng.standard_normal(N)
    h, x = 1 / PF_STEPS, x1
    for i in range(PF_STEPS):
        x = spec.euler_step(torchlean_pf_ode_rhs, x, 1 - i * h, -h)
    # The doubled term turns the exact flow's contraction −½β + ½β/v (v = ᾱs² + σ²) into
    # −½β + β/v: the spread is squeezed far below s.
    assert x.std() < 0.05 * S
    assert_is_data_distribution(spec.pf_ode_sample_euler(VP, PF_ORACLE, x1, PF_GRID), 0.02)


def test_torchlean_time_order_shifts_the_mean(rng):
    x1 = rng.standard_normal(N)
    ours = spec.pf_ode_sample_euler(VP, PF_ORACLE, x1, PF_GRID)
    lean = torchlean_order_sample(x1, PF_STEPS)
    assert_is_data_distribution(ours, 0.02)
    # Both samplers are affine in x1 with the same slope, so on the same x1 their means differ
    # by a constant: the bias of the mirrored times. It exceeds the whole tolerance above.
    assert abs(lean.mean() - ours.mean()) > Z * SE_MEAN + 0.02 * S


# ---------------------------------------------------------------------------------------------
# Training


def test_ema_warmup_decay_in_closed_form():
    # d_n = min(d, (1 + n)/(10 + n)): 2/11 at the first update, 3/12 at the second; for d = 0.99
    # the cap is reached where (1 + n)/(10 + n) = 0.99, at n = 890 (891/900)
    assert spec.ema_decay_at(0.999, 1, True) == 2 / 11
    assert spec.ema_decay_at(0.999, 2, True) == 0.25
    assert spec.ema_decay_at(0.99, 889, True) == 890 / 899 < 0.99
    assert spec.ema_decay_at(0.99, 890, True) == 0.99 == spec.ema_decay_at(0.99, 10**6, True)
    assert spec.ema_decay_at(0.99, 1, False) == 0.99  # off: the fixed decay from the start


# ---------------------------------------------------------------------------------------------
# Schedules


def test_alpha_bar_of_a_three_step_linear_schedule():
    sched = spec.VPSchedule(spec.linear_betas(3, 0.1, 0.3))  # betas 0.1, 0.2, 0.3
    assert math.isclose(sched.alpha_bar[3], 0.9 * 0.8 * 0.7, rel_tol=1e-15)
    assert math.isclose(sched.alpha_bar[2], 0.72, rel_tol=1e-15)


def test_alpha_bar_T_of_the_ddpm_linear_schedule_is_its_product():
    # ᾱ_T = Π_k (1 − β_k), β_k = 1e-4 + (0.02 − 1e-4)·k/999, as exp of an exactly rounded sum
    log_ab = math.fsum(math.log1p(-(1e-4 + (0.02 - 1e-4) * k / 999)) for k in range(1000))
    assert math.isclose(LINEAR_1000.alpha_bar[1000], math.exp(log_ab), rel_tol=1e-12)


def test_cosine_alpha_bar_is_f_t_over_f_0_where_unclipped():
    T, s = 1000, 0.008
    sched = spec.VPSchedule(spec.cosine_betas(T))

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    clipped = np.flatnonzero(sched.beta >= 0.999)  # the times t whose β_t is clipped
    last = int(clipped[0]) - 1 if clipped.size else T  # the product telescopes up to here
    assert last >= T - 1
    for t in range(last + 1):
        assert math.isclose(sched.alpha_bar[t], f(t) / f(0), rel_tol=1e-9, abs_tol=1e-15), t


def test_ddim_timesteps_of_ten_steps_over_a_thousand():
    # τ_i = round(1000·(10 − i)/10)
    assert list(spec.ddim_timesteps(1000, 10)) == list(range(1000, -1, -100))
    assert list(spec.ddim_timesteps(10, 4)) == [10, 8, 5, 3, 0]  # 10·4/4, 7.5 → 8, 5, 2.5 → 3, 0


@pytest.mark.parametrize("T, n", [(1000, 10), (1000, 50), (1000, 8), (20, 4)])
def test_the_ddim_papers_grid_is_leading_not_even(T, n):
    # DDIM's code strides range(0, T, T // n) over 0-based timesteps τ, whose ᾱ is our ᾱ_{τ+1}
    # (n times when n divides T)
    paper = [tau + 1 for tau in reversed(range(0, T, T // n))]
    assert list(spec.timestep_grid(T, n, "leading")) == [*paper, 0]
    assert list(spec.ddim_timesteps(T, n))[:-1] != paper


# ---------------------------------------------------------------------------------------------
# Identities between samplers


def test_ddim_with_eta_one_on_the_full_grid_is_ddpm():
    # DDIM §4.1: η = 1 with t_prev = t − 1 is the DDPM ancestral step. The strided sampler uses
    # noise[i] at step T − i → T − i − 1, i.e. DDPM's noise[T − 1 − i].
    sched = spec.VPSchedule(spec.linear_betas(20, 0.01, 0.3))
    model = TanhModel(0.7, -0.4, 0.2)
    rng = np.random.default_rng(7)
    x_T, noise = rng.standard_normal(64), rng.standard_normal((20, 64))
    ddpm = spec.ddpm_sample(sched, model, x_T, list(range(20, -1, -1)), noise)
    ddim = spec.ddim_sample_strided(
        sched, model, x_T, spec.ddim_timesteps(20, 20), noise[::-1], eta=1.0
    )
    np.testing.assert_allclose(ddim, ddpm, rtol=1e-8, atol=1e-8)


def test_posterior_at_t_1_is_x0_with_zero_variance():
    sched = spec.VPSchedule(spec.linear_betas(10, 0.01, 0.2))
    x0, x1 = np.array([0.5, -1.0]), np.array([3.0, 2.0])
    mean, var = spec.q_posterior_mean_variance(sched, x0, x1, 1)
    assert var == 0.0
    np.testing.assert_allclose(mean, x0, rtol=1e-9)  # coef_x0 = β_1/(β_1 + EPS)


def test_normal_kl_of_unit_shifts():
    # KL(N(1, 1) ‖ N(0, 1)) = ½; KL(N(0, e) ‖ N(0, 1)) = ½(e − 2)
    assert spec.normal_kl(np.array([1.0]), np.array([0.0]), 0.0, 0.0)[0] == 0.5
    assert math.isclose(
        spec.normal_kl(np.array([0.0]), np.array([1.0]), 0.0, 0.0)[0], 0.5 * (math.e - 2)
    )


def test_discretized_gaussian_of_a_wide_bin():
    # bins = 2: values ±1, bins (−∞, 0] and [0, ∞); mean 0 gives p = ½ each
    logp = spec.discretized_gaussian_log_likelihood(np.array([-1.0, 1.0]), np.zeros(2), 0.0, bins=2)
    np.testing.assert_allclose(logp, math.log(0.5), rtol=1e-15)


def test_l_T_of_the_prior_term_in_closed_form():
    # L_T = Σ ½(−1 − log(1 − ᾱ_T) + (1 − ᾱ_T) + ᾱ_T·x0²)
    sched = spec.VPSchedule(spec.linear_betas(4, 0.1, 0.4))
    x0 = np.array([-1.0, 0.0, 1.0])
    ab = 0.9 * (1 - 0.2) * (1 - 0.3) * 0.6
    want = sum(0.5 * (-1 - math.log(1 - ab) + (1 - ab) + ab * v**2) for v in x0)
    terms = spec.vlb_terms(sched, TanhModel(0.1, 0.1, 0.1), x0, np.zeros((4, 3)), bins=3)
    assert math.isclose(terms[-1], want, rel_tol=1e-12)


def test_ddpm_variance_choices_differ_by_their_closed_form_sigma():
    """DDPM §3.2 with β = (0.1, 0.2): at t = 2 β̃_2 = (1 − 0.9)·0.2/(1 − 0.72) = 1/14, so the two
    fixed choices differ by exactly (√0.2 − √(1/14))·z; at t = 1 neither adds noise (Algorithm 2)."""
    sched = spec.VPSchedule(np.array([0.1, 0.2]))
    model = TanhModel(0.7, -0.4, 0.2)
    x, z = np.linspace(-1.0, 1.0, 6), np.linspace(2.0, -1.0, 6)
    small, large = (spec.ddpm_step(sched, model, 2, x, z, variance=v)
                    for v in ("fixed_small", "fixed_large"))
    np.testing.assert_allclose(large - small, (math.sqrt(0.2) - math.sqrt(1 / 14)) * z, rtol=1e-9)
    quiet = spec.ddpm_step(sched, model, 1, x, 0 * z)
    for v in ("fixed_small", "fixed_large"):
        np.testing.assert_array_equal(spec.ddpm_step(sched, model, 1, x, z, variance=v), quiet)
    with pytest.raises(ValueError, match=r"variance must be one of \['fixed_large', 'fixed_small'\], got 'learned'"):
        spec.ddpm_step(sched, model, 2, x, z, variance="learned")
