"""diffusers' schedulers against the spec, on the pinned diffusers version.

`test_findings_match_the_expectations_file` is the make-test check of issue "conformance for
implementations we did not write": every configuration family runs (small profile, once per
session: the module-scoped `small_report`, which the report and JSON tests read too) and the
findings, with their verdicts, must equal conformance/external/expected_deviations.toml in both
directions, so a diffusers upgrade shows up as a diff of that file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers", reason="diffusers is the `external` extra; make install installs it")

from conformance.external.__main__ import main  # noqa: E402
from conformance.external.check import run_case  # noqa: E402
from conformance.external.diffusers_config import (  # noqa: E402
    PINNED,
    DiffusersConfig,
    build_scheduler,
    dpm_step_orders,
    final_time,
    installed_version,
    scheduler_class,
    spec_time,
)
from conformance.external.diffusers_families import (  # noqa: E402
    direction_radicand_negative,
    trailing_extra,
)
from conformance.external.diffusers_rows import (  # noqa: E402
    linspace_tie,
    trailing_misround,
)
from conformance.external.diffusers_targets import (  # noqa: E402
    TARGETS,
    DPMSolverTarget,
    EulerTarget,
    HeunTarget,
)
from conformance.external.expectations import (  # noqa: E402
    Expectations,
    Expected,
    compare,
    load_expectations,
)
from conformance.external.suite import DIFFUSERS_EXPECTED as EXPECTED  # noqa: E402
from conformance.external.suite import load_suite, run_suite  # noqa: E402
from conformance.external.tables import check_sigmas, check_timesteps  # noqa: E402
from conformance.external.targets import FLOAT32, FLOAT64, FLOW32  # noqa: E402
from runtime.plumbing.cli import UserError  # noqa: E402
from spec.schedule import VPSchedule, linear_betas  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def cfg(**kw) -> DiffusersConfig:
    base = dict(scheduler="DDIMScheduler", T=20, beta_schedule="linear", beta_start=1e-4,
                beta_end=0.2, n=5, spacing="leading", shape=(2, 1, 3, 3), seed=4)
    base.update(kw)
    return DiffusersConfig(**base)


@pytest.fixture(scope="module")
def small_report():
    """Every family of the diffusers suite, small profile, 3 derandomized configurations each
    (the draws that find every recorded finding), shrunk within 20 evaluations: run once."""
    return run_suite(load_suite("diffusers"), "small", 3, shrink_budget=20, derandomize=True)


def test_pinned_version_is_installed_and_recorded():
    version = load_expectations(EXPECTED).versions["diffusers"]
    assert installed_version() == PINNED == version
    assert f"diffusers=={PINNED}" in (ROOT / "constraints.txt").read_text().splitlines()


def test_alphas_cumprod_tau_is_spec_alpha_bar_at_tau_plus_one():
    """The time map, read from the spec: alphas_cumprod[τ] = ᾱ_{τ+1}, not ᾱ_τ."""
    s = build_scheduler(cfg(T=50, n=50))
    ref = VPSchedule(linear_betas(50, 1e-4, 0.2)).alpha_bar
    taus = np.arange(50)
    ab = s.alphas_cumprod.numpy()
    np.testing.assert_allclose(ab, ref[[spec_time(t) for t in taus]], rtol=1e-5)
    assert not np.allclose(ab, ref[taus], rtol=1e-3)
    assert final_time(True) == 0 and ref[final_time(True)] == 1.0
    assert final_time(False) == 1 and ab[0] == pytest.approx(ref[1], rel=1e-6)


def test_tables_cast_to_float64_hold_the_same_values():
    s32, s64 = build_scheduler(cfg(tables="float32")), build_scheduler(cfg())
    assert str(s64.alphas_cumprod.dtype) == "torch.float64"
    assert np.array_equal(s64.alphas_cumprod.numpy(), s32.alphas_cumprod.double().numpy())


@pytest.mark.parametrize("tables", ["float64", "float32"])
def test_stable_diffusion_like_ddim_agrees(tables):
    """T = 1000, scaled_linear 0.00085–0.012, leading + steps_offset 1, set_alpha_to_one False."""
    c = cfg(T=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, n=50,
            steps_offset=1, set_alpha_to_one=False, clip=False, tables=tables, shape=(1, 2, 4, 4))
    r = run_case(TARGETS["DDIMScheduler"](), c, FLOAT64 if tables == "float64" else FLOAT32)
    assert r.agrees, r.detail
    assert len(r.step_errs) == 50


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_small_log"])
def test_ddpm_every_step_agrees_with_spec_ddpm_sample(variance):
    c = cfg(scheduler="DDPMScheduler", T=30, n=30, variance_type=variance)
    r = run_case(TARGETS["DDPMScheduler"](), c, FLOAT64)
    assert r.agrees, r.detail
    # float64 on both sides: what remains is the spec's safe_div guard, EPS/(1 − ᾱ_1) = EPS/β_1
    # relatively on the last step's posterior mean (DDPM Eq. 7), well below the family tolerance
    from spec.core import EPS

    assert r.loop_err < 2 * EPS / c.beta_start + 1e-9


def test_ddim_linspace_deviation_is_reproduced_and_diagnosed():
    c = cfg(T=10, n=4, spacing="linspace")  # grid τ = 9, 6, 3, 0; step() strides by 10 // 4 = 2
    assert [int(t) for t in build_scheduler(c).timesteps] == [9, 6, 3, 0]
    r = run_case(TARGETS["DDIMScheduler"](), c, FLOAT64)
    assert not r.agrees and r.first == 0
    assert "prev = τ − T // n = 7" in r.detail
    assert "diagnosis: matches Eq. 12 from t = 10 to t_prev = 8 instead of the grid's t_prev = 7" in r.detail
    assert "DDIM Eq. 12" in r.detail and "--case '" in r.detail


def test_trailing_grid_with_an_extra_minus_one():
    assert trailing_extra(17, 7) and not trailing_extra(17, 8)
    c = cfg(T=17, n=7, spacing="trailing")
    taus = [int(t) for t in build_scheduler(c).timesteps]
    assert len(taus) == 8 and taus[-1] == -1
    r = run_case(TARGETS["DDIMScheduler"](), c, FLOAT64)
    assert not r.agrees and "τ = [-1]" in r.detail


def test_ddpm_fixed_large_noise_on_the_last_step_is_diagnosed():
    c = cfg(scheduler="DDPMScheduler", T=12, n=3, spacing="trailing", variance_type="fixed_large")
    r = run_case(TARGETS["DDPMScheduler"](), c, FLOAT64)
    assert not r.agrees and r.first == 2
    assert "where Algorithm 2 sets z = 0 at t = 1" in r.detail


def test_findings_match_the_expectations_file(small_report):
    """Every family (small profile, derandomized): findings == the recorded ones, verdicts too."""
    expected = load_expectations(EXPECTED)
    diff = compare(small_report.findings(), expected)
    assert not diff, "\n".join(diff)
    families = {(r.target, r.family) for r in small_report.results}
    assert set(expected.entries) <= families  # every recorded entry names a family that exists
    for r in small_report.results:
        if not r.agrees:
            assert expected.reason(r.target, r.family)
            assert r.repro is not None and "configuration:" in r.repro.detail


def test_the_four_verdicts_are_told_apart(small_report):
    """A target that raises or returns NaN, an option with no spec function and a departure
    each get their own verdict, table cell, report section and JSON value."""
    kinds = {(r.target, r.family): r.kind for r in small_report.results}
    assert kinds[("DDPMScheduler", "fixed_large_log, n ≥ 2")] == "failed"  # NaN
    assert kinds[("EulerDiscreteScheduler",
                  "linspace, (n − 1) ∤ (T − 1) (non-integer timesteps)")] == "outside"
    assert kinds[("DDIMScheduler", "linspace, 1 < n < T")] == "deviates"
    text = small_report.text()
    assert "outside the spec" in text and "target failed" in text
    for heading in ("Deviations (minimal reproductions)", "Target failures",
                    "Outside the spec (no spec function; the reason)"):
        assert heading in text
    data = json.loads(small_report.to_json())
    assert {r["verdict"] for r in data["results"]} == {"agrees", "deviates", "outside", "failed"}
    assert data["counts"]["outside"] == sum(k == "outside" for k in kinds.values())


def test_compare_reports_both_directions_and_changed_verdicts():
    expected = Expectations({("A", "x"): Expected("deviates", "r"), ("B", "gone"): Expected("failed", "r"),
                             ("C", "y"): Expected("deviates", "r")})
    lines = compare({("A", "x"): "deviates", ("A", "new"): "outside", ("C", "y"): "failed"}, expected)
    assert lines == ["new finding (not in the expectations file): A × new: outside",
                     "changed verdict: C × y: failed, recorded deviates",
                     "recorded finding no longer occurs: B × gone (failed)"]
    assert compare({("A", "x"): "deviates"}, expected, only={("A", "x")}) == []


def test_command_expects_the_shipped_file_by_default(tmp_path, capsys):
    """diffusers: exit 0 with the shipped expectations (no flag needed in CI), 1 with
    --no-expect; --report and --json carry the verdicts."""
    report, out_json = tmp_path / "r.md", tmp_path / "r.json"
    args = ["diffusers", "--profile", "small", "--examples", "2", "--family",
            "linspace, 1 < n < T", "--shrink-budget", "5", "--derandomize"]
    assert main([*args, "--report", str(report), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "linspace, 1 < n < T" in out and "deviates" in out and "findings match" in out
    md = report.read_text(encoding="utf-8")
    assert md.startswith("# diffusers ") and "| target | configuration family |" in md
    assert "### DDIMScheduler × linspace, 1 < n < T" in md
    data = json.loads(out_json.read_text(encoding="utf-8"))
    assert [r["verdict"] for r in data["results"]] == ["deviates"]
    assert data["expectations"]["differences"] == []
    assert main([*args, "--no-expect"]) == 1


def test_command_reruns_one_case(capsys):
    assert main(["diffusers", "--case", cfg(T=10, n=4, spacing="linspace").to_json()]) == 1
    assert "first step that parts: step 0" in capsys.readouterr().out
    assert main(["diffusers", "--case", cfg().to_json()]) == 0
    assert capsys.readouterr().out.startswith("agrees")
    with pytest.raises(UserError, match="--case"):
        main(["diffusers", "--case", "{not json"])
    with pytest.raises(UserError, match="--examples"):
        main(["diffusers", "--examples", "0"])
    with pytest.raises(UserError, match="--family 'nope' matches no configuration family"):
        main(["diffusers", "--family", "nope", "--profile", "small"])


def test_bad_usage_exits_2_with_one_line():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "conformance.external", "nonsense"], cwd=ROOT,
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2
    assert p.stderr.startswith("error: ") and len(p.stderr.strip().splitlines()) == 1
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("scheduler", ["DDIMScheduler", "DDPMScheduler"])
def test_steps_offset_with_n_equal_t_really_raises_in_diffusers(scheduler):
    """The README's claim for the 'steps_offset=1, n = T' rows, checked on diffusers itself."""
    import torch

    s = build_scheduler(cfg(scheduler=scheduler, T=4, n=4, steps_offset=1))
    assert [int(t) for t in s.timesteps] == [4, 3, 2, 1]
    x = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    with pytest.raises(IndexError):
        s.step(x, s.timesteps[0], x)


