"""conformance.external as a tool for other libraries: any target from the command line, the
no-code scheduler adapter (`--scheduler ... --claims ...`) on schedulers written in
tests/external_schedulers.py (correct ones and planted bugs), the four verdicts and the exit
statuses, expectations files, the configuration validator, the pytest plugin, and the guide's
adapters (docs/external.md), run as printed and counted.

No diffusers here: every scheduler is local, so these run in seconds.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from external_schedulers import PaperDDIM, PaperEuler, PaperFlow, StaleSigmaEuler, TwiceShiftedFlow

from conformance.external import (
    CLAIMS,
    KINDS,
    SIGMAS,
    InvalidConfig,
    SchedulerTarget,
    SpecConfig,
    check,
    check_schedule,
    check_sigmas,
    check_timesteps,
    inject_noise,
    load_suite,
    rerun,
    validate_config,
)
from conformance.external.__main__ import main
from runtime.plumbing.cli import UserError

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--profile", "small", "--examples", "3", "--derandomize", "--shrink-budget", "5"]


def scheduler(name: str, claims: str) -> list[str]:
    return ["--scheduler", f"external_schedulers:{name}", "--claims", claims, *SMALL]


@pytest.mark.parametrize("name, claims, status, verdict, parts", [
    ("PaperDDIM", "ddim", 0, "agrees", None),
    ("StrideDDIM", "ddim", 1, "deviates", None),
    ("NaNDDIM", "ddim", 1, "target failed", None),
    ("PaperDPM", "dpmsolver++2m", 0, "agrees", None),
    ("NoHistoryDPM", "dpmsolver++2m", 1, "deviates", None),
    ("ThirdOrderDPM", "dpmsolver++2m", 1, "outside the spec", None),
    ("PaperDPM3M", "dpmsolver++3m", 0, "agrees", None),
    # the halved quadratic term parts at the first third-order step, step 2 (orders 1, 2, 3, …)
    ("HalvedDPM3M", "dpmsolver++3m", 1, "deviates", r"orders=\(1, 2, 3, .*\n"
     r"first step that parts: step 2 of"),
])
def test_a_scheduler_class_is_checked_without_adapter_code(name, claims, status, verdict, parts,
                                                            capsys):
    assert main(scheduler(name, claims)) == status
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(rf"{name}\s{{2,}}\S", line)]
    assert rows and all(verdict in row for row in rows), out
    if status:
        assert "configuration: s = external_schedulers." + name in out
        assert f"--claims {claims} --case '" in out  # the reproduction reruns itself
    if parts:
        assert re.search(parts, out), out


def test_the_reproduction_reruns_with_case(capsys):
    assert main(scheduler("StrideDDIM", "ddim")) == 1
    case = re.search(r"--case '(\{.*?\})'", capsys.readouterr().out).group(1)
    assert main(["--scheduler", "external_schedulers:StrideDDIM", "--claims", "ddim",
                 "--case", case]) == 1
    out = capsys.readouterr().out
    assert out.startswith("configuration: ") and out.rstrip().endswith("verdict: deviates")
    assert main(["--scheduler", "external_schedulers:PaperDDIM", "--claims", "ddim",
                 "--case", case]) == 0
    assert capsys.readouterr().out.startswith("agrees: ")


def test_expectations_record_then_expect_round_trip(tmp_path, capsys):
    """--record writes the findings; with that file --expect exits 0, and a fixed target (a
    recorded finding gone) or a new finding exits 1."""
    rec = tmp_path / "findings.toml"
    target = ["external_schedulers:targets", *SMALL]
    assert main([*target, "--record", str(rec)]) == 1  # third_order_dpm is outside the spec
    text = rec.read_text(encoding="utf-8")
    assert "[[outside]]" in text and 'target = "third_order_dpm"' in text
    assert main([*target, "--expect", str(rec), "--json", str(tmp_path / "r.json")]) == 0
    data = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert {r["verdict"] for r in data["results"]} == {"agrees", "outside"}
    assert data["expectations"]["differences"] == []
    capsys.readouterr()
    rec.write_text(text.replace("[[outside]]", "[[deviates]]"), encoding="utf-8")
    assert main([*target, "--expect", str(rec)]) == 1
    assert "changed verdict: third_order_dpm" in capsys.readouterr().out
    assert main(["--scheduler", "external_schedulers:PaperDPM", "--claims", "dpmsolver++2m",
                 *SMALL, "--expect", str(rec)]) == 1  # recorded findings of other targets: gone


@pytest.mark.parametrize("argv, message", [
    (["no_such_module:x"], "cannot import 'no_such_module'"),
    (["external_schedulers"], "expected package.module:attribute"),
    (["external_schedulers:nothing"], "has no attribute 'nothing'"),
    (["external_schedulers:PaperDDIM"], "not a target"),
    (["--scheduler", "external_schedulers:PaperDDIM"], "--scheduler and --claims go together"),
    (["--scheduler", "external_schedulers:targets", "--claims", "ddim"], "lacks set_timesteps"),
    (["external_schedulers:DictConfigs", *SMALL], "is not hashable"),
    (["external_schedulers:targets", "--expect", "/nonexistent.toml"], "no such expectations file"),
    (["external_schedulers:targets", "--family", "nope", *SMALL], "matches no configuration family"),
    (["external_schedulers:targets", "--grid", "trailing"], "--grid and --sigmas go with --scheduler"),
    (["--scheduler", "external_schedulers:PaperEuler", "--claims", "euler", "--sigmas", "karras"],
     "PaperEuler takes no use_karras_sigmas"),
])
def test_usage_errors_are_one_line(argv, message):
    with pytest.raises(UserError, match=re.escape(message)) as info:
        main(argv)
    assert "\n" not in str(info.value)


def test_bad_usage_exits_2_with_one_line_and_no_traceback():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    p = subprocess.run([sys.executable, "-m", "conformance.external", "--scheduler",
                        "external_schedulers:PaperDDIM", "--claims", "euler-maruyama"],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.startswith("error: ") and len(p.stderr.strip().splitlines()) == 1


def test_validator_says_what_a_configuration_needs():
    validate_config(SpecConfig((0.1,), (1,), 0.0, False, (1, 2), 3))
    for bad, text in [({"seed": 0}, "not hashable"), (SpecConfig((0.1,), (1,), 0.0, False, (), 0), "shape ()"),
                      (SpecConfig((0.1,), (1,), 0.0, False, (1,), "0"), "seed '0'")]:
        with pytest.raises(InvalidConfig, match=re.escape(text)):
            validate_config(bad)


def test_determinism_is_an_argument():
    target = SchedulerTarget("external_schedulers:StrideDDIM", "ddim")
    a, b = (check(target, examples=2, shrink_budget=0, derandomize=True) for _ in range(2))
    assert [r.repro.config for r in a.results] == [r.repro.config for r in b.results]
    c, d = (check(target, examples=2, shrink_budget=0, derandomize=False, seed=7) for _ in range(2))
    assert [r.repro.config for r in c.results] == [r.repro.config for r in d.results]


def test_rerun_of_one_case_is_a_function_too():
    """The public rerun(suite, json): the JSON a reproduction prints, the verdict it had."""
    suite = load_suite(scheduler="external_schedulers:StrideDDIM", claims="ddim")
    case = '{"T": 3, "n": 2, "spacing": null, "shape": [1, 1, 1, 1], "seed": 0}'
    r = rerun(suite, case)
    assert r.kind == "deviates" and r.first == 0 and "first step that parts: step 0" in r.detail
    assert rerun(load_suite(scheduler="external_schedulers:PaperDDIM", claims="ddim"), case).agrees


def test_inject_noise_hands_step_its_noise_both_ways(monkeypatch):
    """As step()'s variance_noise argument, and as its module's randn_tensor for the call only."""
    import external_schedulers
    import torch

    z = torch.full((1, 2), 0.25, dtype=torch.float64)
    with inject_noise(PaperDDIM(), z, {}) as kw:
        assert kw["variance_noise"] is z
    monkeypatch.setattr(external_schedulers, "randn_tensor", lambda shape, **_: None, raising=False)
    with inject_noise(PaperDDIM(), z, {}):
        assert external_schedulers.randn_tensor((1, 2), dtype=torch.float32).dtype == torch.float32
        assert torch.equal(external_schedulers.randn_tensor((1, 2)), z)
        with pytest.raises(ValueError, match=r"noise of shape \(1, 2\) asked for \(3,\)"):
            external_schedulers.randn_tensor((3,))
    assert external_schedulers.randn_tensor((1, 2)) is None  # its own again after the call


def test_every_claim_name_has_a_step_target_kind():
    """One table per concern: a method a scheduler class can claim is also a step-function kind."""
    assert set(CLAIMS) == set(KINDS)


# ---------------------------------------------------------------------------------------------
# A scheduler's tables: timesteps and σ's (conformance.external.tables)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_grid_and_sigma_checks_pass_a_scheduler_written_from_the_papers(spacing):
    # T = 7, n = 6: trailing 7·5/6 = 5.83…, linspace ties 1 + k·6/5; T = 1000, n = 10: Table 2
    for T, n in [(20, 6), (7, 6), (1000, 10), (2, 1)]:
        s = PaperEuler(num_train_timesteps=T, timestep_spacing=spacing)
        grid = check_timesteps(s, n, spacing)
        assert grid.agrees and grid.loop_err == 0 and grid.kind == "agrees"
        sigmas = check_sigmas(s, n, "vp")
        assert sigmas.agrees and 0 <= sigmas.loop_err <= 1, sigmas.detail


def test_a_sigma_one_table_entry_late_deviates_with_its_diagnosis():
    """σ read at alphas_cumprod[t] instead of alphas_cumprod[t − 1]: the grid is still Lin et
    al.'s, every σ is one table entry late, and the reproduction says so."""
    s = StaleSigmaEuler(num_train_timesteps=20, timestep_spacing="leading")
    assert check_timesteps(s, 5, "leading").agrees
    r = check_sigmas(s, 5, "vp")
    assert r.kind == "deviates" and r.first == 0 and r.loop_err > 1e6
    assert "t = τ + 1 = [17, 13, 9, 5, 1]" in r.detail
    assert "diagnosis: the σ's are those of alphas_cumprod[τ + 1] (t = τ + 2)" in r.detail
    assert r.detail.endswith("at t = τ + 1")  # the formula departed from


