"""The prediction table (spec.prediction.PREDICTION_TABLE and its runtime twin): the laws every
row must satisfy, so that a new prediction target is checked as soon as it is one entry, and the
one error every reader of the table gives for a name it does not hold.

Laws of a row (x_t = √ᾱ·x_0 + √(1 − ᾱ)·ε, out = the row's target of (x_0, ε)):
  * x̂_0 and ε̂ of the true target are x_0 and ε (its two conversions invert its target);
  * min_snr(s, γ) = min(s, γ)·(b/d)², with (a, b, d) the row's x̂_0 coefficients: the
    x_0-loss is (b/d)²·‖out − target‖², and min-SNR-γ weighs the x_0-loss by min(s, γ).
The spec/runtime tie (same names, each coefficient equal on a schedule) is the conformance record
of PREDICTION_TABLE.
"""

import math

import numpy as np
import pytest
import torch

import runtime.prediction
import runtime.schedule
import spec.prediction
import spec.schedule
from conformance.external.targets import eps_to_prediction
from conformance.gaussian import GaussianData
from runtime.plumbing.cli import ConfigError
from runtime.plumbing.config import TrainConfig
from spec.core import safe_div
from spec.prediction import PREDICTION_TABLE, Prediction, combine

SCHED = spec.schedule.VPSchedule(spec.schedule.linear_betas(20, 1e-3, 0.3))

# A velocity u = ε − x_0 at the VP state x_t (flow matching's target, Lipman et al. 2023): as a
# row, x̂_0 = (x_t − √(1−ᾱ)·u)/(√ᾱ + √(1−ᾱ)), ε̂ = (x_t + √ᾱ·u)/(√ᾱ + √(1−ᾱ)), and
# ‖x_0 − x̂_0‖² = ‖u − û‖²/(√SNR + 1)². Not in the table; it shows that a new target is one entry.
FLOW_VELOCITY = Prediction(
    x0=lambda sqrt_ab, sqrt_1m: (1, -sqrt_1m, sqrt_ab + sqrt_1m),
    eps=lambda sqrt_ab, sqrt_1m: (1, sqrt_ab, sqrt_ab + sqrt_1m),
    target=lambda sqrt_ab, sqrt_1m: (-1, 1, 1),
    min_snr=lambda s, gamma: min(s, gamma) / (math.sqrt(s) + 1) ** 2,
)
ROWS = {**PREDICTION_TABLE, "flow velocity (test only)": FLOW_VELOCITY}


@pytest.mark.parametrize("name", ROWS)
def test_a_rows_conversions_invert_its_target(name):
    row, rng = ROWS[name], np.random.default_rng(0)
    x0, eps = rng.standard_normal((2, 3, 4, 4))
    for t in range(1, SCHED.T + 1):
        roots = math.sqrt(SCHED.alpha_bar[t]), math.sqrt(1 - SCHED.alpha_bar[t])
        x_t = roots[0] * x0 + roots[1] * eps
        out = combine(row.target(*roots), x0, eps)
        np.testing.assert_allclose(combine(row.x0(*roots), x_t, out), x0, atol=1e-9 / roots[0])
        np.testing.assert_allclose(combine(row.eps(*roots), x_t, out), eps, atol=1e-9 / roots[1])


@pytest.mark.parametrize("name", ROWS)
@pytest.mark.parametrize("gamma", [0.5, 5.0, math.inf])
def test_a_rows_min_snr_weight_is_min_snr_gamma_on_the_x0_loss(name, gamma):
    row = ROWS[name]
    for t in range(1, SCHED.T + 1):
        roots = math.sqrt(SCHED.alpha_bar[t]), math.sqrt(1 - SCHED.alpha_bar[t])
        _, b, d = row.x0(*roots)
        s = spec.prediction.snr(SCHED, t)  # ᾱ/(1 − ᾱ + EPS): 1e-9 relative at 1 − ᾱ = 1e-3
        assert math.isclose(row.min_snr(s, gamma), min(s, gamma) * (b / d) ** 2, rel_tol=1e-7)


