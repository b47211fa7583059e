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

from conformance.external import (
    CLAIMS,
    KINDS,
    InvalidConfig,
    SchedulerTarget,
    SpecConfig,
    check,
    validate_config,
)
from conformance.external.__main__ import main
from runtime.plumbing.cli import UserError

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--profile", "small", "--examples", "3", "--derandomize", "--shrink-budget", "5"]


def scheduler(name: str, claims: str) -> list[str]:
    return ["--scheduler", f"external_schedulers:{name}", "--claims", claims, *SMALL]


@pytest.mark.parametrize("name, claims, status, verdict", [
    ("PaperDDIM", "ddim", 0, "agrees"),
    ("StrideDDIM", "ddim", 1, "deviates"),
    ("NaNDDIM", "ddim", 1, "target failed"),
    ("PaperDPM", "dpmsolver++2m", 0, "agrees"),
    ("NoHistoryDPM", "dpmsolver++2m", 1, "deviates"),
    ("ThirdOrderDPM", "dpmsolver++2m", 1, "outside the spec"),
])
def test_a_scheduler_class_is_checked_without_adapter_code(name, claims, status, verdict, capsys):
    assert main(scheduler(name, claims)) == status
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(rf"{name}\s{{2,}}\S", line)]
    assert rows and all(verdict in row for row in rows), out
    if status:
        assert "configuration: s = external_schedulers." + name in out
        assert f"--claims {claims} --case '" in out  # the reproduction reruns itself


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


def test_every_claim_name_has_a_step_target_kind():
    """One table per concern: a method a scheduler class can claim is also a step-function kind."""
    assert set(CLAIMS) == set(KINDS)


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