# ---------------------------------------------------------------------------------------------
# rescale_betas_zero_snr (Lin et al. 2023, Algorithm 1)


@pytest.mark.parametrize("prediction", ["sample", "v_prediction"])
@pytest.mark.parametrize("scheduler", ["DDIMScheduler", "DDPMScheduler"])
def test_zero_terminal_snr_x0_and_v_agree_from_alpha_bar_zero(scheduler, prediction):
    """Trailing grids start at t = T, where ᾱ_T = 0: the x_0/v model runs natively on both sides."""
    c = cfg(scheduler=scheduler, T=20, n=5, spacing="trailing", prediction_type=prediction,
            rescale=True, eta=0.5 if scheduler == "DDIMScheduler" else 0.0)
    target = TARGETS[scheduler]()
    run = target.prepare(c)
    assert run.claim.grid[0] == 20
    assert build_scheduler(c).alphas_cumprod[-1].item() == 0.0  # SNR(T) = 0
    r = run_case(target, c, FLOAT64)
    assert r.agrees, r.detail
    assert r.loop_err < 1e-9


def test_zero_terminal_snr_eps_claim_is_outside_the_spec():
    c = cfg(T=20, n=5, spacing="trailing", prediction_type="epsilon", rescale=True)
    r = run_case(TARGETS["DDIMScheduler"](), c, FLOAT64)
    assert not r.agrees and r.kind == "outside"
    assert "outside the spec" in r.detail and "ε-prediction" in r.detail