def test_x0_exists_at_zero_terminal_snr_for_x0_and_v_only():
    """At ᾱ = 0, x_t = ε: ε-output says nothing about x_0; x0 and v give x̂_0 = out, −v̂."""
    assert {n: PREDICTION_TABLE[n].x0_at_zero_snr for n in ("eps", "x0", "v")} == \
        {"eps": False, "x0": True, "v": True}
    assert FLOW_VELOCITY.x0_at_zero_snr  # x̂_0 = x_t − u there
    assert {n: r.x0_at_zero_snr for n, r in runtime.prediction.PREDICTION_TABLE.items()} == \
        {n: r.x0_at_zero_snr for n, r in PREDICTION_TABLE.items()}


def test_combine_takes_the_literals_exactly():
    """0 leaves a term out and 1 is not applied: ε̂ = out is out itself (−0.0 and all), and
    a divisor 1 adds no EPS."""
    x, y = np.array([1.5, -2.0]), np.array([-0.0, 3.0])
    assert combine((0, 1, 1), x, y) is y
    assert combine((1, 0, 1), x, y) is x
    np.testing.assert_array_equal(combine((2.0, -1.0, 1), x, y), 2.0 * x - y)
    np.testing.assert_array_equal(combine((1, -1.0, 4.0), x, y), safe_div(x - y, 4.0))
    xt, yt = torch.tensor([1.5, -2.0]), torch.tensor([-0.0, 3.0])
    assert runtime.prediction.combine((0, 1, 1), xt, yt) is yt


SPEC_CALLS = {
    "x0_from_output": lambda p: spec.prediction.x0_from_output(0.5, np.zeros(2), np.zeros(2), p),
    "eps_from_output": lambda p: spec.prediction.eps_from_output(0.5, np.zeros(2), np.zeros(2), p),
    "predict_x0": lambda p: spec.prediction.predict_x0(SCHED, np.zeros(2), np.zeros(2), 1, p),
    "predict_eps": lambda p: spec.prediction.predict_eps(SCHED, np.zeros(2), np.zeros(2), 1, p),
    "prediction_target": lambda p: spec.prediction.prediction_target(SCHED, np.zeros(2), 1,
                                                                     np.zeros(2), p),
    "min_snr_weight": lambda p: spec.prediction.min_snr_weight(SCHED, 1, 5.0, p),
    "PredictionModel": lambda p: spec.prediction.PredictionModel(None, p),
}
RT_SCHED = runtime.schedule.Schedule(torch.from_numpy(SCHED.beta[1:]))
Z = torch.zeros(1, 1, 2, 2)
RUNTIME_CALLS = {
    "x0_from_output": lambda p: runtime.prediction.x0_from_output(0.5, Z, Z, p),
    "eps_from_output": lambda p: runtime.prediction.eps_from_output(0.5, Z, Z, p),
    "predict_x0": lambda p: runtime.prediction.predict_x0(RT_SCHED, Z, Z, 1, p),
    "predict_eps": lambda p: runtime.prediction.predict_eps(RT_SCHED, Z, Z, 1, p),
    "prediction_target": lambda p: runtime.prediction.prediction_target(RT_SCHED, Z, 1, Z, p),
    "min_snr_weight": lambda p: runtime.prediction.min_snr_weight(RT_SCHED, 1, 5.0, p),
    "prediction_of": lambda p: runtime.prediction.prediction_of(type("M", (), {"prediction": p})),
}
HELPER_CALLS = {
    "GaussianData": lambda p: GaussianData(np.zeros((1, 1, 1)), np.ones((1, 1, 1)),
                                           ("discrete", [0.1]), p),
    "eps_to_prediction": lambda p: eps_to_prediction(np.zeros(2), np.zeros(2), SCHED, 1, p),
}


@pytest.mark.parametrize("call", [*[pytest.param(c, id=f"spec.{n}") for n, c in SPEC_CALLS.items()],
                                  *[pytest.param(c, id=f"runtime.{n}")
                                    for n, c in RUNTIME_CALLS.items()],
                                  *[pytest.param(c, id=n) for n, c in HELPER_CALLS.items()]])
def test_an_unknown_prediction_is_a_value_error_naming_it(call):
    with pytest.raises(ValueError, match="score"):
        call("score")


def test_an_unknown_prediction_is_a_config_error():
    names = ", ".join(PREDICTION_TABLE)
    with pytest.raises(ConfigError, match=f"--prediction must be one of {names}, got 'score'"):
        TrainConfig(prediction="score")
