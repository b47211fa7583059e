"""Order of accuracy of the spec's ODE samplers, measured against the exact PF-ODE solution of
Gaussian data (the set-up is in `conformance/order.py`), plus the laws that tie them together.

Every entry of the sampler table with an order is measured here with its default options: its
error at t = 0 for N = 32, 64, 128 steps (from `fit_from`), in float64, and the fitted log–log
slope against the number of model evaluations must be within ORDER_TOLERANCE = 0.2 of the order
the table states (1 for DDIM (η = 0), PF-ODE Euler, EDM Euler and flow Euler; 2 for Heun (EDM
and flow form), DPM-Solver++(2M) and (2S); 3 for DPM-Solver++(3M) and UniPC-2). The table's
other orders (UniPC's variants: UniP-p of order p and UniPC-p of order p + 1, p = 1..3, bh1 and
bh2) are measured on the runtime twins (conformance/test_order.py); here every variant is tied
to its twin (equal in float64 on an 8-step grid), which, with the conformance records, carries
those fits over to the spec. The mutant tests show that the check has teeth: a first-order
method posing as second order, and DPM-Solver++(3M) with the reference code's φ_3 coefficient
(half the quadratic term), fail it.
"""

import functools
import math

import numpy as np
import pytest

import spec
from conformance import order
from conformance.order import (
    CASES,
    DEFAULT_CASES,
    errors,
    fitted_order,
    has_order,
    runtime_runner,
    spec_runner,
)
from conformance.tolerances import TOLERANCES


@functools.cache
def spec_points(case):
    """(NFE, error) of the spec sampler of `case` on its fitted N (shared by the tests below)."""
    return errors(spec_runner(case.name, case.options, case.sigma_min), case.steps)


@pytest.mark.parametrize("case", DEFAULT_CASES, ids=lambda c: c.id)
def test_order_of_accuracy(case):
    points = spec_points(case)
    slope = fitted_order(points)
    assert has_order(points, case.order), (
        f"{case.sampler.paper}: fitted order {slope:.3f}, claimed {case.order} "
        f"(± {order.ORDER_TOLERANCE}); points {points}")
    # and the errors really are in the asymptotic regime: each halving of h gains 2^order
    # within a factor 1.5 (never at round-off, never at the σ_min floor)
    gains = [a[1] / b[1] for a, b in zip(points, points[1:], strict=False)]
    assert all(2**case.order / 1.5 < g < 2**case.order * 1.5 for g in gains), gains


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_spec_sampler_is_its_runtime_twin_in_float64(case):
    """The spec sampler with the case's options equals its runtime twin (float64, the same
    set-up, N = 7, the float64 tolerance of the conformance records), so the runtime's fit of
    every variant (conformance/test_order.py) is the spec's too. Seven steps take every branch:
    UniPC's warm-up, full-order and final steps, (2S)'s pairs and its odd last interval."""
    tol = TOLERANCES["float64"]
    _, spec_out = spec_runner(case.name, case.options, case.sigma_min)(7)
    _, runtime_out = runtime_runner(case.name, case.options, case.sigma_min)(7)
    np.testing.assert_allclose(runtime_out, spec_out, rtol=tol.rtol, atol=tol.atol)


def _heun_without_correction(n):
    """Heun with its corrector dropped: Euler's predictor on every step (a mutant)."""
    x, ab = order.start()
    vp = spec.VPLinearSchedule(order.BETA0, order.BETA1)
    model = order._SpecOracle(vp.alpha_bar)
    x_tilde, sigma_max = spec.vp_to_edm(ab, x)
    sigmas = spec.edm_sigmas(n, order.SIGMA_MIN, sigma_max, order.RHO)
    for i in range(n):
        x_tilde = spec.edm_euler_step(vp, model, x_tilde, sigmas[i], sigmas[i + 1])
        if sigmas[i + 1] > 0:
            spec.edm_denoise(vp, model, x_tilde, sigmas[i + 1])  # evaluated, then ignored
    return 2 * n - 1, x_tilde


def _dpm_reusing_current_x0(n):
    """DPM-Solver++(2M) fed the current step's x̂_0 as the 'previous' one (a mutant)."""
    x, ab = order.start()
    sigmas = spec.edm_sigmas(n, order.SIGMA_MIN, spec.vp_to_edm(ab, x)[1], order.RHO)
    sched = spec.VPSchedule(order.discrete_betas(sigmas))
    model = order._SpecOracle(order._table_lookup(sched.alpha_bar))
    t_prev = None
    for t in range(n, 0, -1):
        x0 = spec.x0_pred(sched, model, x, t)
        x = spec.dpm_solver_pp_2m_step(sched, x, x0, t, t - 1, None if t_prev is None else x0,
                                       t_prev)
        t_prev = t
    return n, x


