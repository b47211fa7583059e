"""The pytest plugin (entry point `pytest11: diffspec`): each configuration family a test.

    pytest --diffspec-target mylib.conformance:targets --diffspec-expect findings.toml
    pytest --diffspec-scheduler mylib.sched:MyScheduler --diffspec-claims ddim
    pytest --diffspec-target diffusers --junitxml=diffspec.xml

Each family of each target becomes one test item, `<target> × <family>`. A family that agrees
passes. A finding recorded in the expectations file with the same verdict is an xfail (deviates,
target failed) or a skip (outside the spec), with the recorded reason; any other finding fails
with its minimal reproduction, and so does a recorded finding that no longer occurs. A recorded
finding whose family is not collected is an item too: a skip naming it when --diffspec-family
left it out, a failure when no family of that name exists (the file is stale, as the command
reports it); so is a version the file pins that is not the installed one. So JUnit XML
(--junitxml) and CI annotations come from pytest itself. The draws are derandomized
(the same configurations on every run) unless --diffspec-seed is given. Without
--diffspec-target or --diffspec-scheduler the plugin adds nothing.

It lives beside `conformance.external`, not inside it, and imports the harness only inside its
hooks: pytest loads every installed plugin before a test suite's conftest.py, and importing
`conformance.external` (hence `spec`) that early would keep this project's conftest from
installing jaxtyping's shape checks on `spec` (tests/test_spec_package.py checks they are on).
"""

from __future__ import annotations

from typing import Any

import pytest


def pytest_addoption(parser: Any) -> None:
    g = parser.getgroup("diffspec", "diffspec: check a sampler against the spec")
    g.addoption("--diffspec-target", metavar="TARGET", default=None,
                help="diffusers, or package.module:attribute (a target, a list, a factory)")
    g.addoption("--diffspec-scheduler", metavar="MODULE:CLASS", default=None,
                help="a class with diffusers' scheduler interface (with --diffspec-claims)")
    g.addoption("--diffspec-claims", metavar="METHOD", default=None,
                help="the spec method the --diffspec-scheduler class computes (ddim, ddpm, ...)")
    g.addoption("--diffspec-grid", action="append", metavar="SPACING", default=None,
                help="with --diffspec-scheduler: a spacing its timesteps claim (repeatable; none)")
    g.addoption("--diffspec-sigmas", action="append", metavar="NAME", default=None,
                help="with --diffspec-scheduler: a σ construction its sigmas claim (vp, karras, "
                "karras_grid, flow_shift; repeatable; none)")
    g.addoption("--diffspec-profile", choices=("small", "full"), default="small",
                help="small: T ≤ 40 (default); full: T ≤ 1000")
    g.addoption("--diffspec-examples", type=int, default=None,
                help="configurations drawn per family (default: the profile's)")
    g.addoption("--diffspec-family", default=None,
                help="only the families whose name contains this")
    g.addoption("--diffspec-expect", metavar="FILE", default=None,
                help="the expectations file (default for diffusers: the shipped one)")
    g.addoption("--diffspec-seed", type=int, default=None,
                help="a hypothesis seed (default: derandomized, the same draws every run)")
    g.addoption("--diffspec-shrink-budget", type=int, default=60,
                help="evaluations spent shrinking a finding (default 60)")


