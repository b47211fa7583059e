"""Bad arguments raise ValueError naming the argument, the value seen and what is allowed."""

import re

import jaxtyping
import numpy as np
import pytest
from spec_strategies import OracleModel, TanhModel

import spec

SCHED = spec.VPSchedule(spec.linear_betas(10, 1e-3, 0.2))
MODEL = TanhModel(0.5, 0.1, 0.0)
X = np.zeros((1, 2, 2))


def raises(*fragments):
    """pytest.raises(ValueError) whose message contains every fragment (regex-escaped)."""
    return pytest.raises(ValueError, match="(?s)" + ".*".join(re.escape(f) for f in fragments))


@pytest.mark.parametrize("bad", [-0.1, 1.0001, 1.5, np.nan, np.inf])
def test_betas_outside_0_1(bad):
    # β = 1 is allowed: it is the last beta of a zero-terminal-SNR schedule
    betas = np.array([0.1, 0.2, bad, 0.3])
    with raises("betas", "[0, 1]", "betas[2]", repr(np.float64(bad))):
        spec.VPSchedule(betas)


def test_betas_must_be_a_vector():
    # while the tests run, the jaxtyping annotation `Float[np.ndarray, "T"]` rejects it first;
    # without the import hook the ValueError of __post_init__ does
    with pytest.raises((ValueError, jaxtyping.TypeCheckError), match="betas"):
        spec.VPSchedule(np.full((2, 2), 0.1))


@pytest.mark.parametrize(
    "call",
    [
        lambda t: spec.q_sample(SCHED, X, t, X),
        lambda t: spec.x0_pred(SCHED, MODEL, X, t),
        lambda t: spec.eps_pred_loss(SCHED, MODEL, X, t, X),
        lambda t: spec.noised_sample_from_eps(SCHED, X, t, X),
        lambda t: spec.time_of_index(t, 10),
    ],
)
@pytest.mark.parametrize("t", [-1, 11])
def test_t_outside_0_to_T(call, t):
    with raises("t", "{0..10}", str(t)):
        call(t)


@pytest.mark.parametrize("t", [0, 11])
def test_posterior_needs_t_from_1_to_T(t):
    with raises("t", "{1..10}", str(t)):
        spec.q_posterior_mean_variance(SCHED, X, X, t)


@pytest.mark.parametrize(
    "call",
    [
        lambda t: spec.ddpm_step(SCHED, MODEL, t, X, X),
        lambda t: spec.ddim_step(SCHED, MODEL, t, X),
        lambda t: spec.ddim_step_system(SCHED, MODEL, t),
    ],
)
@pytest.mark.parametrize("t", [0, 11])
def test_reverse_step_t_outside_1_to_T(call, t):
    with raises("t", "{1..10}", str(t)):
        call(t)


@pytest.mark.parametrize(
    "call",
    [
        lambda k: spec.ddpmStep(SCHED, MODEL, k, X, X),
        lambda k: spec.ddimStep(SCHED, MODEL, k, X),
        lambda k: spec.ddimStepSystem(SCHED, MODEL, k),
    ],
)
@pytest.mark.parametrize("k", [-1, 10])
def test_torchlean_step_index_k_outside_0_to_T_minus_1(call, k):
    with raises("k", "{0..9}", str(k)):
        call(k)


def test_schedule_tables_are_read_only():
    with pytest.raises(ValueError, match="read-only"):
        SCHED.alpha_bar[1] = 0.5


def test_ddim_step_between_time_ranges():
    with raises("t", "{1..10}", "0"):
        spec.ddim_step_between(SCHED, MODEL, 0, 0, X)
    with raises("t_prev", "{0..4}", "5"):
        spec.ddim_step_between(SCHED, MODEL, 5, 5, X)
    with raises("eta", ">= 0", "-0.5"):
        spec.ddim_step_between(SCHED, MODEL, 5, 4, X, eta=-0.5)