def test_zero_terminal_snr_wrong_v_step_is_caught():
    """A target that reads v as ε at ᾱ = 0 (x̂_0 = −v̂ there, not (x − ε̂)/0) is reported."""
    c = cfg(T=20, n=5, spacing="trailing", prediction_type="v_prediction", rescale=True)
    target = TARGETS["DDIMScheduler"]()
    run = target.prepare(c)
    inner = run.sample

    def broken(x_T, predict, noise):
        return inner(x_T, lambda x, t: -predict(x, t), noise)  # v with the wrong sign

    run.sample = broken
    target.prepare = lambda _cfg: run
    r = run_case(target, c, FLOAT64)
    assert not r.agrees and r.first == 0, r.detail


# ---------------------------------------------------------------------------------------------
# The grid: scheduler.timesteps against spec.timestep_grid


def grid_check(scheduler: str, T: int, n: int, spacing: str, steps_offset: int = 0):
    """The public timesteps check on a diffusers scheduler (Heun's interleaved list read as its grid)."""
    s = scheduler_class(scheduler)(num_train_timesteps=T, timestep_spacing=spacing,
                                   steps_offset=steps_offset)
    return check_timesteps(s, n, spacing, read=TARGETS[scheduler].grid)


@pytest.mark.parametrize("scheduler", ["DDIMScheduler", "DDPMScheduler"])
def test_grid_rows_compare_timesteps_plus_one_with_timestep_grid(scheduler):
    # Lin et al. 2023 Table 2 (T = 1000, n = 10): trailing 1000, 900, …, 100; leading 901, …, 1
    assert grid_check(scheduler, 1000, 10, "trailing").agrees
    assert grid_check(scheduler, 1000, 10, "leading").agrees
    shifted = grid_check(scheduler, 1000, 10, "leading", 1)
    assert shifted.kind == "deviates" and shifted.loop_err == 10  # every entry one too late
    tie = grid_check(scheduler, 4, 3, "linspace")
    assert not tie.agrees and "[4, 3, 1]" in tie.detail and "[4, 2, 1]" in tie.detail
    extra = grid_check(scheduler, 17, 7, "trailing")
    assert not extra.agrees and extra.first == 7  # the (n+1)-th entry, τ = −1


