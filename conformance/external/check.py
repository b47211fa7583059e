"""Running a target against the spec: one case, one family (hypothesis), a whole report.

Every case and family gets one of four verdicts (`targets.VERDICTS`): agrees; deviates (the
spec has the method and the target departs from it); outside the spec (the target's `prepare`
raised `OutsideSpec`: an option or method with no spec function, with the reason); target
failed (the target raised, or returned a non-finite sample where the spec's is finite).

One case: the target's claim and trajectory from x_T and the noise (both drawn from the case's
seed), the spec's loop over the same claim from the same x_T and noise, and the spec's step from
each of the target's own states (so a departure is found at the step where it happens, not
where it has grown). Errors are max|target − spec| / max(1, max|spec|): relative to the
sample's scale, absolute near 0.

One family: hypothesis draws configurations; the first deviating one is shrunk to a minimal
one (within a budget of evaluations), which becomes the family's reproduction.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from conformance.external.oracle import NonlinearEps, SpecOracle
from conformance.external.targets import (
    FLOAT64,
    VERDICTS,
    Claim,
    Family,
    InvalidConfig,
    OutsideSpec,
    Run,
    Target,
    Tolerance,
    config_code,
    defined_at_zero_snr,
    eps_to_prediction,
    validate_config,
)
from spec.schedule import VPSchedule

EXAMPLES: dict[str, int] = {"small": 6, "full": 25}
"""Configurations drawn per family by default, per profile ("small": T ≤ 40, make test;
"full": T ≤ 1000, the command's default)."""


def rel_err(actual: np.ndarray, expected: np.ndarray) -> float:
    """max|actual − expected| / max(1, max|expected|); inf when either side is not finite."""
    a, e = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return math.inf
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(e))):
        return math.inf
    scale = max(1.0, float(np.max(np.abs(e)))) if e.size else 1.0
    return float(np.max(np.abs(a - e))) / scale if a.size else 0.0


@dataclass
class CaseResult:
    """The comparison of one configuration."""

    config: Any
    agrees: bool
    loop_err: float = 0.0
    step_errs: list[float] = field(default_factory=list)
    first: int | None = None  # the first step whose one-step error exceeds the tolerance
    detail: str = ""  # the reproduction (empty when the case agrees)
    kind: str = ""  # a key of VERDICTS; "" is "agrees" or "deviates" as `agrees` says

    def __post_init__(self) -> None:
        if self.agrees:
            self.kind = "agrees"
        elif self.kind in ("", "agrees"):
            self.kind = "deviates"
        if self.kind not in VERDICTS:
            raise ValueError(f"kind must be one of {sorted(VERDICTS)}, got {self.kind!r}")

    @property
    def worst(self) -> float:
        return max([self.loop_err, *self.step_errs])


class _BadCall(ValueError):
    """The target called the model at a time outside {0..T} (a deviation, not a failure)."""


def config_json(config: Any) -> str | None:
    """`config` as one line of JSON (a dataclass's fields), or None for another type."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        return None
    try:
        return json.dumps(dataclasses.asdict(config), separators=(",", ":"))
    except TypeError:
        return None


def config_from_json(config_type: Any, text: str) -> Any:
    """The `config_type` dataclass of a JSON line written by `config_json` (lists → tuples)."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object of {config_type.__name__}'s fields, got {text[:60]!r}")

    def frozen(v: Any) -> Any:
        return tuple(frozen(u) for u in v) if isinstance(v, list) else v

    return config_type(**{k: frozen(v) for k, v in data.items()})


def draw_inputs(seed: int, shape: tuple[int, ...], n: int) -> tuple[np.ndarray, np.ndarray]:
    """x_T ~ N(0, I) and the noise (n, *shape) of a case, from its seed (float64)."""
    rng = np.random.default_rng([seed, 1])
    return rng.standard_normal(shape), rng.standard_normal((n, *shape))


def _fmt(v: float) -> str:
    return "nan/inf" if not math.isfinite(v) else f"{v:.3g}"