@pytest.mark.parametrize(
    "grid, fragments",
    [
        ([10, 5, 5, 0], ("strictly decreasing", "grid[1] = 5", "grid[2] = 5")),
        ([10, 3, 6, 0], ("strictly decreasing", "grid[1] = 3", "grid[2] = 6")),
        ([10, 5, 1], ("end at 0", "grid[-1] = 1")),
        ([11, 5, 0], ("grid[0]", "{1..10}", "11")),
        ([0], ("at least 2",)),
    ],
)
def test_bad_ddim_grids(grid, fragments):
    with raises(*fragments):
        spec.ddim_sample_strided(SCHED, MODEL, X, grid)


VP = spec.VPLinearSchedule()


@pytest.mark.parametrize(
    "sample, grid, fragments",
    [
        (spec.dpm_solver_pp_2m_sample, [10, 5, 5, 0], ("strictly decreasing", "grid[1] = 5")),
        (spec.ddpm_sample, [10, 5, 0], ("every time", "T = 10")),
        (spec.edm_sample_euler, [2.0, 2.0, 0.0], ("strictly decreasing", "grid[0] = 2.0")),
        (spec.edm_sample_heun, [1.0, -0.5], (">= 0", "grid[-1] = -0.5")),
        (spec.pf_ode_sample_euler, [1.5, 0.0], ("grid[0]", "(0, 1]", "1.5")),
        (spec.pf_ode_sample_euler, [0.5], ("at least 2",)),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_every_sampler_checks_its_grid_with_the_same_messages(sample, grid, fragments):
    sched = SCHED if sample in (spec.dpm_solver_pp_2m_sample, spec.ddpm_sample) else VP
    with raises(*fragments):
        sample(sched, MODEL, X, grid, np.zeros((10, *X.shape)) if sample is spec.ddpm_sample
               else None)


@pytest.mark.parametrize("sample, grid", [(spec.dpm_solver_pp_2m_sample, [10, 0]),
                                          (spec.edm_sample_euler, [1.0, 0.0]),
                                          (spec.pf_ode_sample_euler, [1.0, 0.0])],
                         ids=lambda v: getattr(v, "__name__", None))
def test_deterministic_samplers_refuse_noise(sample, grid):
    sched = SCHED if sample is spec.dpm_solver_pp_2m_sample else VP
    with raises("noise", "deterministic", "(1, 1, 2, 2)"):
        sample(sched, MODEL, X, grid, np.zeros((1, *X.shape)))


def test_ddpm_needs_its_noise():
    with raises("noise", "required", "None"):
        spec.ddpm_sample(SCHED, MODEL, X, list(range(10, -1, -1)))


def test_ddim_grid_of_non_integers():
    # beartype checks one random element of a Sequence[int] annotation, so under the test hook
    # either the annotation or the ValueError fires; both name the value
    with pytest.raises((ValueError, jaxtyping.TypeCheckError), match="grid"):
        spec.ddim_sample_strided(SCHED, MODEL, X, [10, 4.5, 0])


@pytest.mark.parametrize("num_steps", [0, 11])
def test_num_steps_outside_1_to_T(num_steps):
    with raises("num_steps", "{1..10}", str(num_steps)):
        spec.ddim_timesteps(10, num_steps)


def test_eta_positive_needs_noise():
    with raises("z", "eta > 0", "0.5"):
        spec.ddim_step_between(SCHED, MODEL, 3, 2, X, eta=0.5)
    with raises("noise", "eta > 0", "1.0"):
        spec.ddim_sample_strided(SCHED, MODEL, X, [10, 5, 0], eta=1.0)


def test_mismatched_shapes():
    other = np.zeros((2, 2, 2))
    with raises("eps", "(1, 2, 2)", "x0", "(2, 2, 2)"):
        spec.q_sample(SCHED, X, 3, other)
    with raises("x_t", "(1, 2, 2)", "(2, 2, 2)"):
        spec.q_posterior_mean_variance(SCHED, X, other, 3)
    with raises("z", "(1, 2, 2)", "(2, 2, 2)"):
        spec.ddpm_step(SCHED, MODEL, 3, X, other)
    with raises("noise", "(10, 1, 2, 2)", "(9, 1, 2, 2)"):
        spec.ddpm_sample(SCHED, MODEL, X, list(range(10, -1, -1)), np.zeros((9, 1, 2, 2)))
    with raises("noise", "(2, 1, 2, 2)", "(3, 1, 2, 2)"):
        spec.ddim_sample_strided(SCHED, MODEL, X, [10, 5, 0], np.zeros((3, 1, 2, 2)), eta=1.0)
    with raises("z", "(1, 2, 2)", "(2, 2, 2)"):
        spec.ddim_step_between(SCHED, MODEL, 3, 2, X, eta=1.0, z=other)
    with raises("eps_hat", "(1, 2, 2)", "(2, 2, 2)"):
        spec.ddim_prev(0.9, 0.8, X, other)
    with raises("a", "b", "(1, 2, 2)", "(2, 2, 2)"):
        spec.mse(X, other)
    with raises("noise", "(10, 1, 2, 2)", "(1, 2, 2)"):
        spec.vlb_terms(SCHED, OracleModel(X), X, X)


def test_params_that_do_not_match_the_config():
    cfg = spec.EpsFiLMNetConfig(1, hidden_channels=4, residual_blocks=1, embed_dim=4, groups=2)
    params = spec.init_film_params(cfg, 0)
    wrong = dict(params, **{"stem.weight": np.zeros((4, 3, 3, 3))})
    with raises("stem.weight", "(4, 2, 3, 3)", "(4, 3, 3, 3)"):
        spec.eps_film_net(cfg, wrong)
    with raises("missing", "out.bias"):
        spec.eps_film_net(cfg, {k: v for k, v in params.items() if k != "out.bias"})
    with raises("unexpected", "extra"):
        spec.eps_film_net(cfg, dict(params, extra=np.zeros(1)))
    conv = spec.init_params(spec.EpsConvNetConfig(1, 3, 1), 0)
    with raises("blocks.0.conv2.weight", "(3, 3, 3, 3)", "(3, 2, 3, 3)"):
        spec.eps_residual_conv_net(dict(conv, **{"blocks.0.conv2.weight": np.zeros((3, 2, 3, 3))}))
    with raises("missing", "stem.weight"):
        spec.eps_conv_net({k: v for k, v in conv.items() if k != "stem.weight"})


def test_bad_configs():
    with raises("groups", "hidden_channels = 6", "4"):
        spec.EpsFiLMNetConfig(1, hidden_channels=6, groups=4)
    with raises("embed_dim", "even", "5"):
        spec.EpsFiLMNetConfig(1, embed_dim=5)
    with raises("hidden_channels", "0"):
        spec.EpsConvNetConfig(1, 0)


@pytest.mark.parametrize("bad", [0.5, 1.01, -1.2])
def test_vlb_x0_off_the_bins_grid(bad):
    x0 = np.array([-1.0, 0.0, bad])
    with raises("x0", "bins", "k = 0..2", repr(np.float64(bad))):
        spec.vlb_terms(SCHED, OracleModel(x0), x0, np.zeros((10, 3)), bins=3)
    with raises("x0", "bins", repr(np.float64(bad))):
        spec.discretized_gaussian_log_likelihood(x0, np.zeros(3), 0.0, bins=3)


def test_other_ranges():
    with raises("T", "{1..", "0"):
        spec.linear_betas(0, 1e-4, 0.02)
    with raises("steps", "{1..", "0"):
        spec.pf_ode_uniform_grid(0)
    with raises("t", "[0, 1]", "1.5"):
        spec.pf_ode_rhs(spec.VPLinearSchedule(), MODEL, X, 1.5)
    with raises("n", "{0..", "-1"):
        spec.iterate(spec.DynamicalSystem(lambda x: x), -1, X)
    with raises("n", "{0..2}", "3"):
        spec.iterate_with_input(spec.DrivenSystem(lambda x, u: x), [X, X], 3, X)
    with raises("x", "(C, H, W)", "(1, 1, 1, 2, 2)"):
        spec.append_time_channel(np.zeros((1, 1, 1, 2, 2)), 0.5)
    with raises("dim", "even", "3"):
        spec.sinusoidal_embedding(0.5, 3)
    with raises("n", "from 1", "0"):
        spec.ema_decay_at(0.99, 0, True)