@pytest.mark.parametrize("scheduler", ["EulerDiscreteScheduler", "HeunDiscreteScheduler"])
def test_grid_rows_read_euler_and_heun_grids(scheduler):
    """Heun's interleaved [τ_0, τ_1, τ_1, …] is read as its grid τ_0, τ_1, …; Euler's as is;
    their unrounded linspace (T = 4, n = 3: τ = 3, 1.5, 0) is outside a discrete grid."""
    assert grid_check(scheduler, 1000, 10, "trailing").agrees
    assert grid_check(scheduler, 1000, 10, "leading").agrees
    shifted = grid_check(scheduler, 1000, 10, "leading", 1)
    assert not shifted.agrees and shifted.loop_err == 10  # every entry one too late
    assert grid_check(scheduler, 4, 3, "linspace").kind == "outside"


def test_grid_families_are_split_by_the_rounding_case():
    assert linspace_tie(4, 3) and not linspace_tie(4, 4) and not linspace_tie(10, 1)
    assert trailing_misround(7, 6) and not trailing_misround(1000, 10)
    assert trailing_extra(17, 7) and not trailing_extra(1000, 10)


# ---------------------------------------------------------------------------------------------
# EulerDiscreteScheduler against spec.edm's Euler step


def test_euler_leading_agrees_with_spec_edm_euler():
    c = cfg(scheduler="EulerDiscreteScheduler", T=30, n=6, spacing="leading", tables="float32")
    target = EulerTarget()
    run = target.prepare(c)
    assert run.claim.grid == (26, 21, 16, 11, 6, 1) and run.claim.end == 0
    r = run_case(target, c, FLOAT32)
    assert r.agrees, r.detail
    assert len(r.step_errs) == 6


def test_euler_with_the_model_at_tau_instead_of_t_is_caught():
    """The time map matters: a model fed τ (not t = τ + 1) is reported at the first step."""
    c = cfg(scheduler="EulerDiscreteScheduler", T=30, n=6, spacing="leading", tables="float32")
    target = EulerTarget()
    run = target.prepare(c)
    inner = run.sample
    run.sample = lambda x_T, predict, noise: inner(x_T, lambda x, t: predict(x, t - 1), noise)
    target.prepare = lambda _cfg: run
    r = run_case(target, c, FLOAT32)
    assert not r.agrees and r.first == 0, r.detail
    assert "model calls" in r.detail


# ---------------------------------------------------------------------------------------------
# HeunDiscreteScheduler against spec.edm's Heun step (two model calls per step)


def heun_cfg(**kw) -> DiffusersConfig:
    return cfg(scheduler="HeunDiscreteScheduler", T=30, n=6, spacing="leading", tables="float32",
               **kw)


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
def test_heun_agrees_with_spec_edm_heun_and_calls_the_model_2n_minus_1_times(prediction):
    c = heun_cfg(prediction_type=prediction)
    s = _scheduler(c)
    taus = [int(t) for t in s.timesteps]
    assert taus == [25, 20, 20, 15, 15, 10, 10, 5, 5, 0, 0]  # diffusers' interleaved list
    run = HeunTarget().prepare(c)
    assert run.claim.grid == (26, 21, 16, 11, 6, 1) and run.claim.end == 0
    assert list(run.claim.calls) == [spec_time(t) for t in taus]  # 2n − 1 calls, last one Euler
    r = run_case(HeunTarget(), c, FLOAT32)
    assert r.agrees, r.detail
    assert len(r.step_errs) == 6


def _scheduler(c: DiffusersConfig):
    s = scheduler_class(c.scheduler)(**c.kwargs())
    s.set_timesteps(c.n)
    return s


def test_heun_loop_that_caches_the_model_by_timestep_is_caught():
    """A broken loop around diffusers that caches the model's output by timestep: the interleaved
    list repeats τ_{i+1}, so step i + 1's predictor reuses step i's corrector output (computed
    on the predicted x̃', not on the new state). Step 0 is right; step 1 parts."""
    c = heun_cfg()
    target = HeunTarget()
    run = target.prepare(c)
    inner = run.sample

    def stale(x_T, predict, noise):
        last = {}

        def model(x, t):
            if last.get("t") == t:  # the same τ as the call before: reuse its output
                return last["out"]
            last.update(t=t, out=predict(x, t))
            return last["out"]

        return inner(x_T, model, noise)

    run.sample = stale
    target.prepare = lambda _cfg: run
    r = run_case(target, c, FLOAT32)
    assert not r.agrees and r.first == 1, r.detail
    assert "model calls: the target evaluated the model at t = [26, 21, 16," in r.detail
    assert "EDM Heun" in r.detail and "then at τ = 15 (spec t = 16)" in r.detail
    assert r.step_errs[0] < 1e-5  # the first step, whose calls were all made, still agrees


# ---------------------------------------------------------------------------------------------
# DPMSolverMultistepScheduler against spec.dpm_solver (DPM-Solver++(2M), multistep state)


def dpm_cfg(**kw) -> DiffusersConfig:
    base = dict(scheduler="DPMSolverMultistepScheduler", T=30, n=5, spacing="trailing",
                tables="float32")
    base.update(kw)
    return cfg(**base)