@pytest.mark.parametrize("mutant", [_heun_without_correction, _dpm_reusing_current_x0])
def test_a_first_order_method_posing_as_second_order_fails(mutant):
    points = errors(mutant)
    assert not has_order(points, 2), points
    assert abs(fitted_order(points) - 1) <= order.ORDER_TOLERANCE, points


def test_ddim_is_euler_in_edm_form():
    """DDIM (η = 0) is Euler's method on dx̃/dσ in EDM coordinates (Karras et al. 2022, §3):
    both give x̃' = x̃ + (σ' − σ)·ε̂ on the same noise levels. They agree to 1e-7, not to the
    last bit: EDM reads ᾱ through t = time_of_edm_sigma(σ), DDIM from its table, and both
    divide by √ᾱ + EPS with √ᾱ down to 0.0066 (Euler's own error here is above 1e-3)."""
    for n in (3, 17):
        _, a = spec_runner("ddim")(n)
        _, b = spec_runner("euler")(n)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)


def test_second_order_samplers_converge_to_the_exact_solution():
    """At the order test's largest N, every sampler of order ≥ 2 is within 5e-3 of the exact
    x_0 (|x_0| ~ 1; the first-order ones are at 1e-2 to 3e-2 there)."""
    for case in DEFAULT_CASES:
        if case.order >= 2:
            assert spec_points(case)[-1][1] < 5e-3, (case.id, spec_points(case))


def test_dpm_solver_first_and_last_steps_are_first_order():
    """On a 1-step grid DPM-Solver++(2M) is DDIM; on any grid its last step (into ᾱ_0 = 1) lands
    exactly on x̂_0 of the last nonzero time."""
    sched = spec.VPSchedule(spec.cosine_betas(20))
    model = order._SpecOracle(order._table_lookup(sched.alpha_bar))
    x = np.random.default_rng(1).standard_normal((1, 3, 3))
    np.testing.assert_allclose(spec.dpm_solver_pp_2m_sample(sched, model, x, [20, 0]),
                               spec.ddim_sample_strided(sched, model, x, [20, 0]), atol=1e-12)
    x0 = spec.x0_pred(sched, model, x, 5)
    out = spec.dpm_solver_pp_2m_step(sched, x, x0, 5, 0, x0 + 1.0, 9)
    np.testing.assert_allclose(out, x0, atol=1e-12)


def test_dpm_solver_is_exact_for_a_point_mass():
    """Data = one point μ: x̂_0 = μ all along the trajectory, so the integral of Lu et al.'s
    Eq. 9 is exact for every step (first, multistep and final) and the output is μ."""
    mu = 0.7
    sched = spec.VPSchedule(spec.linear_betas(50, 1e-4, 0.2))
    ab = sched.alpha_bar

    def eps(x, t_norm):
        a = ab[round(t_norm * 50)]
        return (x - math.sqrt(a) * mu) / math.sqrt(1 - a)

    model = spec.model.FunctionEpsModel(eps)
    x = np.full((1, 2, 2), 0.3)
    out = spec.dpm_solver_pp_2m_sample(sched, model, x, [50, 31, 17, 8, 3, 0])
    np.testing.assert_allclose(out, mu, atol=1e-10)


def test_half_log_snr_endpoints_and_value():
    import runtime.dpm_solver as rt

    np.testing.assert_array_equal(spec.half_log_snr(np.array([0.0, 1.0])), [-np.inf, np.inf])
    assert rt.half_log_snr(0.0) == -math.inf and rt.half_log_snr(1.0) == math.inf
    assert spec.half_log_snr(0.5) == 0.0
    np.testing.assert_allclose(spec.half_log_snr(0.8), 0.5 * math.log(4.0), rtol=1e-15)


