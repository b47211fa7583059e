"""Check implementations we did not write against the spec.

    python -m conformance.external diffusers                      # table, exit 0/1
    python -m conformance.external diffusers --report findings.md # the same as Markdown
    python -m conformance.external diffusers --expect conformance/external/expected_deviations.toml
    python -m conformance.external diffusers --case '{"scheduler": "DDIMScheduler", ...}'

Exit status: 0 when every family agrees (with --expect: when the deviations are exactly the
recorded ones), 1 on a deviation (with --expect: on any difference), 2 on bad usage.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from runtime.plumbing.cli import ArgumentParser, fail, run_main  # noqa: E402

EXPECTED = os.path.join(os.path.dirname(__file__), "expected_deviations.toml")


def load_expected(path: str) -> tuple[str, set[tuple[str, str]], dict[tuple[str, str], str]]:
    """(diffusers version, {(target, family)}, reasons) from an expectations file."""
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        fail(f"{path}: not valid TOML: {exc}")
    entries = data.get("deviation", [])
    found, reasons = set(), {}
    for k, e in enumerate(entries):
        if not {"target", "family", "reason"} <= set(e):
            fail(f"{path}: deviation #{k + 1} needs target, family and reason, got {sorted(e)}")
        found.add((e["target"], e["family"]))
        reasons[(e["target"], e["family"])] = e["reason"]
    return str(data.get("diffusers", "")), found, reasons


def compare_expected(found: set[tuple[str, str]], expected: set[tuple[str, str]]) -> list[str]:
    """Lines describing how the findings differ from the recorded ones (empty when equal)."""
    lines = [f"new deviation (not in the expectations file): {t} × {f}"
             for t, f in sorted(found - expected)]
    lines += [f"recorded deviation no longer occurs: {t} × {f}" for t, f in sorted(expected - found)]
    return lines


def diffusers_report(profile: str, examples: int, family: str | None, shrink_budget: int):
    """Run every diffusers family (and the schedule rows) and return the Report."""
    import torch

    from conformance.external.check import Report, check_family
    from conformance.external.diffusers_config import PINNED, installed_version
    from conformance.external.diffusers_rows import grid_results, karras_results, schedule_results
    from conformance.external.diffusers_scope import SCOPE
    from conformance.external.diffusers_targets import all_targets

    torch.set_num_threads(1)  # tiny tensors: thread hand-off costs more than the arithmetic
    results = []
    for target in all_targets():
        for fam in target.families(profile):
            if family and family not in fam.name:
                continue
            results.append(check_family(target, fam, examples, shrink_budget))
    if not family or "beta_schedule" in family:
        results += schedule_results(profile, examples)
    results += [r for r in grid_results(profile, examples) if not family or family in r.family]
    if not family or family in "use_karras_sigmas vs spec.edm.edm_sigmas (ρ = 7)":
        results += [r for r in karras_results(profile, examples) if not family or family in r.family]
    if family and not results:
        fail(f"--family {family!r} matches no configuration family; the table without --family "
             "lists them (e.g. 'leading', 'trailing', 'beta_schedule')")
    version = installed_version()
    note = "" if version == PINNED else f" (pinned: {PINNED})"
    return Report(results, title=f"diffusers {version}{note} against the spec ({profile} profile, "
                                 f"{examples} configurations per family)", scope=SCOPE)


def run_one_case(text: str) -> int:
    """Rerun one diffusers configuration (JSON from a reproduction) and print the comparison."""
    from conformance.external.check import run_case
    from conformance.external.diffusers_config import FLOAT32, DiffusersConfig
    from conformance.external.diffusers_targets import TARGETS
    from conformance.external.targets import FLOAT64

    try:
        cfg = DiffusersConfig.from_json(text)
    except (ValueError, TypeError, KeyError) as exc:
        fail(f"--case: not a diffusers configuration: {exc}")
    if cfg.scheduler not in TARGETS:
        fail(f"--case: scheduler must be one of {', '.join(TARGETS)}, got {cfg.scheduler!r}")
    tol = FLOAT64 if cfg.tables == "float64" else FLOAT32
    target = TARGETS[cfg.scheduler]()
    r = run_case(target, cfg, tol)
    if r.agrees:
        print(f"agrees: whole-loop error {r.loop_err:.3g}, largest one-step error "
              f"{max(r.step_errs, default=0.0):.3g} ({len(r.step_errs)} steps)")
        return 0
    print(r.detail)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(
        prog="python -m conformance.external",
        description="Check implementations we did not write against the spec: a table of "
        "scheduler × configuration family, agrees or deviates (largest error relative to the "
        "sample's scale), with a minimal reproduction for each deviation.",
    )
    p.add_argument("target", choices=["diffusers"], help="what to check (diffusers' DDIM, DDPM, "
                   "Euler, Heun and DPM-Solver multistep schedulers; for your own step function "
                   "see README, 'Checking other implementations')")
    p.add_argument("--profile", choices=["small", "full"], default="full",
                   help="small: T ≤ 40 (make test); full: T ≤ 1000 (default)")
    p.add_argument("--examples", type=int, default=None,
                   help="configurations drawn per family (default: 6 small, 25 full)")
    p.add_argument("--family", default=None, help="only the families whose name contains this")
    p.add_argument("--report", metavar="FILE.md", default=None,
                   help="also write the table and reproductions as Markdown to FILE.md")
    p.add_argument("--expect", metavar="FILE", default=None, nargs="?", const=EXPECTED,
                   help="exit 0 when the deviations are exactly those recorded in FILE (default "
                   "file: conformance/external/expected_deviations.toml), 1 otherwise")
    p.add_argument("--case", metavar="JSON", default=None,
                   help="rerun one configuration printed by a reproduction and exit")
    p.add_argument("--shrink-budget", type=int, default=60,
                   help="evaluations spent shrinking a deviation to a minimal one (default 60)")
    args = p.parse_args(argv)
    examples = args.examples if args.examples is not None else (6 if args.profile == "small" else 25)
    if examples < 1:
        fail(f"--examples must be >= 1, got {examples}")
    if args.shrink_budget < 0:
        fail(f"--shrink-budget must be >= 0, got {args.shrink_budget}")
    if args.report is not None:
        parent = os.path.dirname(os.path.abspath(args.report))
        if not os.path.isdir(parent):
            fail(f"--report: folder {parent} does not exist")
    expected = load_expected(args.expect) if args.expect else None
    from conformance.external.diffusers_config import installed_version

    if installed_version() is None:
        fail("diffusers is not installed (make install installs the pinned version)")
    if args.case is not None:
        return run_one_case(args.case)
    start = time.monotonic()
    report = diffusers_report(args.profile, examples, args.family, args.shrink_budget)
    print(report.text())
    print(f"({time.monotonic() - start:.0f} s)")
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(report.text(markdown=True))
        print(f"wrote {args.report}")
    if expected is None:
        return 0 if report.agrees else 1
    version, recorded, _ = expected
    from conformance.external.diffusers_config import installed_version as iv

    if args.family:
        recorded = {(t, f) for t, f in recorded if args.family in f}
    diff = compare_expected(report.deviations(), recorded)
    if version and version != iv():
        diff.insert(0, f"the expectations are for diffusers {version}; installed: {iv()}")
    for line in diff:
        print(line)
    if not diff:
        print(f"findings match {args.expect}")
    return 1 if diff else 0


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