@pytest.mark.parametrize("kw", [
    dict(), dict(prediction_type="v_prediction"), dict(prediction_type="sample", spacing="linspace"),
    dict(final_sigmas_type="sigma_min"), dict(final_sigmas_type="sigma_min", lower_order_final=False),
    dict(final_sigmas_type="sigma_min", euler_at_final=True, n=20, T=40),
    dict(final_sigmas_type="sigma_min", spacing="leading", n=4, T=9),  # grid ends at t = 2
    dict(solver_order=1), dict(spacing="leading", n=29),
])
def test_dpm_solver_agrees_with_spec_dpm_solver(kw):
    c = dpm_cfg(**kw)
    r = run_case(DPMSolverTarget(), c, FLOAT32)
    assert r.agrees, r.detail
    assert len(r.step_errs) == len(_scheduler(c).timesteps)


def test_dpm_solver_claims_map_the_final_step_options():
    t = DPMSolverTarget()
    zero = t.prepare(dpm_cfg()).claim
    assert zero.end == 0 and zero.method.first_order == ()  # into ᾱ = 1: first order in the spec
    smin = t.prepare(dpm_cfg(final_sigmas_type="sigma_min")).claim
    assert smin.end == 1 and smin.method.first_order == (4,)  # lower_order_final, n = 5 < 15
    assert t.prepare(dpm_cfg(final_sigmas_type="sigma_min", n=15)).claim.method.first_order == ()
    assert t.prepare(dpm_cfg(final_sigmas_type="sigma_min", n=15, euler_at_final=True)
                     ).claim.method.first_order == (14,)
    assert t.prepare(dpm_cfg(solver_order=1)).claim.method.first_order == (1, 2, 3, 4)


def test_dpm_solver_wrong_order_claims_are_caught():
    """The checks see the multistep combination and lower_order_final: claiming the other order
    at one step is reported at that step."""
    c = dpm_cfg(final_sigmas_type="sigma_min")  # last step first order by lower_order_final
    second = DPMSolverTarget()
    second.first_order = lambda cfg, n: ()  # claims a second-order last step
    r = run_case(second, c, FLOAT32)
    assert not r.agrees and r.first == 4, r.detail
    assert "order 1" in r.detail  # diffusers' own account of that step
    first = DPMSolverTarget()
    first.first_order = lambda cfg, n: tuple(range(1, n))  # claims DPM-Solver++(1) throughout
    r = run_case(first, dpm_cfg(), FLOAT32)
    assert not r.agrees and r.first == 1, r.detail
    assert "with model_outputs[-2] from τ = 29" in r.detail


@pytest.mark.parametrize("spacing, T, error", [("linspace", 10, "nan"), ("leading", 2, IndexError)])
def test_dpm_solver_n_equal_t_really_fails_in_diffusers(spacing, T, error):
    """The README's claim for the DPM 'n = T' rows, checked on diffusers itself."""
    import torch

    c = dpm_cfg(spacing=spacing, T=T, n=T)
    s = _scheduler(c)
    taus = [int(t) for t in s.timesteps]
    assert len(set(taus)) < len(taus)  # a τ repeats
    x = torch.linspace(-1, 1, 4)
    if error == "nan":
        for tau in s.timesteps:
            x = s.step(torch.tanh(x), tau, x).prev_sample
        assert torch.isnan(x).all()
    else:
        with pytest.raises(IndexError):
            for tau in s.timesteps:
                x = s.step(torch.tanh(x), tau, x).prev_sample


@pytest.mark.parametrize("kw", [
    dict(n=5), dict(n=16), dict(n=5, lower_order_final=False, final_sigmas_type="sigma_min"),
    dict(n=6, euler_at_final=True, final_sigmas_type="sigma_min"), dict(n=4, solver_order=2),
])
def test_dpm_step_orders_are_the_orders_step_takes(kw):
    """dpm_step_orders (the claim's orders) against the update diffusers' step() really calls."""
    import torch

    c = dpm_cfg(**{"solver_order": 3, "spacing": "leading", **kw})
    s = _scheduler(c)
    taken = []
    for q, name in enumerate(("dpm_solver_first_order_update", "multistep_dpm_solver_second_order_update",
                              "multistep_dpm_solver_third_order_update"), start=1):
        update = getattr(s, name)
        setattr(s, name, lambda *a, q=q, update=update, **k: (taken.append(q), update(*a, **k))[1])
    x = torch.linspace(-1, 1, 4)
    for tau in s.timesteps:
        x = s.step(torch.tanh(x), tau, x).prev_sample
    orders = dpm_step_orders(c.solver_order, c.lower_order_final, c.euler_at_final,
                             c.final_sigmas_type, len(s.timesteps))
    assert tuple(taken) == orders
    assert orders[:3] == ((1, 2, 3) if c.solver_order == 3 else (1, 2, 2))


