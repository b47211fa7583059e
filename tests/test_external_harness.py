"""The external-conformance harness itself: a correct step function passes, broken ones are caught
with a clear reproduction, and the README's "check your own code" example runs as printed.

No diffusers here: these targets are local step functions in the spec's conventions.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.external import (
    DDIM,
    DDPM,
    FLOAT64,
    Claim,
    DPMSolverPP,
    EDMHeun,
    OutsideSpec,
    SpecConfig,
    StepTarget,
    Tolerance,
    check,
    eps_to_prediction,
    run_case,
)
from conformance.external.oracle import NonlinearEps, SpecOracle
from spec.ddpm import ddpm_step
from spec.schedule import VPSchedule, cosine_betas, linear_betas

EXAMPLES = 12  # per family (derandomized): enough for every broken target below to be caught in each family


# ---------------------------------------------------------------------------------------------
# Step functions written from the papers, independently of spec/ (plain NumPy)


def ddim_factory(*, to_prev=None, eta_scale=1.0, sqrt_prev=True, clipped_direction=False,
                 model_time=None):
    """A DDIM step (Eq. 12, σ of Eq. 16), with optional planted bugs."""

    def make(cfg):
        ab = cfg.alpha_bars

        def step(model, x, t, t_prev, z):
            if to_prev is not None:
                t_prev = to_prev(t, t_prev)
            eps = model(x, t if model_time is None else model_time(t))
            x0 = (x - np.sqrt(1 - ab[t]) * eps) / np.sqrt(ab[t])
            if cfg.clip:
                x0 = np.clip(x0, -1, 1)
                if clipped_direction:  # ε recomputed from the clipped x̂_0
                    eps = (x - np.sqrt(ab[t]) * x0) / np.sqrt(1 - ab[t])
            eta = cfg.eta * eta_scale
            sigma = eta * np.sqrt((1 - ab[t_prev]) / (1 - ab[t]) * (1 - ab[t] / ab[t_prev]))
            coef = np.sqrt(ab[t_prev]) if sqrt_prev else ab[t_prev]
            return coef * x0 + np.sqrt(max(1 - ab[t_prev] - sigma**2, 0.0)) * eps + sigma * z

        return step

    return make


def ddpm_factory(*, variance="beta_tilde", noise_last=False):
    """A DDPM ancestral step on a (possibly strided) grid: posterior of q(x_prev | x_t, x̂_0)."""

    def make(cfg):
        ab = cfg.alpha_bars

        def step(model, x, t, t_prev, z):
            eps = model(x, t)
            beta = 1 - ab[t] / ab[t_prev]  # β' between grid times (= β_t on every step)
            x0 = (x - np.sqrt(1 - ab[t]) * eps) / np.sqrt(ab[t])
            if cfg.clip:
                x0 = np.clip(x0, -1, 1)
            mean = (np.sqrt(ab[t_prev]) * beta * x0
                    + np.sqrt(1 - beta) * (1 - ab[t_prev]) * x) / (1 - ab[t])
            var = (1 - ab[t_prev]) / (1 - ab[t]) * beta if variance == "beta_tilde" else beta
            if t_prev == 0:  # Algorithm 2: z = 0 on the last step (the bug: σ² = β' there)
                var = beta if noise_last else 0.0
            return mean + np.sqrt(var) * z

        return step

    return make


def heun_factory(*, corrector_time=None, corrector_at_start=False, corrector=True):
    """EDM Heun (Karras et al. 2022, Algorithm 1) on σ_t = √((1−ᾱ_t)/ᾱ_t), VP states in and out:
    x̃ = x_t/√ᾱ_t, slope d = (x̃ − D)/σ = ε̂, an Euler predictor, then (unless σ_next = 0) the
    trapezoidal corrector with the slope at (x̃', σ_next); x_t = x̃/√(1 + σ²). Optional bugs."""

    def make(cfg):
        ab = cfg.alpha_bars
        sig = np.sqrt((1 - ab) / ab)

        def step(model, x, t, t_prev, z):
            s, s_next = sig[t], (sig[t_prev] if t_prev > 0 else 0.0)
            xt = x / np.sqrt(ab[t])
            d = model(x, t)  # (x̃ − (x̃ − σ·ε̂))/σ
            x_next = xt + (s_next - s) * d
            if t_prev > 0 and corrector:
                at = xt if corrector_at_start else x_next  # the bug: slope at the start state
                tc = t_prev if corrector_time is None else corrector_time(t, t_prev)
                d_next = model(at / np.sqrt(1 + s_next**2), tc)
                x_next = xt + (s_next - s) * (0.5 * d + 0.5 * d_next)
            return x_next / np.sqrt(1 + s_next**2)

        return step

    return make


def _verdicts(report):
    return {r.family: r for r in report.results}


# ---------------------------------------------------------------------------------------------
# Correct targets agree


def test_correct_ddim_step_agrees_in_every_family():
    report = check(StepTarget("paper_ddim", "ddim", ddim_factory()), examples=EXAMPLES, derandomize=True)
    assert report.agrees, report.text()
    assert len(report.results) == 4 and all(r.cases == EXAMPLES for r in report.results)
    assert max(r.worst for r in report.results) < 1e-6


def test_correct_ddpm_step_agrees_in_every_family():
    report = check(StepTarget("paper_ddpm", "ddpm", ddpm_factory()), examples=EXAMPLES, derandomize=True)
    assert report.agrees, report.text()


def test_other_time_names_are_mapped_by_label_and_unlabel():
    """A step written in diffusers' τ = t − 1 naming, with its table indexed by τ."""

    def make(cfg):
        inner = ddim_factory()(cfg)

        def step(model, x, tau, tau_prev, z):
            return inner(lambda x_, t: model(x_, t - 1), x, tau + 1, tau_prev + 1, z)

        return step

    target = StepTarget("tau_ddim", "ddim", make, label=lambda t: t - 1, unlabel=lambda s: s + 1)
    report = check(target, examples=6, derandomize=True)
    assert report.agrees, report.text()


@pytest.mark.parametrize("prediction", ["sample", "v_prediction"])
def test_x0_and_v_models_drive_the_same_sampler(prediction):
    """A target whose model predicts x̂_0 or v gets eps_to_prediction's conversion."""

    def make(cfg):
        ab = cfg.alpha_bars
        inner = ddim_factory()(cfg)

        def step(model, x, t, t_prev, z):
            out = model(x, t)
            if prediction == "sample":
                eps = (x - np.sqrt(ab[t]) * out) / np.sqrt(1 - ab[t])
            else:  # v: ε = √ᾱ·v + √(1−ᾱ)·x (Salimans & Ho 2022)
                eps = np.sqrt(ab[t]) * out + np.sqrt(1 - ab[t]) * x
            return inner(lambda x_, t_: eps, x, t, t_prev, z)

        return step

    report = check(StepTarget(f"{prediction}_ddim", "ddim", make, prediction=prediction),
                   examples=6)
    assert report.agrees, report.text()


def test_correct_two_call_heun_step_agrees():
    """A target that calls the model twice per step (Heun's corrector) against spec.edm."""
    report = check(StepTarget("paper_heun", "heun", heun_factory()), examples=EXAMPLES, derandomize=True)
    assert report.agrees, report.text()
    assert len(report.results) == 2 and all(r.cases == EXAMPLES for r in report.results)


def test_heun_claim_states_two_calls_per_step_and_one_into_zero():
    claim = Claim(linear_betas(10, 1e-3, 0.1), (10, 6, 3), 0, EDMHeun())
    assert claim.calls == (10, 6, 6, 3, 3)  # 2n − 1: the step into σ = 0 is Euler's
    assert claim.call_plan == ((0, 10), (0, 6), (1, 6), (1, 3), (2, 3))
    single = Claim(linear_betas(10, 1e-3, 0.1), (10, 6, 3), 0, DDIM())
    assert single.calls == (10, 6, 3) and single.call_plan == ((0, 10), (1, 6), (2, 3))


# ---------------------------------------------------------------------------------------------
# Broken targets are caught, each with a reproduction that names what went wrong


def _caught(target, family_part, *must_contain):
    report = check(target, examples=EXAMPLES, shrink_budget=20, derandomize=True)
    fams = [r for r in report.results if family_part in r.family]
    assert fams, [r.family for r in report.results]
    for r in fams:
        assert not r.agrees, f"{target.name} not caught in {r.family}"
        detail = r.repro.detail
        assert "configuration:" in detail and "spec formula departed from:" in detail
        for text in must_contain:
            assert text in detail, detail
    return fams[0].repro


def test_ddim_to_t_minus_1_instead_of_grid_prev_is_caught():
    target = StepTarget("ddim_t_minus_1", "ddim", ddim_factory(to_prev=lambda t, tp: t - 1))
    repro = _caught(target, "decreasing grid", "first step that parts", "diagnosis: matches Eq. 12")
    m = re.search(r"from t = (\d+) to t_prev = (\d+) instead of the grid's t_prev = (\d+)",
                  repro.detail)
    assert m, repro.detail
    t, wrong, right = map(int, m.groups())
    assert wrong == t - 1 and right < t - 1  # the diagnosis names exactly the planted bug


def test_ddpm_with_beta_instead_of_beta_tilde_is_caught():
    target = StepTarget("ddpm_beta", "ddpm", ddpm_factory(variance="beta"))
    repro = _caught(target, "every step", "matches the step with σ² = β_t instead of σ² = β̃_t")
    assert "DDPM Algorithm 2" in repro.detail


def test_ddim_model_called_at_the_wrong_time_is_caught():
    target = StepTarget("ddim_time_off_by_one", "ddim",
                        ddim_factory(model_time=lambda t: t - 1))
    _caught(target, "strided", "model calls: the target evaluated the model at t = ")


def test_ddim_that_ignores_eta_is_caught():
    target = StepTarget("ddim_no_eta", "ddim", ddim_factory(eta_scale=0.0))
    _caught(target, "η ∈", "Eq. 16")


def test_ddim_missing_square_root_is_caught():
    target = StepTarget("ddim_no_sqrt", "ddim", ddim_factory(sqrt_prev=False))
    _caught(target, "strided", "first step that parts")


def test_ddim_direction_from_clipped_x0_is_caught():
    target = StepTarget("ddim_clipped_eps", "ddim", ddim_factory(clipped_direction=True))
    _caught(target, "clipped", "clipped to [−1, 1]")


def test_ddpm_noise_on_the_last_step_is_caught():
    target = StepTarget("ddpm_noisy_end", "ddpm", ddpm_factory(noise_last=True))
    _caught(target, "every step")


def test_heun_corrector_at_the_wrong_time_is_caught():
    """The corrector evaluates the model at t (the step's start) instead of t_prev."""
    target = StepTarget("heun_corrector_at_t", "heun", heun_factory(corrector_time=lambda t, tp: t))
    repro = _caught(target, "decreasing grid", "model calls: the target evaluated the model at t = ",
                    "two calls per step", "first step that parts: step 0", "EDM Heun")
    m = re.search(r"evaluated the model at t = \[(\d+), (\d+)", repro.detail)
    assert m and m.group(1) == m.group(2), repro.detail  # the planted bug: t, t instead of t, t_prev


def test_heun_corrector_slope_at_the_start_state_is_caught():
    """Right times, wrong state: the corrector's slope is taken at x̃ instead of the predicted x̃'."""
    target = StepTarget("heun_slope_at_start", "heun", heun_factory(corrector_at_start=True))
    repro = _caught(target, "grid", "first step that parts: step 0", "one-step error")
    assert "model calls" not in repro.detail  # the calls are the claimed ones


def test_heun_without_its_corrector_is_caught():
    """An Euler step sold as Heun: one call per step where the claim has two."""
    target = StepTarget("heun_no_corrector", "heun", heun_factory(corrector=False))
    _caught(target, "grid", "model calls: the target evaluated the model at t = ",
            "the claim calls it at t = ")


def test_a_target_that_raises_or_returns_too_few_states_is_reported():
    def raising(cfg):
        def step(model, x, t, t_prev, z):
            raise RuntimeError("boom")

        return step

    repro = _caught(StepTarget("raises", "ddim", raising), "strided",
                    "the target raised RuntimeError: boom")
    assert math.isinf(repro.loop_err)

    class Short(StepTarget):
        def prepare(self, config):
            run = super().prepare(config)
            full = run.sample
            run.sample = lambda x_T, predict, noise: full(x_T, predict, noise)[:-1]
            return run

    _caught(Short("short", "ddim", ddim_factory()), "strided", "states, the claim has")


# ---------------------------------------------------------------------------------------------
# The pieces: the ε → x_0 / v conversion, the oracle's respacing, the tolerance


@given(st.floats(1e-4, 0.9999), st.integers(0, 2**16))
@settings(max_examples=30)
def test_eps_to_prediction_is_the_closed_form(beta, seed):
    sched = VPSchedule(np.array([beta]))  # ᾱ_1 = 1 − β
    ab = sched.alpha_bar[1]
    rng = np.random.default_rng(seed)
    x0, eps = rng.standard_normal((2, 5))
    x_t = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps  # DDPM Eq. 4
    assert np.allclose(eps_to_prediction(eps, x_t, sched, 1, "epsilon"), eps)
    assert np.allclose(eps_to_prediction(eps, x_t, sched, 1, "sample"), x0, atol=1e-8 / np.sqrt(ab))
    v = eps_to_prediction(eps, x_t, sched, 1, "v_prediction")
    assert np.allclose(v, np.sqrt(ab) * eps - np.sqrt(1 - ab) * x0, atol=1e-8 / np.sqrt(ab))
    assert np.allclose(np.sqrt(ab) * x_t - np.sqrt(1 - ab) * v, x0, atol=1e-8 / np.sqrt(ab))  # Salimans & Ho
    with pytest.raises(ValueError, match="prediction must be one of"):
        eps_to_prediction(eps, x_t, sched, 1, "score")


def test_eps_to_prediction_refuses_x0_at_zero_terminal_snr():
    """ᾱ_T = 0: ε says nothing about x_0, so the spec's conversion raises instead of dividing by 0."""
    sched = VPSchedule(np.array([0.5, 1.0]))  # ᾱ_2 = 0
    x = np.ones(3)
    with pytest.raises(ValueError, match="zero terminal SNR"):
        eps_to_prediction(x, x, sched, 2, "sample")
    assert np.array_equal(eps_to_prediction(x, x, sched, 2, "epsilon"), x)


@pytest.mark.parametrize("betas", [linear_betas(12, 1e-3, 0.2), cosine_betas(9)])
def test_oracle_respaced_every_step_is_spec_ddpm_step(betas):
    """On the grid of every step, the respaced chain is the original one."""
    T = len(betas)
    claim = Claim(betas=betas, grid=tuple(range(T, 0, -1)), end=0, method=DDPM())
    model = NonlinearEps.from_seed(3)
    oracle = SpecOracle(claim, model)
    sched = VPSchedule(betas)
    rng = np.random.default_rng(0)
    for i, t in enumerate(claim.grid):
        x, z = rng.standard_normal((2, 2, 3))
        np.testing.assert_allclose(oracle.step(i, x, z), ddpm_step(sched, model, t, x, z),
                                   rtol=1e-12, atol=1e-12)


def test_oracle_clip_path_equals_eq11_when_nothing_is_clipped():
    """μ̃_t(x_t, x̂_0) (Eq. 7) and Eq. 11's ε-form agree when the clip does not bite."""
    betas = linear_betas(10, 1e-3, 0.05)
    model = NonlinearEps.from_seed(1)
    plain = SpecOracle(Claim(betas, (10, 6, 3, 1), 0, DDPM(clip=False)), model)
    clipped = SpecOracle(Claim(betas, (10, 6, 3, 1), 0, DDPM(clip=True)), model)
    x, z = np.full((1, 4), 0.01), np.ones((1, 4))  # x̂_0 stays well inside [−1, 1]
    for i in range(4):
        # 1e-8: the two forms divide by different safe_div denominators (EPS/β_1 = 1e-9)
        np.testing.assert_allclose(clipped.step(i, x, z), plain.step(i, x, z), rtol=1e-8)


def test_oracle_dpm_solver_reads_the_previous_state_and_its_first_order_steps():
    """DPMSolverPP: step i ≥ 1 is spec.dpm_solver's 2M step with x̂_0 of the state handed in for
    path[i − 1]; a step listed in first_order, and step 0, use no history; the whole loop on a
    grid ending at 0 is dpm_solver_pp_2m_sample."""
    from spec.ddpm import x0_pred
    from spec.dpm_solver import dpm_solver_pp_2m_sample, dpm_solver_pp_2m_step

    betas = linear_betas(20, 1e-3, 0.1)
    sched, model = VPSchedule(betas), NonlinearEps.from_seed(5)
    claim = Claim(betas, (20, 14, 8, 3), 0, DPMSolverPP())
    oracle = SpecOracle(claim, model)
    rng = np.random.default_rng(1)
    x0, x1, z = rng.standard_normal((3, 2, 5))
    two_m = dpm_solver_pp_2m_step(sched, x1, x0_pred(sched, model, x1, 14), 14, 8,
                                  x0_pred(sched, model, x0, 20), 20)
    np.testing.assert_allclose(oracle.step(1, x1, z, x0), two_m, rtol=0, atol=0)
    assert not np.allclose(oracle.step(1, x1, z, x0 + 0.1), two_m)  # the history matters
    with pytest.raises(ValueError, match="needs the state at t = 20"):
        oracle.step(1, x1, z)
    first = SpecOracle(Claim(betas, (20, 14, 8, 3), 0, DPMSolverPP(first_order=(1,))), model)
    np.testing.assert_allclose(first.step(1, x1, z, x0), dpm_solver_pp_2m_step(
        sched, x1, x0_pred(sched, model, x1, 14), 14, 8), rtol=0, atol=0)
    noise = np.zeros((4, 2, 5))
    np.testing.assert_allclose(oracle.final(x0, noise),
                               dpm_solver_pp_2m_sample(sched, model, x0, [20, 14, 8, 3, 0]))
    # the whole loop by steps (first_order given) equals the sampler when nothing extra is listed
    states = [x0]
    for i in range(4):
        states.append(oracle.step(i, states[i], noise[i], states[i - 1] if i else None))
    np.testing.assert_allclose(states[-1], oracle.final(x0, noise), rtol=1e-12, atol=1e-12)


def test_claim_rejects_grids_outside_the_spec():
    betas = linear_betas(5, 1e-3, 0.1)
    with pytest.raises(ValueError, match="strictly decreasing"):
        Claim(betas, (5, 5, 1), 0, DDIM())
    with pytest.raises(ValueError, match="strictly decreasing"):
        Claim(betas, (6, 3), 0, DDIM())
    with pytest.raises(ValueError, match="end must be"):
        Claim(betas, (5, 3), 4, DDIM())


def test_tolerance_bound_adds_the_spec_eps_term():
    betas = linear_betas(4, 1e-5, 0.1)
    ab = VPSchedule(betas).alpha_bar
    claim = Claim(betas, (4, 2, 1), 0, DDIM())
    b = FLOAT64.bound(ab, claim)
    assert b == pytest.approx(1e-8 + 8e-12 / (1 - ab[1]))
    mag = Tolerance(1e-6, "x", magnified=True).bound(ab, claim)
    assert mag == pytest.approx(1e-6 / np.sqrt(ab[4]) + 8e-12 / (1 - ab[1]))
    low = Tolerance(1e-6, "x", magnified=True, cancel=1e-7)
    one = 1e-6 / np.sqrt(ab[4]) + 1e-7 / (1 - ab[1])
    assert low.bound(ab, claim) == pytest.approx(one + 8e-12 / (1 - ab[1]))
    assert low.bound(ab, claim, loop=True) == pytest.approx(3 * one + 8e-12 / (1 - ab[1]))


@pytest.mark.parametrize("error, kind, text", [
    (ValueError("grid has τ = −1"), "deviates", "the target's claim departs from the spec's domain"),
    (OutsideSpec("UniPC's corrector has no spec function"), "outside",
     "the target's claim is outside the spec: UniPC's corrector has no spec function"),
])
def test_run_case_tells_a_claim_outside_the_spec_from_a_departing_one(error, kind, text):
    def bad_prepare(cfg):
        raise error

    class Bad:
        name = "bad"

        def families(self, profile):
            return []

        prepare = staticmethod(bad_prepare)

    r = run_case(Bad(), SpecConfig((0.1,), (1,), 0.0, False, (1,), 0), FLOAT64)
    assert not r.agrees and r.kind == kind and text in r.detail


# ---------------------------------------------------------------------------------------------
# The README example, exactly as printed


def test_readme_example_runs_as_printed():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Checking other implementations", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "the README section has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README example", "exec"), namespace)  # noqa: S102
    assert namespace["report"].agrees


def test_spec_and_runtime_never_import_diffusers():
    root = Path(__file__).resolve().parents[1]
    for pkg in ("spec", "runtime"):
        for path in (root / pkg).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"^\s*(import|from)\s+diffusers\b", text, flags=re.M), path