def test_a_grid_that_floors_where_lin_et_al_round_deviates():
    """PaperDDIM's own trailing grid t_i = ⌊T(n − i)/n⌋ is Table 2's round(T(n − i)/n) only where
    no T(n − i)/n has a fraction ≥ 1/2: T = 7, n = 2 gives t = 7, 3 where the spec has 7, 4."""
    assert check_timesteps(PaperDDIM(num_train_timesteps=1000), 10, "trailing").agrees
    r = check_timesteps(PaperDDIM(num_train_timesteps=7), 2, "trailing")
    assert r.kind == "deviates" and r.loop_err == 1 and r.first == 1
    assert "scheduler.timesteps + 1 = [7, 3]" in r.detail and "= [7, 4]" in r.detail


def test_flow_shift_check_catches_a_shift_applied_twice():
    """SD3 Eq. 23 applied twice is the shift s²: the same σ's at s = 1, others at s = 3."""
    for shift in (1.0, 3.0):
        assert check_sigmas(PaperFlow(100, shift), 8, "flow_shift").agrees
    assert check_sigmas(TwiceShiftedFlow(100, 1.0), 8, "flow_shift").agrees
    r = check_sigmas(TwiceShiftedFlow(100, 3.0), 8, "flow_shift")
    assert r.kind == "deviates" and r.first == 1 and "shift s = 3.0" in r.detail
    assert "(Esser et al. 2024, §5.3.2, Eq. 23)" in r.detail