def test_dpm_solver_3m_departs_by_the_halved_quadratic_term_only():
    """solver_order=3 (the recorded case): its steps of order 1 and 2 agree with the spec; its
    first third-order step parts, by the spec's (3M) step with the quadratic term halved, the
    reference code's φ_3·D2 (docs/errata.md §4)."""
    c = dpm_cfg(T=10, n=4, spacing="leading", beta_start=1e-5, beta_end=0.25, solver_order=3,
                lower_order_final=False, shape=(1, 1, 1, 1), seed=0)
    assert DPMSolverTarget().prepare(c).claim.method.orders == (1, 2, 3, 1)
    r = run_case(DPMSolverTarget(), c, FLOAT32)
    assert r.kind == "deviates" and r.first == 2, r.detail
    assert max(r.step_errs[:2] + r.step_errs[3:]) < 1e-5 < 1e-2 < r.step_errs[2]
    assert "diagnosis: matches the third-order step with its quadratic term halved" in r.detail
    assert "model_outputs[-3] from τ = 8" in r.detail  # diffusers' own account of step 2


# ---------------------------------------------------------------------------------------------
# use_karras_sigmas: the σ's against spec.edm.edm_sigmas


@pytest.mark.parametrize("scheduler", ["EulerDiscreteScheduler", "HeunDiscreteScheduler",
                                       "DPMSolverMultistepScheduler"])
def test_karras_sigmas_agree_with_spec_edm_sigmas_and_another_rho_is_caught(scheduler, monkeypatch):
    import conformance.external.tables as tables

    kw = dict(num_train_timesteps=40, beta_schedule="scaled_linear", beta_start=0.00085,
              beta_end=0.012, timestep_spacing="leading")
    cls, target = scheduler_class(scheduler), TARGETS[scheduler]

    def karras():
        if target.karras_from_table:  # DPM: σ_min, σ_max of the table
            return check_sigmas(cls(**kw, use_karras_sigmas=True), 7, "karras")
        return check_sigmas(cls(**kw, use_karras_sigmas=True), 7, "karras_grid", plain=cls(**kw),
                            grid=target.grid, sigma_grid=target.sigma_grid)

    assert karras().agrees
    rho7 = tables.edm_sigmas
    monkeypatch.setattr(tables, "edm_sigmas", lambda n, lo, hi: rho7(n, lo, hi, rho=5.0))
    r = karras()
    assert r.kind == "deviates" and "Karras et al. 2022, Eq. 5" in r.detail
    assert "use_karras_sigmas=True" in r.detail


@pytest.mark.parametrize("scheduler", ["EulerDiscreteScheduler", "HeunDiscreteScheduler",
                                       "EulerAncestralDiscreteScheduler"])
def test_vp_sigmas_of_diffusers_agree_through_the_public_check(scheduler):
    """Their σ's are the VP σ of their float32 table at t = τ + 1, then 0, within 4u."""
    target = TARGETS[scheduler]
    for spacing in ("leading", "trailing"):
        s = scheduler_class(scheduler)(num_train_timesteps=30, timestep_spacing=spacing,
                                       beta_schedule="squaredcos_cap_v2")
        r = check_sigmas(s, 6, "vp", grid=target.grid, sigma_grid=target.sigma_grid)
        assert r.agrees and 0 < r.loop_err <= 1, r.detail


@pytest.mark.parametrize("scheduler", ["FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler"])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_shift_of_diffusers_agrees_through_the_public_check(scheduler, shift):
    """SD3's shift of an evenly spaced grid. Its σ_min is shifted at construction and again in
    set_timesteps, which only moves where that grid ends (u_{n−1} = time_shift(1/T, s))."""
    from conformance.external import heun_sigma_grid
    from spec.flow import time_shift

    read = heun_sigma_grid if "Heun" in scheduler else list
    s = scheduler_class(scheduler)(num_train_timesteps=1000, shift=shift)
    r = check_sigmas(s, 9, "flow_shift", sigma_grid=read)
    assert r.agrees and r.loop_err <= 1, r.detail
    last = time_shift(float(s.sigmas[-2]), 1 / shift)  # the u its last σ shifts
    assert abs(last - time_shift(1e-3, shift)) < 1e-6


def test_guide_table_checks_run_as_printed():
    """docs/external.md's table-check block on diffusers' Euler: three agreements."""
    import re

    text = (ROOT / "docs" / "external.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S)
                 if b.startswith("# table checks"))
    namespace: dict = {}
    exec(compile(block, "table checks", "exec"), namespace)  # noqa: S102
    assert [namespace[k].kind for k in ("grid", "sigmas", "karras")] == ["agrees"] * 3
    assert namespace["grid"].loop_err == 0 and namespace["sigmas"].loop_err <= 1


def test_recorded_reproductions_still_deviate(capsys):
    """Every `case` in the expectations file reruns (--case) as a deviation of its own target."""
    entries = [(key, e) for key, e in load_expectations(EXPECTED).entries.items() if e.case]
    assert len(entries) >= 5  # Heun, DPM and DDIM's η = 1 under zero terminal SNR record theirs
    for (target, family), e in entries:
        assert DiffusersConfig.from_json(e.case).scheduler == target
        assert main(["diffusers", "--case", e.case]) == 1, family
        out = capsys.readouterr().out
        assert out.startswith("configuration: "), out
        assert out.rstrip().endswith(f"verdict: {e.verdict}"), out


