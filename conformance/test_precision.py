"""Fixed cases the random draws reach only sometimes: every runtime function that forms 1 − ᾱ or
a ratio of σ's, at t = 1 and small t of the DDPM linear schedule (T = 1000, where 1 − ᾱ_t ≈ 1e-4
cancels in float32) and at t = T, in float32 and bfloat16.

The spec runs in float64 on the very inputs the runtime saw (rounded to its dtype; ᾱ given as a
float64 number stays float64 on both sides), and each result is held to `conditioned(dtype,
scale)`: OPS roundings of the working dtype relative to the formula's own scale (the magnitudes
of the terms it adds, over the magnitude of what it divides by), plus the rounding of the result.
That is what float64 coefficients cast once allow; a coefficient formed in float32 instead
(√(1 − ᾱ) or σ_next/σ_t after rounding ᾱ to float32) is off by ~2^-24/(1 − ᾱ), hundreds of them.
(`test_pf_ode_precision` is the same check for the probability-flow ODE.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import runtime.ddim
import runtime.dpm_solver
import runtime.edm
import runtime.forward
import runtime.pf_ode
import runtime.prediction
import runtime.schedule
import spec.ddim
import spec.dpm_solver
import spec.edm
import spec.forward
import spec.model
import spec.pf_ode
import spec.prediction
import spec.schedule
from conformance.harness import compare
from conformance.tolerances import DTYPES, conditioned

T = 1000
BETAS = spec.schedule.linear_betas(T, 1e-4, 0.02)  # DDPM's schedule: 1 − ᾱ_1 = β_1 = 1e-4
SPEC_SCHED = spec.schedule.VPSchedule(BETAS)
AB = SPEC_SCHED.alpha_bar
TIMES = [1, 2, 3, 10, T]  # t = 1, small t, and t = T (where nothing cancels)
# ᾱ given directly: near 1 (what t = 1 and small continuous t give), and ordinary values. Each
# near-1 value lies ≥ 1/4 float32 spacing away from a float32 number, so rounding ᾱ to float32
# really changes 1 − ᾱ.
GIVEN_AB = [1 - 1.3e-6, 1 - 3.1e-5, 1 - 1.1e-4, 1 - 7.7e-4, 0.5, 3e-3]
DTYPE_NAMES = ["float32", "bfloat16"]


def sched_for(dtype: torch.dtype) -> runtime.schedule.Schedule:
    return runtime.schedule.Schedule(torch.from_numpy(BETAS), dtype)


def data(n: int, stream: int, dtype: torch.dtype, scale: float = 1.0) -> torch.Tensor:
    """(n, 1, 3, 3) N(0, scale²) values, rounded to `dtype` (what both sides then see)."""
    rng = np.random.default_rng([23, stream])
    return torch.from_numpy(scale * rng.standard_normal((n, 1, 3, 3))).to(dtype)


def f64(x: torch.Tensor) -> np.ndarray:
    return x.double().numpy()


def check(dtype: str, got: torch.Tensor, want: np.ndarray, scale: np.ndarray, what: str) -> None:
    assert got.dtype == DTYPES[dtype], f"{what}: returned {got.dtype}, expected {dtype}"
    compare(want, f64(got), conditioned(dtype, scale), what)


def col(v: np.ndarray) -> np.ndarray:
    """Per-sample values (B,) as (B, 1, 1, 1), to broadcast over images."""
    return np.asarray(v, dtype=np.float64).reshape(-1, 1, 1, 1)


def x0_scale(ab: np.ndarray, x_t: np.ndarray, out: np.ndarray, prediction: str) -> np.ndarray:
    """The conditioning of x̂0 = f(x_t, out) (spec.prediction.x0_from_output's three formulas)."""
    a, s = np.sqrt(col(ab)), np.sqrt(1 - col(ab))
    if prediction == "x0":
        return np.zeros_like(out)
    if prediction == "v":
        return a * np.abs(x_t) + s * np.abs(out)
    return (np.abs(x_t) + s * np.abs(out)) / a


def eps_scale(ab: np.ndarray, x_t: np.ndarray, out: np.ndarray, prediction: str) -> np.ndarray:
    """The conditioning of ε̂ = f(x_t, out) (spec.prediction.eps_from_output's three formulas)."""
    a, s = np.sqrt(col(ab)), np.sqrt(1 - col(ab))
    if prediction == "eps":
        return np.zeros_like(out)
    if prediction == "v":
        return s * np.abs(x_t) + a * np.abs(out)
    return (np.abs(x_t) + a * np.abs(out)) / s


# --- the conversions at a given ᾱ (float64 numbers, as the samplers pass them) ---------------

@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("prediction", spec.prediction.PREDICTIONS)
def test_conversions_at_a_given_alpha_bar_keep_float64_coefficients(dtype, prediction):
    td, n = DTYPES[dtype], len(GIVEN_AB)
    x_t, out = data(n, 0, td), data(n, 1, td)
    ab = np.array(GIVEN_AB)
    for name, scale_of in (("x0_from_output", x0_scale), ("eps_from_output", eps_scale)):
        run, ref = getattr(runtime.prediction, name), getattr(spec.prediction, name)
        scale = scale_of(ab, f64(x_t), f64(out), prediction)
        want = np.stack([ref(ab[i], f64(x_t)[i], f64(out)[i], prediction) for i in range(n)])
        check(dtype, run(torch.from_numpy(ab), x_t, out, prediction), want, scale,
              f"{name}({prediction}) at per-sample float64 alpha_bar {GIVEN_AB}")
        for i in range(n):  # a Python float ᾱ (ddim_prev, TorchLean's steps)
            check(dtype, run(float(ab[i]), x_t[i:i + 1], out[i:i + 1], prediction), want[i:i + 1],
                  scale[i:i + 1], f"{name}({prediction}) at alpha_bar = {ab[i]!r}")


# --- the conversions on the schedule's tables ----------------------------------------------

@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("prediction", spec.prediction.PREDICTIONS)
def test_table_conversions_at_t_1_small_t_and_T(dtype, prediction):
    td, n = DTYPES[dtype], len(TIMES)
    sched, t = sched_for(td), torch.tensor(TIMES)
    x_t, out = data(n, 2, td), data(n, 3, td)
    ab = AB[TIMES]
    for name, scale_of in (("predict_x0", x0_scale), ("predict_eps", eps_scale)):
        run, ref = getattr(runtime.prediction, name), getattr(spec.prediction, name)
        want = np.stack([ref(SPEC_SCHED, f64(x_t)[i], f64(out)[i], TIMES[i], prediction)
                         for i in range(n)])
        scale = scale_of(ab, f64(x_t), f64(out), prediction)
        check(dtype, run(sched, x_t, out, t, prediction), want, scale,
              f"{name}({prediction}) at per-sample t = {TIMES}")
        for i, ti in enumerate(TIMES):  # an int t
            check(dtype, run(sched, x_t[i:i + 1], out[i:i + 1], ti, prediction), want[i:i + 1],
                  scale[i:i + 1], f"{name}({prediction}) at t = {ti}")


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_v_target_and_q_sample_at_t_1_small_t_and_T(dtype):
    td, n = DTYPES[dtype], len(TIMES)
    sched, t = sched_for(td), torch.tensor(TIMES)
    x0, eps = data(n, 4, td), data(n, 5, td)
    a, s = np.sqrt(col(AB[TIMES])), np.sqrt(1 - col(AB[TIMES]))
    scale = a * np.abs(f64(eps)) + s * np.abs(f64(x0))
    want = np.stack([spec.prediction.v_target(SPEC_SCHED, f64(x0)[i], TIMES[i], f64(eps)[i])
                     for i in range(n)])
    check(dtype, runtime.prediction.v_target(sched, x0, t, eps), want, scale, "v_target")
    scale = a * np.abs(f64(x0)) + s * np.abs(f64(eps))
    want = np.stack([spec.forward.q_sample(SPEC_SCHED, f64(x0)[i], TIMES[i], f64(eps)[i])
                     for i in range(n)])
    check(dtype, runtime.forward.q_sample(sched, x0, t, eps), want, scale, "q_sample")


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_posterior_mean_at_t_1_small_t_and_T(dtype):
    td, n = DTYPES[dtype], len(TIMES)
    sched, t = sched_for(td), torch.tensor(TIMES)
    x0, x_t = data(n, 6, td), data(n, 7, td)
    wants = [spec.forward.q_posterior_mean_variance(SPEC_SCHED, f64(x0)[i], f64(x_t)[i], ti)
             for i, ti in enumerate(TIMES)]
    ab, ab_prev = AB[TIMES], AB[[ti - 1 for ti in TIMES]]
    c0 = col(np.sqrt(ab_prev) * BETAS[np.array(TIMES) - 1] / (1 - ab))
    ct = col(np.sqrt(1 - BETAS[np.array(TIMES) - 1]) * (1 - ab_prev) / (1 - ab))
    mean, _ = runtime.forward.q_posterior_mean_variance(sched, x0, x_t, t)
    check(dtype, mean, np.stack([w[0] for w in wants]),
          c0 * np.abs(f64(x0)) + ct * np.abs(f64(x_t)), "q_posterior_mean_variance mean")


# --- the samplers' steps: σ ratios ---------------------------------------------------------

DPM_STEPS = [(None, 1, 0), (None, 2, 1), (3, 2, 1), (4, 3, 1), (10, 5, 2), (20, 10, 3),
             (2, 1, 0), (T, 500, 2)]  # (t_prev, t, t_next)


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("steps", DPM_STEPS, ids=str)
def test_dpm_solver_step_at_small_t_keeps_float64_ratios(dtype, steps):
    t_prev, t, t_next = steps
    td = DTYPES[dtype]
    x_t, x0 = data(2, 8, td), data(2, 9, td, 0.5)
    x0_prev = None if t_prev is None else data(2, 10, td, 0.5)
    got = runtime.dpm_solver.dpm_solver_pp_2m_step(sched_for(td), x_t, x0, t, t_next, x0_prev,
                                                   t_prev)
    want = np.stack([spec.dpm_solver.dpm_solver_pp_2m_step(
        SPEC_SCHED, f64(x_t)[i], f64(x0)[i], t, t_next,
        None if x0_prev is None else f64(x0_prev)[i], t_prev) for i in range(2)])
    ab, ab_next = AB[t], AB[t_next]
    d = np.abs(f64(x0))  # |D| ≤ |1 + c|·|x̂0| + |c|·|x̂0_prev|
    if t_prev is not None and ab_next < 1:
        lam = spec.dpm_solver.half_log_snr(np.array([AB[t_prev], ab, ab_next]))
        c = (lam[2] - lam[1]) / (2 * (lam[1] - lam[0]))
        d = abs(1 + c) * np.abs(f64(x0)) + abs(c) * np.abs(f64(x0_prev))
    ratio = np.sqrt(1 - ab_next) / np.sqrt(1 - ab)
    scale = ratio * (np.abs(f64(x_t)) + np.sqrt(ab) * d) + np.sqrt(ab_next) * d
    check(dtype, got, want, scale, f"dpm_solver_pp_2m_step {t_prev} -> {t} -> {t_next}")


DDIM_STEPS = [(1, 0), (2, 1), (3, 1), (3, 2), (10, 5), (T, 999)]  # (t, t_prev)


def _eps_model(x, t_norm):  # ε̂ = x/2: exact in every dtype, the same function on both sides
    return 0.5 * x


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("steps", DDIM_STEPS, ids=str)
def test_ddim_step_with_noise_at_small_t_keeps_float64_sigma(dtype, steps):
    t, t_prev = steps
    td, eta = DTYPES[dtype], 1.0
    x_t, z = data(2, 11, td), data(2, 12, td)
    got = runtime.ddim.ddim_step_between(sched_for(td), _eps_model, t, t_prev, x_t, eta, z)
    model = spec.model.FunctionEpsModel(_eps_model)
    want = np.stack([spec.ddim.ddim_step_between(SPEC_SCHED, model, t, t_prev, f64(x_t)[i], eta,
                                                 f64(z)[i]) for i in range(2)])
    ab, ab_prev = AB[t], AB[t_prev]
    sigma = eta * np.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
    eps_hat = np.abs(0.5 * f64(x_t))
    x0_hat = (np.abs(f64(x_t)) + np.sqrt(1 - ab) * eps_hat) / np.sqrt(ab)
    scale = (np.sqrt(ab_prev) * x0_hat + np.sqrt(max(1 - ab_prev - sigma**2, 0.0)) * eps_hat
             + sigma * np.abs(f64(z)))
    check(dtype, got, want, scale, f"ddim_step_between {t} -> {t_prev}, eta = 1")


EDM_SIGMAS = [1.3e-3, 5.1e-3, 1.1e-2, 0.7, 12.0]  # σ² = (1 − ᾱ)/ᾱ: ᾱ = 1 − 1.7e-6 … 0.007


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_edm_denoiser_at_small_sigma_keeps_float64_alpha_bar(dtype):
    td, n = DTYPES[dtype], len(EDM_SIGMAS)
    x_tilde, sigma = data(n, 13, td), np.array(EDM_SIGMAS)
    sch = spec.pf_ode.VPLinearSchedule()
    model = spec.model.FunctionEpsModel(_eps_model)
    got = runtime.edm.edm_denoise(runtime.pf_ode.VPLinearSchedule(), _eps_model, x_tilde,
                                  torch.from_numpy(sigma))
    want = np.stack([spec.edm.edm_denoise(sch, model, f64(x_tilde)[i], sigma[i])
                     for i in range(n)])
    ab = 1 / (1 + col(sigma) ** 2)
    x_t = np.sqrt(ab) * np.abs(f64(x_tilde))  # x_t = x̃/√(1 + σ²), itself rounded once
    scale = (2 * x_t + np.sqrt(1 - ab) * 0.5 * x_t) / np.sqrt(ab)
    check(dtype, got, want, scale, f"edm_denoise at per-sample sigma {EDM_SIGMAS}")