def _worst_element(a: np.ndarray, e: np.ndarray) -> str:
    a, e = np.asarray(a, dtype=np.float64), np.asarray(e, dtype=np.float64)
    if a.shape != e.shape:
        return f"shapes differ: target {a.shape}, spec {e.shape}"
    d = np.abs(a - e)
    d = np.where(np.isnan(d), np.inf, d)
    idx = np.unravel_index(int(np.argmax(d)), d.shape)
    return f"at {tuple(int(i) for i in idx)}: target {float(a[idx])!r}, spec {float(e[idx])!r}"


def run_case(target: Target, config: Any, tol: Tolerance = FLOAT64) -> CaseResult:
    """Compare one configuration of `target` with the spec (never raises for a target's fault)."""
    validate_config(config)
    try:
        run: Run = target.prepare(config)
        claim: Claim = run.claim
    except OutsideSpec as exc:  # an option or method the spec has no function for
        return CaseResult(
            config, False, math.inf, [], 0,
            f"configuration: {config_code(target, config)}\nthe target's claim is outside the spec: "
            f"{exc}", kind="outside",
        )
    except Exception as exc:  # a claim outside the spec's domain (a grid past the schedule)
        return CaseResult(
            config, False, math.inf, [], 0,
            f"configuration: {config_code(target, config)}\nthe target's claim departs from the "
            f"spec's domain: {type(exc).__name__}: {exc}",
        )
    n = len(claim.grid)
    x_T, noise = draw_inputs(getattr(config, "seed", 0), tuple(config.shape), n)
    x_T = x_T.astype(run.dtype).astype(np.float64)  # both sides start from the same rounded x_T
    noise = noise.astype(run.dtype).astype(np.float64)
    model = NonlinearEps.from_seed(getattr(config, "seed", 0))
    ab = VPSchedule(np.asarray(claim.betas, dtype=np.float64)).alpha_bar
    # Zero terminal SNR (ᾱ = 0 on the grid): an ε-model says nothing about x_0 there, so an x_0-
    # or v-claim is run with a model OF that kind on both sides (the same network read as x̂_0 or
    # v̂: spec.prediction.PredictionModel) instead of converting ε (the spec would raise).
    native = defined_at_zero_snr(claim.prediction) and any(ab[t] == 0 for t in claim.grid)
    velocity = claim.method.velocity  # a flow claim: the network is v̂(x, σ) on both sides
    oracle = SpecOracle(claim, model, native=native)
    bound, loop_bound = tol.bound(ab, claim), tol.bound(ab, claim, loop=True)
    calls: list[int] = []

    def predict(x: np.ndarray, t: int) -> np.ndarray:
        t = int(t)
        calls.append(t)
        if not 0 <= t <= claim.T:
            raise _BadCall(f"the model was called at t = {t}, outside {{0..{claim.T}}}" + (
                " (t = −1: a flow target's model time is a σ none of the claim's σ's, so the "
                "velocity is not evaluated at the σ of the state)" if velocity and t == -1 else ""))
        x64 = np.asarray(x, dtype=np.float64)
        if velocity:
            return oracle.velocity_model.velocity(x64, oracle.flow_sigma(t)).astype(np.asarray(x).dtype)
        eps = model.eps(x64, t / claim.T)
        out = eps if native else eps_to_prediction(eps, x64, oracle.sched, t, claim.prediction)
        return out.astype(np.asarray(x).dtype)

    head = _header(run, claim)
    try:
        states = run.sample(x_T.astype(run.dtype), predict, noise.astype(run.dtype))
    except Exception as exc:
        return CaseResult(
            config, False, math.inf, [], len(calls),
            f"{head}\nthe target raised {type(exc).__name__}: {exc} "
            f"(after {len(calls)} model call(s), at t = {calls})\n"
            f"spec formula departed from: {claim.method.formula}",
            kind="deviates" if isinstance(exc, _BadCall) else "failed",
        )
    if len(states) != n + 1:
        return CaseResult(
            config, False, math.inf, [], 0,
            f"{head}\nthe target returned {len(states)} states, the claim has {n + 1}\n"
            f"spec formula departed from: {claim.method.formula}",
        )
    spec_final = oracle.final(x_T, noise)
    loop_err = rel_err(states[-1], spec_final)
    step_errs, spec_steps = [], []
    for i in range(n):
        # a multistep method's step i also reads the states at path[0..i − 1] (the target's own)
        before = [np.asarray(s, dtype=np.float64) for s in states[:i]]
        e = oracle.step(i, np.asarray(states[i], dtype=np.float64), noise[i], before)
        spec_steps.append(e)
        step_errs.append(rel_err(states[i + 1], e))
    bad_steps = [i for i, err in enumerate(step_errs) if not err <= bound]
    plan = claim.call_plan  # (step, t) of every call the claim makes: 1 per step, Heun 2
    calls_ok = calls == [t for _, t in plan]
    agrees = loop_err <= loop_bound and not bad_steps and calls_ok
    result = CaseResult(config, agrees, loop_err, step_errs)
    if agrees:
        return result
    finite = [bool(np.all(np.isfinite(np.asarray(x, dtype=np.float64)))) for x in states]
    if not all(finite) and np.all(np.isfinite(spec_final)):
        result.kind = "failed"  # a NaN or inf where the spec's sample is finite
    first = bad_steps[0] if bad_steps else None
    if not calls_ok:
        k = next((k for k, (c, (_, t)) in enumerate(zip(calls, plan, strict=False)) if c != t),
                 min(len(calls), len(plan)))
        wrong = plan[k][0] if k < len(plan) else n  # the step the first wrong call belongs to
        first = wrong if first is None else min(first, wrong)
    result.first = first
    lines = [head]
    if not calls_ok:
        lines.append(
            f"model calls: the target evaluated the model at t = {calls}; the claim calls it at "
            f"t = {[t for _, t in plan]}"
            + (" (two calls per step: t_i, then t_{i+1} for the corrector)"
               if len(plan) > len(claim.grid) else "")
        )
    if first is not None and first < n:
        i = first
        t, t_prev = claim.path[i], claim.path[i + 1]
        lines.append(
            f"first step that parts: step {i} of {n}, spec t = {t} → t_prev = {t_prev} "
            f"(target: {claim.label(i)} → {claim.label(i + 1)})"
        )
        if run.describe is not None:
            lines.append(f"  the target's own account: {run.describe(i)}")
        lines.append(
            f"  one-step error {_fmt(step_errs[i])} (tolerance {bound:.3g}); worst element "
            + _worst_element(states[i + 1], spec_steps[i])
        )
        hint = diagnose(oracle, i, np.asarray(states[i], dtype=np.float64), noise[i],
                        np.asarray(states[i + 1], dtype=np.float64), bound,
                        [np.asarray(s, dtype=np.float64) for s in states[:i]])
        if hint:
            lines.append(f"  diagnosis: {hint}")
    lines.append(
        f"whole loop: error {_fmt(loop_err)} (tolerance {loop_bound:.3g}); worst element "
        + _worst_element(states[-1], spec_final)
    )
    if result.kind == "failed":
        k = finite.index(False)
        lines.append(f"not finite: the target's state {k} ({claim.label(k)}) has NaN or inf; "
                     "the spec's whole loop is finite")
    lines.append(f"spec formula departed from: {claim.method.formula}")
    result.detail = "\n".join(lines)
    return result