def test_ddim_eta_one_at_zero_terminal_snr_really_gives_nan():
    """The README's claim for the η = 1 row, on diffusers itself: the radicand rounds below 0."""
    import torch

    c = cfg(T=4, n=2, spacing="trailing", beta_schedule="scaled_linear",
            beta_start=0.0005336135899964241, beta_end=0.25, eta=1.0, prediction_type="sample",
            set_alpha_to_one=False, rescale=True)
    assert direction_radicand_negative(c)
    s = build_scheduler(c)
    x = torch.full((1, 1, 2, 2), 0.5, dtype=torch.float64)
    out = s.step(x, s.timesteps[0], x, eta=1.0, variance_noise=torch.zeros_like(x)).prev_sample
    assert torch.isnan(out).all()
    assert not direction_radicand_negative(cfg(T=4, n=2, spacing="trailing", eta=0.5, rescale=True))


# ---------------------------------------------------------------------------------------------
# FlowMatchEulerDiscreteScheduler: the rebuilt grid's σ_min, custom grids, shift_terminal at n = 1


def flow_cfg(**kw) -> DiffusersConfig:
    base = dict(scheduler="FlowMatchEulerDiscreteScheduler", T=10, n=4, spacing="leading",
                tables="float32", shape=(1, 1, 2, 2), seed=3)
    base.update(kw)
    return cfg(**base)


def test_flow_match_rebuilt_grid_shifts_sigma_min_twice():
    """At n = T the spec's grid is the scheduler's own table; set_timesteps(T) ends at σ_min
    shifted twice (outside the spec: a choice of grid), twice called the same; with σ_min
    shifted once it would be the spec's grid exactly, which check_sigmas' flow_grid accepts."""
    import torch

    import spec.flow
    from conformance.external import heun_sigma_grid

    F = scheduler_class("FlowMatchEulerDiscreteScheduler")
    s = F(num_train_timesteps=10, shift=3.0)
    np.testing.assert_allclose(s.sigmas.numpy(), spec.flow.flow_sigmas(10, 3.0)[:-1], rtol=1e-6)
    r = check_sigmas(s, 10, "flow_grid")
    assert r.kind == "outside" and "σ_min is shifted twice" in r.detail, r.detail
    twice = spec.flow.time_shift(spec.flow.time_shift(0.1, 3.0), 3.0)
    assert s.sigmas[-2].item() == pytest.approx(twice, rel=1e-6) and twice == pytest.approx(0.5)
    first = s.sigmas.clone()
    s.set_timesteps(10)
    assert torch.equal(s.sigmas, first)  # rebuilding again gives the same grid
    s.sigma_min = 0.1  # σ_min unshifted: the rebuilt grid is the spec's (and its table)
    assert check_sigmas(s, 10, "flow_grid").agrees
    H = scheduler_class("FlowMatchHeunDiscreteScheduler")
    assert check_sigmas(H(num_train_timesteps=10), 10, "flow_grid", sigma_grid=heun_sigma_grid).agrees
    dynamic = F(num_train_timesteps=10, use_dynamic_shifting=True)  # s = e^μ, its table unshifted
    assert check_sigmas(dynamic, 10, "flow_grid", mu=float(np.log(3.0))).agrees


def test_flow_match_custom_timesteps_call_the_model_at_another_sigma():
    """Custom timesteps are used as given while their σ's are shifted: the model is called at a
    σ that is not the state's (shift ≠ 1). Custom sigmas alone are shifted by Eq. 23 and agree."""
    import spec.flow

    target = TARGETS["FlowMatchEulerDiscreteScheduler"]()
    grid = (1.0, 0.6, 0.3)
    timesteps = ("timesteps", tuple(10 * v for v in grid))
    for custom, shift, kind in (((timesteps,), 3.0, "deviates"), ((timesteps,), 1.0, "agrees"),
                                ((("sigmas", grid), timesteps), 3.0, "deviates"),
                                ((("sigmas", grid),), 3.0, "agrees")):
        c = flow_cfg(n=3, options=(("shift", shift),), custom=custom)
        r = run_case(target, c, FLOW32)
        assert r.kind == kind, (custom, shift, r.detail)
    assert "t = −1: a flow target's model time is a σ none of the claim's σ's" in run_case(
        target, flow_cfg(n=3, options=(("shift", 3.0),), custom=(timesteps,)), FLOW32).detail
    claim = target.prepare(flow_cfg(n=3, options=(("shift", 3.0),), custom=(("sigmas", grid),))).claim
    from conformance.external.oracle import SpecOracle

    o = SpecOracle(claim, None)
    np.testing.assert_allclose([o.flow_sigma(t) for t in claim.grid],
                               spec.flow.time_shift(np.array(grid), 3.0), rtol=1e-6)


def test_flow_match_shift_terminal_with_one_step_fails_where_the_spec_is_finite():
    import torch

    c = flow_cfg(n=1, options=(("shift_terminal", 0.5),))
    s = TARGETS["FlowMatchEulerDiscreteScheduler"]().adapter(c).build(
        TARGETS["FlowMatchEulerDiscreteScheduler"].scheduler_config(c))
    assert torch.isnan(s.sigmas[0]) and s.sigmas[1] == 0 and torch.isnan(s.timesteps[0])
    r = run_case(TARGETS["FlowMatchEulerDiscreteScheduler"](), c, FLOW32)
    assert r.kind == "failed" and "IndexError" in r.detail, r.detail
    assert "σ=1 (its sigmas[0] = nan" in r.detail  # the claim: spec.flow.flow_sigmas(1, 1, 0.5)


