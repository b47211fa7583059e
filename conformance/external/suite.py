"""What the command and the pytest plugin check: a suite of targets named on the command line.

    load_suite("diffusers")                        # diffusers' schedulers and their rows
    load_suite("mylib.conformance:targets")        # a target, a list of targets, or a factory
    load_suite(scheduler="mylib:MySched", claims="ddim")   # a scheduler class, no adapter code,
                                                           # and the rows of its tables

A suite is its targets, a report title and scope, and its default expectations file (the
findings recorded for it; diffusers ships one). `run_suite` checks every family and returns
the `Report`; `rerun` compares one configuration given as JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from conformance.external.check import (
    EXAMPLES,
    CaseResult,
    Report,
    check_family,
    config_from_json,
    run_case,
)
from conformance.external.scheduler_target import SchedulerTarget, load_object
from conformance.external.targets import FLOAT64

DIFFUSERS_EXPECTED = os.path.join(os.path.dirname(__file__), "expected_deviations.toml")
"""The findings recorded for the pinned diffusers (`make test` checks they are exact)."""


class SuiteError(ValueError):
    """A target named on the command line that cannot be loaded; one line for the user."""


@dataclass
class Suite:
    targets: list[Any]
    title: str
    scope: list[tuple[str, str, str]] = field(default_factory=list)
    expected: str | None = None  # the default expectations file


def _is_target(obj: Any) -> bool:
    return (isinstance(getattr(obj, "name", None), str) and callable(getattr(obj, "families", None))
            and (callable(getattr(obj, "prepare", None)) or callable(getattr(obj, "evaluate", None))))


def diffusers_suite() -> Suite:
    """diffusers' schedulers (`diffusers_targets.TARGETS`) and their schedule, grid and Karras σ
    rows; the shipped expectations file is the default."""
    from conformance.external.diffusers_config import PINNED, installed_version

    version = installed_version()
    if version is None:
        raise SuiteError("diffusers is not installed: pip install 'diffspec[external]' (make "
                         "install installs the pinned version)")
    from conformance.external.diffusers_rows import row_targets
    from conformance.external.diffusers_scope import SCOPE
    from conformance.external.diffusers_targets import all_targets

    note = "" if version == PINNED else f" (pinned: {PINNED})"
    return Suite([*all_targets(), *row_targets()], f"diffusers {version}{note} against the spec",
                 SCOPE, DIFFUSERS_EXPECTED)


def load_suite(spec: str | None = None, *, scheduler: str | None = None,
               claims: str | None = None, grid: Sequence[str] | None = None,
               sigmas: Sequence[str] | None = None) -> Suite:
    """The suite a command line names: "diffusers", "package.module:attribute" (a target, a list
    of targets, or a factory returning either), or a scheduler class and the method it claims,
    with the rows of its tables (`tables.scheduler_rows`; grid: the spacings its timesteps
    claim, sigmas: the σ constructions its sigmas claim, [] for none; None: the defaults)."""
    if scheduler is not None or claims is not None:
        if spec is not None:
            raise SuiteError(f"give a TARGET ({spec!r}) or --scheduler, not both")
        if scheduler is None or claims is None:
            raise SuiteError("--scheduler and --claims go together (e.g. --scheduler "
                             "mylib.sched:MyScheduler --claims ddim)")
        from conformance.external.tables import scheduler_rows

        flags = "".join(f" --grid {g}" for g in grid or ([] if grid is None else ["none"]))
        flags += "".join(f" --sigmas {g}" for g in sigmas or ([] if sigmas is None else ["none"]))
        try:
            target = SchedulerTarget(scheduler, claims)
            rows = scheduler_rows(target, grid, sigmas, rerun="python -m conformance.external "
                                  f"--scheduler {scheduler} --claims {claims}{flags}")
        except ValueError as exc:
            raise SuiteError(f"--scheduler {scheduler} --claims {claims}: {exc}") from None
        return Suite([target, *rows], f"{target.name} (claims {claims}) against the spec")
    if grid is not None or sigmas is not None:
        raise SuiteError("--grid and --sigmas go with --scheduler (they say what its tables claim)")
    if spec is None:
        raise SuiteError("name a TARGET (diffusers, or package.module:attribute) or --scheduler "
                         "package.module:Class --claims METHOD")
    if spec == "diffusers":
        return diffusers_suite()
    try:
        obj = load_object(spec)
    except ValueError as exc:
        raise SuiteError(f"TARGET: {exc}; expected diffusers or package.module:attribute") from None
    if isinstance(obj, type) or (not _is_target(obj) and callable(obj)):
        try:
            obj = obj()  # a factory
        except TypeError as exc:
            raise SuiteError(f"{spec} is neither a target nor a factory callable without "
                             f"arguments: {exc}") from None
    targets = list(obj) if isinstance(obj, (list, tuple)) else [obj]
    bad = [t for t in targets if not _is_target(t)]
    if not targets or bad:
        raise SuiteError(f"{spec} gives {bad[0] if bad else 'no targets'!r:.80}, not a target: a "
                         "target has a name, families(profile) and prepare(config) "
                         "(conformance.external.Target)")
    title = targets[0].name if len(targets) == 1 else spec
    return Suite(targets, f"{title} against the spec")


def run_suite(suite: Suite, profile: str = "full", examples: int | None = None,
              family: str | None = None, shrink_budget: int = 60, *,
              derandomize: bool | None = None, seed: int | None = None) -> Report:
    """Check every family of every target of `suite` (only those whose name contains `family`,
    when given) and return the report."""
    n = examples if examples is not None else EXAMPLES[profile]
    results = [check_family(target, fam, n, shrink_budget, derandomize, seed=seed)
               for target in suite.targets for fam in target.families(profile)
               if family is None or family in fam.name]
    if family is not None and not results:
        raise SuiteError(f"--family {family!r} matches no configuration family; the table "
                         "without --family lists them")
    title = f"{suite.title} ({profile} profile, {n} configurations per family)"
    return Report(results, title=title, scope=suite.scope)


def rerun(suite: Suite, text: str) -> CaseResult:
    """Compare one configuration, given as JSON: a target's configuration (its `config_type`'s
    fields), or {"target": NAME, "config": {...}} where the suite has several targets."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SuiteError(f"--case: not JSON ({exc}); expected the JSON a reproduction prints") from None
    if isinstance(data, dict) and set(data) == {"target", "config"}:
        candidates = [t for t in suite.targets if t.name == data["target"]]
        text = json.dumps(data["config"])
    else:
        candidates = list(suite.targets)
    parsed = []
    for t in candidates:
        config_type = getattr(t, "config_type", None)
        if config_type is None:
            continue
        try:
            parsed.append((t, config_from_json(config_type, text)))
        except (TypeError, ValueError, KeyError):
            continue
    if len(parsed) > 1:  # several targets share a configuration type: the one it names
        parsed = [(t, c) for t, c in parsed if getattr(c, "scheduler", t.name) == t.name]
    if len(parsed) != 1:
        names = ", ".join(t.name for t in suite.targets)
        raise SuiteError(f"--case: {text[:80]!r} is not a configuration of exactly one target "
                         f"({len(parsed)} match); targets: {names}; give {{\"target\": NAME, "
                         "\"config\": {...}}")
    target, config = parsed[0]
    tolerance = getattr(target, "tolerance", None)
    tol = tolerance(config) if callable(tolerance) else FLOAT64
    evaluate = getattr(target, "evaluate", None) or run_case
    return evaluate(target, config, tol)