def _header(run: Run, claim: Claim) -> str:
    shown = [f"{claim.label(i)} (t={t})" for i, t in enumerate(claim.path)]
    if len(shown) > 8:
        shown = [*shown[:3], f"… {len(shown) - 6} more …", *shown[-3:]]
    grid = ", ".join(shown)
    model = ("a velocity v̂(x, σ)" if claim.method.velocity
             else f"prediction {claim.prediction}")  # a flow claim's model is read as v̂
    return f"configuration: {run.repro}\nclaimed path: {grid}; method {claim.method}; model {model}"


def diagnose(
    oracle: SpecOracle, i: int, x: np.ndarray, z: np.ndarray, actual: np.ndarray, bound: float,
    before: list[np.ndarray] | None = None,
) -> str:
    """Which nearby spec computation the target's step matches, if any (a hint, not a verdict):
    the first of the claim's method's `nearby` computations within the bound (`before`: the
    target's states at path[0..i − 1], which a multistep method's computations read)."""
    for text, compute in oracle.claim.method.nearby(oracle, i, x, z, before or []):
        try:
            if rel_err(actual, compute()) <= bound:
                return text
        except Exception:
            continue
    return ""


# ---------------------------------------------------------------------------------------------
# Families: hypothesis drives, the first deviation is shrunk to a minimal reproduction