def test_flow_sigma_one_rounded_up_in_float32_is_read_as_one():
    """A float32 shift of σ = 1 can round to 1 + 2^-23 (shift 1.9907…, T = 1000): the rounding of
    an exact 1, read as σ = 1 (SIGMA_ONE_FLOAT32), so both flow schedulers agree; a σ_0 farther
    above 1 is still refused."""
    from conformance.external.scheduler_target import SIGMA_ONE_FLOAT32

    options = (("shift", 1.990745372686343),)
    for scheduler in ("FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler"):
        c = flow_cfg(scheduler=scheduler, T=1000, n=1, options=options)
        target = TARGETS[scheduler]()
        assert float(target.adapter(c).build(target.scheduler_config(c)).sigmas[0]) == 1 + 2.0**-23
        r = run_case(target, c, FLOW32)
        assert r.kind == "agrees", r.detail
    target = TARGETS["FlowMatchEulerDiscreteScheduler"]()
    c = flow_cfg(n=2, options=(("shift", 2.0),))
    adapter, sc = target.adapter(c), target.scheduler_config(c)
    s = adapter.build(sc)
    s.sigmas[0] = 1.0 + 4 * (SIGMA_ONE_FLOAT32 - 1.0)
    with pytest.raises(ValueError, match="not a strictly decreasing grid in"):
        adapter._prepare_flow(sc, s)


def test_flow_heun_tolerance_models_the_denoiser_form_and_still_catches_a_slip(monkeypatch):
    """diffusers' flow Heun forms D = x_e − σ_next·v̂ and d' = (x_e − D)/σ_next in float32 (Karras
    Algorithm 1's denoiser form): at σ = 0.668 → σ_next = 0.0042 its rounding is magnified by
    |σ − σ_next|/σ_next ≈ 157 (2.4e-6, over the flat 2e-6). FLOW32 adds 8u × that ratio; the
    case agrees, and a 0.1 % slip in the second-stage velocity is still a deviation."""
    from diffusers import FlowMatchHeunDiscreteScheduler

    c = flow_cfg(scheduler="FlowMatchHeunDiscreteScheduler", T=942, n=3,
                 options=(("shift", 2.0),), shape=(2, 3, 2, 1), seed=2)
    target = TARGETS["FlowMatchHeunDiscreteScheduler"]()
    run = target.prepare(c)
    sig = [float(v) for v in target.adapter(c).build(target.scheduler_config(c)).sigmas[::2]]
    from conformance.external.oracle import SpecOracle

    o = SpecOracle(run.claim, None)
    ab = np.asarray(o.sched.alpha_bar)
    ratio = FLOW32.stage_ratio(ab, run.claim)
    assert ratio == pytest.approx((sig[1] - sig[2]) / sig[2], rel=1e-5) and ratio > 150
    assert FLOW32.bound(ab, run.claim) == pytest.approx(2e-6 + 8 * 2.0**-24 * ratio)
    r = run_case(target, c, FLOW32)
    assert r.kind == "agrees" and max(r.step_errs) > 2e-6, r.detail
    step = FlowMatchHeunDiscreteScheduler.step

    def slipped(self, model_output, timestep, sample, *args, **kwargs):
        if not self.state_in_first_order:
            model_output = model_output * (1 + 1e-3)
        return step(self, model_output, timestep, sample, *args, **kwargs)

    monkeypatch.setattr(FlowMatchHeunDiscreteScheduler, "step", slipped)
    assert run_case(target, c, FLOW32).kind == "deviates"


def test_unipc_flow_sigmas_steps_are_spec_unipc_and_only_the_model_time_is_truncated(monkeypatch):
    """use_flow_sigmas (the claim flow_unipc): as shipped the model is called at τ = ⌊σ·T⌋ (the
    recorded deviation: no claimed σ); fed σ·T unrounded, every step is spec.unipc under
    spec.flow's exact VP ↔ flow map, third order and a shift included."""
    c = cfg(scheduler="UniPCMultistepScheduler", T=40, n=5, prediction_type="flow_prediction",
            tables="float32", shape=(1, 1, 2, 2), seed=3,
            options=(("flow_shift", 3.0), ("solver_order", 3), ("use_flow_sigmas", True)))
    target = TARGETS["UniPCMultistepScheduler"]()
    assert type(target.prepare(c).claim.method).__name__ == "FlowUniPC"
    r = run_case(target, c, FLOW32)
    assert r.kind == "deviates" and "t = −1: a flow target's model time" in r.detail, r.detail
    U = scheduler_class("UniPCMultistepScheduler")
    shipped = U.set_timesteps

    def unrounded(self, *args, **kwargs):
        shipped(self, *args, **kwargs)
        self.timesteps = self.sigmas[:-1].double() * self.config.num_train_timesteps

    monkeypatch.setattr(U, "set_timesteps", unrounded)
    r = run_case(target, c, FLOW32)
    assert r.agrees and len(r.step_errs) == 5 and max(r.step_errs) < 2e-6, r.detail
