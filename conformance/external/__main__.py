"""Check implementations we did not write against the spec (docs/external.md is the guide).

    python -m conformance.external diffusers                        # diffusers' schedulers
    python -m conformance.external mylib.conformance:targets        # your targets
    python -m conformance.external --scheduler mylib.sched:MyScheduler --claims ddim
    diffspec-external ...                                           # the same, installed

Every target takes the same options: --profile, --examples, --family, --expect FILE,
--no-expect, --case JSON, --report FILE.md, --json FILE, --seed, --derandomize; --scheduler
also --grid and --sigmas (what its timesteps and sigmas claim).
Exit status (EXIT_STATUS): 0 every family agrees, or the findings are exactly those of the
expectations file; 1 a finding that is not expected, or an expected one that is gone; 2 bad
usage (one line on stderr).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from runtime.plumbing.cli import ArgumentParser, fail, run_main  # noqa: E402

EXIT_STATUS = """\
exit status:
  0    every family agrees, or the findings (deviates / outside the spec / target failed) are
       exactly those of the expectations file (diffusers: the shipped one, by default)
  1    a finding that is not in the expectations file, a recorded one that no longer occurs,
       a changed verdict, or another installed version than the file pins; --case: the case
       does not agree
  2    bad usage: a bad flag, a TARGET that cannot be loaded, a malformed expectations file
       or --case JSON; one line `error: ...` on stderr"""


def parser() -> ArgumentParser:
    from conformance.external.check import EXAMPLES
    from conformance.external.scheduler_target import CLAIMS
    from conformance.external.tables import GRID_SPACINGS, SIGMAS

    p = ArgumentParser(
        prog="python -m conformance.external",
        description="Check a sampler against the spec: a table of target × configuration family "
        "with one of four verdicts (agrees; deviates, with the equation; outside the spec, with "
        "the reason; target failed), and a minimal reproduction for each finding.",
        epilog=EXIT_STATUS,
    )
    p.add_argument("target", nargs="?", default=None, metavar="TARGET",
                   help="diffusers (its DDIM, DDPM, Euler, Heun and DPM-Solver multistep "
                   "schedulers), or package.module:attribute: a target, a list of targets, or a "
                   "factory returning either (docs/external.md)")
    p.add_argument("--scheduler", metavar="MODULE:CLASS", default=None,
                   help="a class with diffusers' scheduler interface, checked without adapter "
                   "code against the method --claims names")
    p.add_argument("--claims", choices=list(CLAIMS), default=None,
                   help="the spec method the --scheduler class computes: " + "; ".join(
                       f"{k}: {c.description}" for k, c in CLAIMS.items()))
    p.add_argument("--grid", action="append", choices=[*GRID_SPACINGS, "none"], default=None,
                   help="with --scheduler: a spacing whose spec.timestep_grid its timesteps claim "
                   "(repeat for several; default: every timestep_spacing the class takes; none: "
                   "no timesteps rows)")
    p.add_argument("--sigmas", action="append", choices=[*SIGMAS, "none"], default=None,
                   help="with --scheduler: a construction its sigmas claim (repeat for several; "
                   "default: vp for the EDM claims, flow_shift for the flow ones; none: no sigmas "
                   "rows): " + "; ".join(f"{k}: {c.description}" for k, c in SIGMAS.items()))
    p.add_argument("--profile", choices=list(EXAMPLES), default="full",
                   help="small: T ≤ 40 (make test); full: T ≤ 1000 (default)")
    p.add_argument("--examples", type=int, default=None,
                   help="configurations drawn per family (default: "
                   + ", ".join(f"{n} {k}" for k, n in EXAMPLES.items()) + ")")
    p.add_argument("--family", default=None, help="only the families whose name contains this")
    p.add_argument("--expect", metavar="FILE", default=None,
                   help="the expectations file: exit 0 when the findings are exactly those it "
                   "records (default for diffusers: the shipped "
                   "conformance/external/expected_deviations.toml; for other targets, none)")
    p.add_argument("--no-expect", action="store_true",
                   help="ignore any expectations file: exit 0 only when every family agrees")
    p.add_argument("--record", metavar="FILE", default=None,
                   help="write the findings as an expectations file to FILE (reasons to edit)")
    p.add_argument("--case", metavar="JSON", default=None,
                   help="rerun one configuration printed by a reproduction and exit")
    p.add_argument("--report", metavar="FILE.md", default=None,
                   help="also write the table and reproductions as Markdown to FILE.md")
    p.add_argument("--json", metavar="FILE", default=None,
                   help="also write the results (verdicts, reproductions, expectation "
                   "differences) as JSON to FILE")
    p.add_argument("--shrink-budget", type=int, default=60,
                   help="evaluations spent shrinking a finding to a minimal one (default 60)")
    p.add_argument("--derandomize", action="store_true",
                   help="draw the same configurations on every run (default: new ones each run)")
    p.add_argument("--seed", type=int, default=None, help="a fixed hypothesis seed")
    return p


def _writable(flag: str, path: str | None) -> None:
    if path is not None and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        fail(f"{flag}: folder {os.path.dirname(os.path.abspath(path))} does not exist")


def _named(values: list[str] | None) -> list[str] | None:
    """A repeated flag's values: None when not given, [] for "none"."""
    return None if values is None else [v for v in values if v != "none"]