class _Deviates(Exception):
    def __init__(self, result: CaseResult) -> None:
        super().__init__(result.detail)
        self.result = result


@dataclass
class FamilyResult:
    target: str
    family: str
    tolerance: Tolerance
    agrees: bool
    cases: int
    worst: float  # the largest error over every case evaluated
    repro: CaseResult | None = None  # the minimal case that does not agree
    note: str = ""

    @property
    def kind(self) -> str:
        """The family's verdict, a key of VERDICTS: its minimal reproduction's."""
        if self.agrees:
            return "agrees"
        return self.repro.kind if self.repro is not None else "deviates"

    @property
    def verdict(self) -> str:
        return {
            "agrees": f"agrees (max {_fmt(self.worst)})",
            "deviates": f"deviates (max {_fmt(self.worst)})",
            "outside": "outside the spec",
            "failed": "target failed",
        }[self.kind]

    def to_dict(self) -> dict[str, Any]:
        r = self.repro
        return {
            "target": self.target, "family": self.family, "verdict": self.kind,
            "cases": self.cases, "worst": self.worst if math.isfinite(self.worst) else None,
            "tolerance": self.tolerance.reason, "note": self.note,
            "reproduction": r.detail if r is not None else None,
            "case": config_json(r.config) if r is not None else None,
        }


def check_family(
    target: Target, family: Family, examples: int, shrink_budget: int = 60,
    derandomize: bool | None = None, evaluate_case: Callable[..., CaseResult] | None = None,
    seed: int | None = None,
) -> FamilyResult:
    """Draw `examples` configurations of `family`; shrink the first one that does not agree
    (≤ shrink_budget further evaluations).

    derandomize: the same draws on every run (hypothesis's derandomize); None reads
    HYPOTHESIS_PROFILE=ci from the environment (make test's CI setting). seed: a fixed
    hypothesis seed instead (ignored when derandomized). evaluate_case(target, config, tol):
    the comparison of one configuration (default `run_case`; a target with its own `evaluate`
    method, such as the grid rows, is compared by that). Raises InvalidConfig when the family
    draws a configuration the harness cannot use (`validate_config`).
    """
    if derandomize is None:
        derandomize = os.environ.get("HYPOTHESIS_PROFILE") == "ci"
    evaluate_one = evaluate_case or getattr(target, "evaluate", None) or run_case
    memo: dict[Any, CaseResult | None] = {}
    state: dict[str, Any] = {"after_fail": 0, "failed": False, "invalid": None}

    def evaluate(config: Any) -> CaseResult | None:
        validate_config(config, sampled=evaluate_one is run_case)
        if config in memo:
            return memo[config]
        if state["failed"]:
            state["after_fail"] += 1
            if state["after_fail"] > shrink_budget:
                memo[config] = None  # beyond the shrink budget: not evaluated
                return None
        r = evaluate_one(target, config, family.tolerance)
        memo[config] = r
        if not r.agrees:
            state["failed"] = True
        return r

    @settings(
        max_examples=examples, derandomize=derandomize, database=None, deadline=None,
        suppress_health_check=list(HealthCheck), phases=(Phase.generate, Phase.shrink),
        report_multiple_bugs=False, print_blob=False,
    )
    @given(family.strategy)
    def probe(config: Any) -> None:
        if state["invalid"] is not None:
            return
        try:
            r = evaluate(config)
        except InvalidConfig as exc:  # reported once, after hypothesis stops
            state["invalid"] = exc
            return
        if r is not None and not r.agrees:
            raise _Deviates(r)

    if seed is not None and not derandomize:
        probe = hypothesis_seed(seed)(probe)
    repro = None
    try:
        probe()
    except _Deviates as d:
        repro = d.result
    if state["invalid"] is not None:
        raise InvalidConfig(f"{target.name} × {family.name}: {state['invalid']}")
    done = [r for r in memo.values() if r is not None]
    worst = max((r.worst for r in done), default=0.0)
    return FamilyResult(
        target.name, family.name, family.tolerance, repro is None, len(done), worst, repro,
        family.note,
    )