def test_schedule_check_finds_a_table_one_step_early():
    """alphas_cumprod against spec.linear_betas (float64: u = 2^-53); a table that starts at
    ᾱ = 1 (ᾱ_t stored at τ = t) deviates at its first entry."""
    class EarlyTable(PaperEuler):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            self.alphas_cumprod = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])

    import torch

    r = check_schedule(PaperEuler(num_train_timesteps=50, beta_end=0.2))
    assert r.agrees and r.loop_err <= 1
    r = check_schedule(EarlyTable(num_train_timesteps=50, beta_end=0.2))
    assert r.kind == "deviates" and r.first == 0 and "spec.linear_betas (DDPM §4)" in r.detail


def test_table_checks_give_outside_and_failed_verdicts():
    class Fractional(PaperEuler):  # τ between table entries, as diffusers' unrounded linspace
        def set_timesteps(self, n):
            super().set_timesteps(n)
            self.timesteps = self.timesteps.double() + 0.5

    class Raises(PaperEuler):
        def set_timesteps(self, n):
            raise RuntimeError(f"no grid of {n} steps")

    class NaNSigmas(PaperEuler):
        def sigma(self, t):
            return super().sigma(t) * float("nan")

    assert check_timesteps(Fractional(20), 4, "leading").kind == "outside"
    assert check_sigmas(Fractional(20), 4, "vp").kind == "outside"
    r = check_timesteps(Raises(20), 4, "leading")
    assert r.kind == "failed" and "RuntimeError: no grid of 4 steps" in r.detail
    r = check_sigmas(NaNSigmas(20), 4, "vp")
    assert r.kind == "failed" and "not finite" in r.detail