def main(argv: Sequence[str] | None = None) -> int:
    import json

    from conformance.external.expectations import (
        ExpectationsError,
        compare,
        installed,
        load_expectations,
        record,
    )
    from conformance.external.suite import SuiteError, load_suite, rerun, run_suite
    from conformance.external.targets import InvalidConfig

    args = parser().parse_args(argv)
    if args.examples is not None and args.examples < 1:
        fail(f"--examples must be >= 1, got {args.examples}")
    if args.shrink_budget < 0:
        fail(f"--shrink-budget must be >= 0, got {args.shrink_budget}")
    if args.expect and args.no_expect:
        fail(f"--expect {args.expect} and --no-expect contradict each other; give one")
    for flag, path in (("--report", args.report), ("--json", args.json), ("--record", args.record)):
        _writable(flag, path)
    try:
        suite = load_suite(args.target, scheduler=args.scheduler, claims=args.claims,
                           grid=_named(args.grid), sigmas=_named(args.sigmas))
        expect = None if args.no_expect else (args.expect or suite.expected)
        expected = load_expectations(expect) if expect else None
        if args.case is not None:
            r = rerun(suite, args.case)
            if r.agrees:
                print(f"agrees: whole-loop error {r.loop_err:.3g}, largest one-step error "
                      f"{max(r.step_errs, default=0.0):.3g} ({len(r.step_errs)} steps)")
                return 0
            print(r.detail)
            print(f"verdict: {r.kind}")
            return 1
        start = time.monotonic()
        report = run_suite(suite, args.profile, args.examples, args.family, args.shrink_budget,
                           derandomize=args.derandomize or None, seed=args.seed)
    except (SuiteError, ExpectationsError, InvalidConfig) as exc:
        fail(str(exc))
    print(report.text())
    print(f"({time.monotonic() - start:.0f} s)")
    diff: list[str] = []
    if expected is not None:
        ran = {(r.target, r.family) for r in report.results} if args.family else None
        diff = compare(report.findings(), expected, only=ran)  # --family: just those run
        for line in diff:
            print(line)
        if not diff:
            print(f"findings match {expect}")
    for path, text in ((args.report, report.text(markdown=True)),
                       (args.record, record(report.results, {p: v for p in expected.versions
                                                              if (v := installed(p))}
                                           if expected else None))):
        if path:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"wrote {path}")
    if args.json:
        data = json.loads(report.to_json())
        data["expectations"] = {"file": expect, "differences": diff} if expected else None
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, ensure_ascii=False)
        print(f"wrote {args.json}")
    if expected is None:
        return 0 if report.agrees else 1
    return 1 if diff else 0


def console() -> None:
    """The `diffspec-external` console script."""
    run_main(main, sys.argv[1:])


if __name__ == "__main__":
    console()