SECTIONS: dict[str, str] = {
    "deviates": "Deviations (minimal reproductions)",
    "failed": "Target failures (minimal reproductions)",
    "outside": "Outside the spec (no spec function; the reason)",
}
"""The report's section for each verdict but "agrees", in the report's order."""


@dataclass
class Report:
    """Every family of every target checked, in order."""

    results: list[FamilyResult]
    title: str = ""
    scope: list[tuple[str, str, str]] = field(default_factory=list)  # (option, status, reason)

    @property
    def agrees(self) -> bool:
        return all(r.agrees for r in self.results)

    def findings(self) -> dict[tuple[str, str], str]:
        """{(target, family): verdict} of every family that does not agree."""
        return {(r.target, r.family): r.kind for r in self.results if not r.agrees}

    def deviations(self) -> set[tuple[str, str]]:
        """(target, family) of every family that does not agree, whatever its verdict."""
        return set(self.findings())

    def counts(self) -> dict[str, int]:
        """How many families got each verdict."""
        return {k: sum(r.kind == k for r in self.results) for k in VERDICTS}

    def table(self, markdown: bool = False) -> str:
        rows = [(r.target, r.family, r.verdict, str(r.cases)) for r in self.results]
        head = ("target", "configuration family", "verdict (error / sample scale)", "cases")
        if markdown:
            out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
            out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
            return "\n".join(out)
        widths = [max(len(x[k]) for x in [head, *rows]) for k in range(len(head))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))]
                         + [fmt.format(*row) for row in rows])

    def text(self, markdown: bool = False) -> str:
        parts = []
        if self.title:
            parts.append(("# " if markdown else "") + self.title)
        parts.append(self.table(markdown))
        parts.append(", ".join(f"{n} {VERDICTS[k].split(':')[0]}"
                               for k, n in self.counts().items()))
        for kind, heading in SECTIONS.items():
            found = [r for r in self.results if r.kind == kind]
            if not found:
                continue
            parts.append(("## " if markdown else "") + heading)
            for r in found:
                body = r.repro.detail if r.repro else "(no reproduction)"
                if markdown:
                    parts.append(f"### {r.target} × {r.family}\n\n```\n{body}\n```")
                else:
                    parts.append(f"--- {r.target} × {r.family}\n{body}")
        if self.scope:
            parts.append(("## " if markdown else "") + "Scope of the adapters")
            if markdown:
                rows = ["| option | status | reason |", "| --- | --- | --- |"]
                rows += [f"| {a} | {b} | {c} |" for a, b, c in self.scope]
                parts.append("\n".join(rows))
            else:
                parts.append("\n".join(f"- {a}: {b}. {c}" for a, b, c in self.scope))
        tols = {r.tolerance for r in self.results}
        parts.append(("## " if markdown else "") + "Tolerances")
        parts.append("\n".join(f"- {t.rel:g}: {t.reason}" for t in sorted(tols, key=lambda t: t.rel)))
        return "\n\n".join(parts) + "\n"

    def to_json(self) -> str:
        """The report as JSON: title, the verdict counts, one object per family (target,
        family, verdict, cases, worst, tolerance, note, reproduction, case), the scope."""
        return json.dumps({
            "title": self.title, "counts": self.counts(),
            "results": [r.to_dict() for r in self.results],
            "scope": [{"option": a, "status": b, "reason": c} for a, b, c in self.scope],
        }, indent=1, ensure_ascii=False)


def check(target: Target, profile: str = "small", examples: int | None = None,
          shrink_budget: int = 60, *, derandomize: bool | None = None,
          seed: int | None = None) -> Report:
    """Check every family of `target` (examples per family: EXAMPLES[profile] unless given).

    derandomize: True, the same configurations on every run; False, new ones each run (unless
    `seed` fixes them); None (default) reads HYPOTHESIS_PROFILE=ci from the environment."""
    if profile not in EXAMPLES:
        raise ValueError(f"profile must be one of {sorted(EXAMPLES)}, got {profile!r}")
    n = examples if examples is not None else EXAMPLES[profile]
    return Report([check_family(target, f, n, shrink_budget, derandomize, seed=seed)
                   for f in target.families(profile)],
                  title=f"{target.name} against the spec")