def test_the_guide_describes_every_sigma_construction():
    """One table, SIGMAS: each of its names has its item in docs/external.md."""
    text = GUIDE.read_text(encoding="utf-8")
    assert all(f"\n- `{name}`: " in text for name in SIGMAS), [n for n in SIGMAS if f"- `{n}`" not in text]


def test_scheduler_suites_carry_rows_for_what_their_tables_claim():
    """Default rows: alphas_cumprod where the class takes beta_schedule, timesteps for each
    spacing it takes (VP tables), sigmas for what its claim reads; --grid / --sigmas name others."""
    def rows(cls, claims, **kw):
        return [t.name for t in load_suite(scheduler=f"external_schedulers:{cls}", claims=claims, **kw).targets]

    assert rows("PaperEuler", "euler") == ["PaperEuler", "PaperEuler.alphas_cumprod",
                                           "PaperEuler.timesteps", "PaperEuler.sigmas"]
    assert rows("PaperEuler", "euler", grid=[], sigmas=[]) == ["PaperEuler", "PaperEuler.alphas_cumprod"]
    assert rows("PaperDDIM", "ddim") == ["PaperDDIM"]
    assert rows("PaperDDIM", "ddim", grid=["trailing"]) == ["PaperDDIM", "PaperDDIM.timesteps"]
    assert rows("PaperFlow", "flow_euler") == ["PaperFlow", "PaperFlow.sigmas"]