def test_edm_sigmas_formula_and_endpoints():
    sig = spec.edm_sigmas(5, 0.002, 80.0)
    assert sig[0] == pytest.approx(80.0, rel=1e-14) and sig[4] == pytest.approx(0.002, rel=1e-12)
    assert sig[5] == 0.0 and np.all(np.diff(sig) < 0)
    mid = (80.0 ** (1 / 7) + 0.5 * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7  # i/(N−1) = ½
    assert sig[2] == pytest.approx(mid, rel=1e-14)
    np.testing.assert_allclose(spec.edm_sigmas(1, 0.1, 2.0), [2.0, 0.0], rtol=1e-14, atol=0)


@pytest.mark.parametrize("sch", [spec.VPLinearSchedule(), spec.VPCosineSchedule()],
                         ids=["linear", "cosine"])
def test_time_of_edm_sigma_inverts_the_schedule(sch):
    for t in (0.0, 1e-4, 0.05, 0.5, 0.9, 0.999):
        ab = sch.alpha_bar(t)
        sigma = math.sqrt((1 - ab) / ab)  # (vp_to_edm's safe_div would add EPS/ᾱ ≈ 2e-8)
        assert sch.time_of_edm_sigma(sigma) == pytest.approx(t, rel=1e-9, abs=1e-12)


def test_vp_edm_round_trip():
    x = np.random.default_rng(2).standard_normal((2, 3))
    x_tilde, sigma = spec.vp_to_edm(0.3, x)
    ab, back = spec.edm_to_vp(sigma, x_tilde)
    # safe_div's EPS = 1e-12 in x/(√ᾱ + EPS) and (1 − ᾱ)/(ᾱ + EPS): a few 1e-12 relative
    assert ab == pytest.approx(0.3, rel=1e-11, abs=0)
    np.testing.assert_allclose(back, x, rtol=1e-11)
    assert sigma == pytest.approx(math.sqrt(0.7 / 0.3), rel=1e-11, abs=0)


def _dpm_3m_with_reference_phi3(n):
    """DPM-Solver++(3M) with the third-order term of the authors' code and diffusers:
    −√ᾱ_n·φ_3·D2, φ_3 = φ_2/h − ½, D2 = h²·d2, i.e. half the spec's (h² − 2(h + E))·d2."""
    x, ab = order.start()
    sigmas = spec.edm_sigmas(n, order.HIGH_ORDER_SIGMA_MIN, spec.vp_to_edm(ab, x)[1], order.RHO)
    sched = spec.VPSchedule(order.discrete_betas(sigmas))
    model = order._SpecOracle(order._table_lookup(sched.alpha_bar))
    lam = spec.half_log_snr(sched.alpha_bar)
    m, ts = [], list(range(n, -1, -1))
    for i in range(1, n + 1):
        t, t_next = ts[i - 1], ts[i]
        m.append(spec.x0_pred(sched, model, x, t))
        q = min(3, i, n + 1 - i)
        if q < 3:
            prev = (m[-2], ts[i - 2]) if q == 2 else (None, None)
            x = spec.dpm_solver_pp_2m_step(sched, x, m[-1], t, t_next, *prev)
            continue
        h, h0, h1 = lam[t_next] - lam[t], lam[t] - lam[ts[i - 2]], lam[ts[i - 2]] - lam[ts[i - 3]]
        r0, r1 = h0 / h, h1 / h
        d1_0, d1_1 = (m[-1] - m[-2]) / r0, (m[-2] - m[-3]) / r1
        D1, D2 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1), (d1_0 - d1_1) / (r0 + r1)
        phi1 = np.expm1(-h)
        phi2 = phi1 / h + 1
        phi3 = phi2 / h - 0.5
        a_n, s_n, s_t = (math.sqrt(sched.alpha_bar[t_next]), math.sqrt(1 - sched.alpha_bar[t_next]),
                         math.sqrt(1 - sched.alpha_bar[t]))
        x = s_n / s_t * x - a_n * phi1 * m[-1] + a_n * phi2 * D1 - a_n * phi3 * D2
    return n, x


def test_dpm_solver_3m_with_the_reference_phi3_is_second_order():
    """The authors' code and diffusers halve the quadratic term of (3M): their update is exact
    only for x̂_0 linear in λ, and measures order 2 where the spec's measures 3."""
    points = errors(_dpm_3m_with_reference_phi3, (64, 128, 256))
    assert not has_order(points, 3), points
    # each halving of h gains ~4 (2.98, 3.59 measured: order 2 approached from below; 0.94
    # from N = 32 to 64, where the error is still pre-asymptotic)
    gains = [a[1] / b[1] for a, b in zip(points, points[1:], strict=False)]
    assert all(4 / 1.5 < g < 4 * 1.5 for g in gains), gains


def _quadratic_in_lambda_history(sched, times, x_shape, rng):
    """x̂_0(λ) = a + b·λ + c·λ² at the given times (a, b, c random arrays)."""
    a, b, c = (rng.standard_normal(x_shape) for _ in range(3))
    lam = spec.half_log_snr(sched.alpha_bar)
    return [a + b * lam[t] + c * lam[t] ** 2 for t in times], (a, b, c), lam