class FamilyItem(pytest.Item):
    """One configuration family of one target, checked when the item runs."""

    def __init__(self, *, target: Any, family: Any, expected: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.target, self.family, self.expected = target, family, expected

    def runtest(self) -> None:
        from conformance.external.check import EXAMPLES, check_family

        opt = self.config.getoption
        n = opt("diffspec_examples") or EXAMPLES[opt("diffspec_profile")]
        seed = opt("diffspec_seed")
        r = check_family(self.target, self.family, n, opt("diffspec_shrink_budget"),
                         derandomize=seed is None, seed=seed)
        e = self.expected
        if r.agrees:
            if e is not None:
                raise FindingError(f"recorded finding no longer occurs ({e.verdict}: {e.reason}); "
                                   "remove it from the expectations file")
            return
        if e is not None and e.verdict == r.kind:
            if r.kind == "outside":
                pytest.skip(f"outside the spec: {e.reason}")
            pytest.xfail(f"{r.kind}: {e.reason}")
        what = f"{r.verdict}" + (f" (recorded: {e.verdict})" if e is not None else
                                 " (not in the expectations file)")
        raise FindingError(f"{what}\n{r.repro.detail if r.repro else ''}")

    def repr_failure(self, excinfo: Any, style: Any = None) -> Any:
        if isinstance(excinfo.value, FindingError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"{self.target.name} × {self.family.name}"


class FindingError(AssertionError):
    """A finding the expectations file does not record (the message: verdict, reproduction)."""


class RecordedItem(pytest.Item):
    """What the expectations file records outside the collected families: a finding of a family
    --diffspec-family left out (skipped, named), or of no family at all, or a version pin that
    is not the installed version (both fail)."""

    def __init__(self, *, outcome: str, message: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.outcome, self.message = outcome, message

    def runtest(self) -> None:
        if self.outcome == "skip":
            pytest.skip(self.message)
        if self.outcome == "fail":
            raise FindingError(self.message)

    def repr_failure(self, excinfo: Any, style: Any = None) -> Any:
        if isinstance(excinfo.value, FindingError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, self.name


def pytest_report_header(config: Any) -> str | None:
    target = config.getoption("diffspec_target") or config.getoption("diffspec_scheduler")
    return f"diffspec: checking {target} against the spec" if target else None


def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    spec = config.getoption("diffspec_target")
    scheduler = config.getoption("diffspec_scheduler")
    if spec is None and scheduler is None:
        return
    from conformance.external.expectations import ExpectationsError, installed, load_expectations
    from conformance.external.suite import SuiteError, load_suite

    def named(values: list[str] | None) -> list[str] | None:
        return None if values is None else [v for v in values if v != "none"]

    try:
        suite = load_suite(spec, scheduler=scheduler, claims=config.getoption("diffspec_claims"),
                           grid=named(config.getoption("diffspec_grid")),
                           sigmas=named(config.getoption("diffspec_sigmas")))
        path = config.getoption("diffspec_expect") or suite.expected
        expected = load_expectations(path) if path else None
    except (SuiteError, ExpectationsError, ValueError) as exc:
        raise pytest.UsageError(f"diffspec: {exc}") from None
    part = config.getoption("diffspec_family")
    families = set()
    for target in suite.targets:
        for fam in target.families(config.getoption("diffspec_profile")):
            families.add((target.name, fam.name))
            if part is not None and part not in fam.name:
                continue
            e = expected.entries.get((target.name, fam.name)) if expected else None
            items.append(FamilyItem.from_parent(session, name=f"{target.name} × {fam.name}",
                                                target=target, family=fam, expected=e))
    if expected is None:
        return
    for (t, f), e in expected.entries.items():
        if (t, f) in families and (part is None or part in f):
            continue
        outcome, message = ("skip", f"recorded {e.verdict} not checked: --diffspec-family {part!r} "
                            f"left it out ({e.reason})") if (t, f) in families else (
            "fail", f"recorded finding no longer occurs: {t} × {f} ({e.verdict}) names no "
            f"configuration family of the suite; remove it from {path} (or the family was renamed)")
        items.append(RecordedItem.from_parent(session, name=f"{t} × {f}", outcome=outcome,
                                              message=message))
    for package, version in sorted(expected.versions.items()):
        got = installed(package)
        items.append(RecordedItem.from_parent(
            session, name=f"{path}: {package} == {version}", outcome="pass" if got == version
            else "fail", message=f"the expectations are for {package} {version}; installed: {got}"))