def test_scheduler_flag_checks_its_sigmas_and_reruns_a_row(capsys):
    assert main(scheduler("PaperEuler", "euler") + ["--family", "sigmas"]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"^PaperEuler\.sigmas +sigmas: vp, \w+, any n +agrees", out, re.M)) == 3
    assert main(scheduler("StaleSigmaEuler", "euler") + ["--family", "sigmas: vp, leading"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^StaleSigmaEuler\.sigmas +sigmas: vp, leading, any n +deviates", out, re.M)
    case = re.search(r"--case '(\{\"target\": \"StaleSigmaEuler\.sigmas\".*\})'$", out, re.M).group(1)
    assert main(["--scheduler", "external_schedulers:StaleSigmaEuler", "--claims", "euler",
                 "--case", case]) == 1
    out = capsys.readouterr().out
    assert "one table entry off" in out and out.rstrip().endswith("verdict: deviates")
    assert main(["--scheduler", "external_schedulers:PaperEuler", "--claims", "euler",
                 "--case", case.replace("StaleSigmaEuler", "PaperEuler")]) == 0


# ---------------------------------------------------------------------------------------------
# The pytest plugin


def _pytest(tmp_path, *args):
    """pytest in a folder of its own, with the plugin as `make install` installs it: through its
    pytest11 entry point `diffspec` (a second `-p conformance.pytest_plugin` would
    register it twice, which pytest refuses)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "diffspec",
                           "-p", "no:cacheprovider", "--rootdir", str(tmp_path), *args],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)


def test_pytest_plugin_makes_families_tests_and_expected_findings_xfails(tmp_path):
    """One pytest run over a DDIM that steps by T // n (one family recorded, one not) and a
    correct DDIM: JUnit shows two passes, an xfail with the recorded reason and a failure."""
    expect = tmp_path / "findings.toml"
    expect.write_text('[[deviates]]\ntarget = "StrideDDIM"\nfamily = "its own spacing, any n"\n'
                      'reason = "steps by T // n"\n', encoding="utf-8")
    junit = tmp_path / "junit.xml"
    p = _pytest(tmp_path, "--diffspec-target", "external_schedulers:plugin_targets",
                "--diffspec-examples", "3", "--diffspec-shrink-budget", "5",
                "--diffspec-expect", str(expect), f"--junitxml={junit}")
    assert p.returncode == 1, p.stdout  # the η family of StrideDDIM is not recorded
    assert "1 failed, 2 passed, 1 xfailed" in p.stdout, p.stdout
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    xfail = cases["StrideDDIM × its own spacing, any n"].find("skipped")
    assert xfail is not None and "steps by T // n" in xfail.get("message")
    failure = cases["StrideDDIM × its own spacing, any n, η ∈ [0.1, 1]"].find("failure")
    assert failure is not None and "not in the expectations file" in (failure.text or "")
    assert cases["PaperDDIM × its own spacing, any n"].find("failure") is None


def test_pytest_plugin_reports_recorded_findings_it_did_not_run(tmp_path, monkeypatch):
    """In one (in-process) run narrowed by --diffspec-family: a recorded finding that is gone
    fails, one left out by --diffspec-family is a skip naming it, one of a family that does
    not exist fails, and so does a version pin that is not installed."""
    expect = tmp_path / "findings.toml"
    eta = "its own spacing, any n, η ∈ [0.1, 1]"
    expect.write_text(
        'hypothesis = "0.0.1"\n'
        f'[[deviates]]\ntarget = "PaperDDIM"\nfamily = "{eta}"\nreason = "fixed since"\n'
        f'[[deviates]]\ntarget = "StrideDDIM"\nfamily = "{eta}"\nreason = "steps by T // n"\n'
        '[[deviates]]\ntarget = "StrideDDIM"\nfamily = "its own spacing, any n"\nreason = "steps by T // n"\n'
        '[[outside]]\ntarget = "StrideDDIM"\nfamily = "a family since renamed"\nreason = "old"\n',
        encoding="utf-8")
    junit = tmp_path / "junit.xml"
    monkeypatch.chdir(tmp_path)
    status = pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:xdist", "--rootdir", str(tmp_path),
                          "--diffspec-target", "external_schedulers:plugin_targets",
                          "--diffspec-family", "η", "--diffspec-examples", "2",
                          "--diffspec-shrink-budget", "0", "--diffspec-expect", str(expect),
                          f"--junitxml={junit}"])
    assert status == 1
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert len(cases) == 5
    gone = cases[f"PaperDDIM × {eta}"].find("failure")
    assert gone is not None and "recorded finding no longer occurs" in gone.get("message")
    assert cases[f"StrideDDIM × {eta}"].find("skipped").get("type") == "pytest.xfail"
    left_out = cases["StrideDDIM × its own spacing, any n"].find("skipped")
    assert "--diffspec-family 'η' left it out (steps by T // n)" in left_out.get("message")
    renamed = cases["StrideDDIM × a family since renamed"].find("failure")
    assert "names no configuration family" in renamed.get("message")
    pin = cases[f"{expect}: hypothesis == 0.0.1"].find("failure")
    assert "the expectations are for hypothesis 0.0.1; installed: " in pin.get("message")


# ---------------------------------------------------------------------------------------------
# The guide's adapters, as printed, and their length


GUIDE = ROOT / "docs" / "external.md"
ADAPTERS = {"DDIM-like adapter": 20, "multistep adapter": 40}
"""The guide's adapter blocks (the comment on their first line) and the most lines each may have
(issue: a DDIM-like scheduler in ≤ 20 lines through the public API, a multistep one in ≤ 40)."""


@pytest.mark.parametrize("title", list(ADAPTERS))
def test_guide_adapters_run_as_printed_and_stay_short(title):
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S)
    block = next(b for b in blocks if b.startswith(f"# {title}"))
    lines = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) <= ADAPTERS[title], f"{title}: {len(lines)} lines"
    namespace: dict = {}
    exec(compile(block, title, "exec"), namespace)  # noqa: S102
    assert namespace["report"].agrees, namespace["report"].text()