def test_dpm_solver_3m_integrates_a_quadratic_exactly():
    """For x̂_0 quadratic in λ (the same on the whole step), (3M)'s update equals the exact
    solution of DPM-Solver++ Eq. 9, x_n = (σ_n/σ_t)·x_t + σ_n·∫ e^λ·x̂_0(λ) dλ, here integrated
    in closed form: ∫ e^λ·λ^k dλ for k = 0, 1, 2."""
    sched = spec.VPSchedule(spec.cosine_betas(30))
    rng = np.random.default_rng(3)
    (m2, m1, m0), (a, b, c), lam = _quadratic_in_lambda_history(sched, [20, 14, 9], (2, 3), rng)
    x = rng.standard_normal((2, 3))
    out = spec.dpm_solver_pp_3m_step(sched, x, m0, 9, 4, m1, 14, m2, 20)

    def antiderivative(v):  # ∫ e^v·(a + b·v + c·v²) dv
        return np.exp(v) * (a + b * (v - 1) + c * (v**2 - 2 * v + 2))

    ab_t, ab_n = sched.alpha_bar[9], sched.alpha_bar[4]
    s_t, s_n = math.sqrt(1 - ab_t), math.sqrt(1 - ab_n)
    exact = s_n / s_t * x + s_n * (antiderivative(lam[4]) - antiderivative(lam[9]))
    np.testing.assert_allclose(out, exact, rtol=1e-10, atol=1e-12)


def test_unip_2_with_bh2_is_dpm_solver_pp_2m_and_unip_3_is_3m():
    """UniP-2 with B(h) = e^{−h} − 1 and ρ = ½ is DPM-Solver++(2M)'s step; UniP-3 (the solved
    Vandermonde system, either B(h)) integrates the quadratic through three x̂_0 exactly, which
    is the spec's (3M) step (and not the reference code's)."""
    sched = spec.VPSchedule(spec.linear_betas(40, 1e-4, 0.05))
    rng = np.random.default_rng(4)
    x, m0, m1, m2 = (rng.standard_normal((1, 3, 3)) for _ in range(4))
    np.testing.assert_allclose(spec.unip_step(sched, x, [m1, m0], [25, 17], 9, "bh2"),
                               spec.dpm_solver_pp_2m_step(sched, x, m0, 17, 9, m1, 25),
                               rtol=1e-12, atol=1e-12)
    for variant in spec.UNIPC_VARIANTS:
        np.testing.assert_allclose(spec.unip_step(sched, x, [m2, m1, m0], [31, 25, 17], 9, variant),
                                   spec.dpm_solver_pp_3m_step(sched, x, m0, 17, 9, m1, 25, m2, 31),
                                   rtol=1e-10, atol=1e-10)


def test_unipc_and_dpm_solver_pp_2s_are_exact_for_a_point_mass():
    """Data = one point μ: x̂_0 = μ on every trajectory, so every exponential-integrator step
    (predictor, corrector, singlestep) is exact and the output is μ."""
    mu = -0.4
    sched = spec.VPSchedule(spec.linear_betas(50, 1e-4, 0.2))
    ab = sched.alpha_bar

    def eps(x, t_norm):
        a = ab[round(t_norm * 50)]
        return (x - math.sqrt(a) * mu) / math.sqrt(1 - a)

    model = spec.model.FunctionEpsModel(eps)
    x = np.full((1, 2, 2), 0.9)
    grid = [50, 37, 31, 17, 8, 3, 0]
    for p in (1, 2, 3):
        for variant in spec.UNIPC_VARIANTS:
            out = spec.unipc_sample(sched, model, x, grid, order=p, variant=variant)
            np.testing.assert_allclose(out, mu, atol=1e-10)
    np.testing.assert_allclose(spec.dpm_solver_pp_2s_sample(sched, model, x, grid), mu, atol=1e-10)
    np.testing.assert_allclose(spec.dpm_solver_pp_3m_sample(sched, model, x, grid), mu, atol=1e-10)


def test_dpm_solver_pp_2s_pairs_grid_intervals():
    """(2S) on [τ0, τ1, τ2] is one step through τ1; on a one-interval grid it is DDIM."""
    sched = spec.VPSchedule(spec.cosine_betas(20))
    model = order._SpecOracle(order._table_lookup(sched.alpha_bar))
    x = np.random.default_rng(5).standard_normal((1, 3, 3))
    np.testing.assert_allclose(spec.dpm_solver_pp_2s_sample(sched, model, x, [15, 7, 0]),
                               spec.dpm_solver_pp_2s_step(sched, model, x, 15, 7, 0), atol=0)
    np.testing.assert_allclose(spec.dpm_solver_pp_2s_sample(sched, model, x, [15, 0]),
                               spec.ddim_sample_strided(sched, model, x, [15, 0]), atol=1e-12)
