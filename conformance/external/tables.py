"""A scheduler's tables against the spec, for any object with diffusers' scheduler interface:
`alphas_cumprod` against the spec's schedules, `timesteps` against spec.timestep_grid (Lin et
al. 2023, Table 2) and `sigmas` against the construction it claims (`SIGMAS`).

    check_schedule(s)                       # one scheduler object: a CaseResult
    check_timesteps(s, 10, "trailing")
    check_sigmas(s, 10, "vp")               # "vp", "karras", "karras_grid", "flow_shift"
    TimestepsRows(MySched, ["leading", "trailing"])   # a class, configurations drawn: report rows
    scheduler_rows(SchedulerTarget(MySched, "euler"))  # the rows `--scheduler` adds to its steps

Each check gives one of the four verdicts: agrees; deviates (which entries differ, and the spec
function); outside the spec (timesteps between table entries, an option no spec construction
has); target failed (set_timesteps raised, or a σ is NaN or inf where the spec's is finite).
The time map is diffusers': timestep τ is the spec's t = τ + 1 (`alphas_cumprod[τ]` = ᾱ_{τ+1}).
The float bounds take u = 2^-24 for a float32 table and 2^-53 for a float64 one.
`diffusers_rows` builds diffusers' rows from these classes.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from conformance.external.check import CaseResult, config_json
from conformance.external.scheduler_target import (
    SPACINGS,
    SchedulerConfig,
    load_object,
    option,
)
from conformance.external.targets import Family, OutsideSpec, Tolerance
from spec.core import EPS
from spec.edm import edm_sigmas, vp_to_edm
from spec.flow import flow_sigmas, time_shift
from spec.schedule import SPACINGS as GRID_SPACINGS
from spec.schedule import (
    VPSchedule,
    cosine_betas,
    linear_betas,
    rescale_zero_terminal_snr,
    timestep_grid,
)

# ---------------------------------------------------------------------------------------------
# Reading a scheduler


def train_steps(s: Any) -> int:
    """T: the scheduler's num_train_timesteps (config or attribute), else len(alphas_cumprod)."""
    T = option(s, "num_train_timesteps", None)
    return int(T) if T is not None else len(s.alphas_cumprod)


def table(s: Any) -> tuple[np.ndarray, float]:
    """(ᾱ_{τ+1} for τ = 0..T−1 as float64, u: the unit roundoff of the dtype it is kept in)."""
    a = s.alphas_cumprod
    arr = a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
    return arr.astype(np.float64), 2.0**-53 if arr.dtype == np.float64 else 2.0**-24


def _unit(values: Any) -> float:
    dtype = getattr(values, "dtype", None)
    return 2.0**-53 if str(dtype).endswith("float64") else 2.0**-24


def describe(s: Any, call: str = "") -> str:
    """The scheduler's class and constructor options (its `config`), for a reproduction."""
    config = getattr(s, "config", None)
    items = dict(config).items() if hasattr(config, "items") else ()
    args = ", ".join(f"{k}={v!r}" for k, v in items if not k.startswith("_")) or "…"
    return f"{type(s).__module__}.{type(s).__qualname__}({args}){call}"


def _case(config: Any, code: str, kind: str, message: str) -> CaseResult:
    return CaseResult(config, False, math.inf, [], 0, f"configuration: {code}\n{message}", kind=kind)


def _parts(config: Any, value: float, agrees: bool, first: int, detail: str) -> CaseResult:
    r = CaseResult(config, agrees, value, [])
    if not agrees:
        r.first, r.detail = first, detail
    return r


# ---------------------------------------------------------------------------------------------
# alphas_cumprod against the spec's schedules


SCHEDULES: dict[str, tuple[str, Callable[[int, float, float], np.ndarray]]] = {
    "linear": ("spec.linear_betas (DDPM §4)", linear_betas),
    "squaredcos_cap_v2": ("spec.cosine_betas (Nichol & Dhariwal 2021, Eq. 17)",
                          lambda T, b0, b1: cosine_betas(T)),
}
"""The beta_schedule names (diffusers') that a spec function defines: (its name, betas(T, β_start,
β_end))."""


SCHEDULE_TOL = Tolerance(
    1.0,
    "alphas_cumprod rows: the ratio of |ᾱ_target − ᾱ_spec|/ᾱ_spec to the bound "
    "Σ_{s≤t} 3u·(1 + β_s/(1 − β_s)) (each β_s and 1 − β_s rounded once in the table's dtype and "
    "the running product once per step); agrees when ≤ 1",
)
RESCALE_TOL = Tolerance(
    1.0,
    "rescaled alphas_cumprod rows: ᾱ'_T = 0 exactly on both sides, and the ratio of "
    "|√ᾱ'_target − √ᾱ'_spec| to the bound 4u·(t + 4)·(1 + s_1/(s_1 − s_T)) (s = √ᾱ before "
    "rescaling; the shift by s_T magnifies absolute errors by s_1/(s_1 − s_T)); agrees when ≤ 1",
)


def check_schedule(s: Any, *, config: Any = None, code: str | None = None) -> CaseResult:
    """`alphas_cumprod` against the spec's ᾱ of the schedule its config names (beta_schedule,
    beta_start, beta_end; `SCHEDULES`), rescaled by spec.rescale_zero_terminal_snr (Lin et al.
    2023, Algorithm 1) where rescale_betas_zero_snr is set. The value is the ratio to the bound
    of SCHEDULE_TOL (RESCALE_TOL when rescaled)."""
    code = code or describe(s)
    name = str(option(s, "beta_schedule", "linear"))
    if name not in SCHEDULES:
        return _case(config, code, "outside", f"the target's claim is outside the spec: "
                     f"beta_schedule {name!r} has no spec function (spec: {', '.join(SCHEDULES)})")
    try:
        ab, u = table(s)
        T = train_steps(s)
    except Exception as exc:
        return _case(config, code, "failed", f"the target raised {type(exc).__name__}: {exc}")
    formula, make = SCHEDULES[name]
    betas = make(T, float(option(s, "beta_start", 1e-4)), float(option(s, "beta_end", 0.02)))
    rescale = bool(option(s, "rescale_betas_zero_snr", False))
    ref = VPSchedule(rescale_zero_terminal_snr(betas) if rescale else betas).alpha_bar[1:]
    if len(ab) != len(ref):
        return _case(config, code, "deviates", f"alphas_cumprod has {len(ab)} entries; T = {T}")
    if rescale:
        root = np.sqrt(np.cumprod(1 - betas))
        bound = 4 * u * (np.arange(1, T + 1) + 4) * (1 + root[0] / (root[0] - root[-1]))
        ratio = np.abs(np.sqrt(ab) - np.sqrt(ref)) / bound
        formula = "spec.rescale_zero_terminal_snr (Lin et al. 2023, Algorithm 1)"
    else:
        ratio = np.abs(ab - ref) / ref / np.cumsum(3 * u * (1 + betas / (1 - betas)))
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    worst, first = int(np.argmax(ratio)), int(np.argmax(ratio > 1.0))
    zero = not rescale or (ab[-1] == 0.0 and ref[-1] == 0.0)  # SNR(T) = 0 exactly on both sides
    agrees = bool(zero and ratio[worst] <= 1.0)
    return _parts(config, float(ratio[worst]), agrees, first, (
        f"configuration: {code}\nfirst entry that parts: alphas_cumprod[{first}] = {ab[first]!r}; "
        f"spec ᾱ_{first + 1} = {ref[first]!r} ({ratio[first]:.3g}× its bound; the worst, "
        f"{ratio[worst]:.3g}×, at index {worst})"
        + (f"; ᾱ_T: target {ab[-1]!r}, spec {ref[-1]!r}" if rescale else "")
        + f"\nspec formula departed from: {formula}"))


# ---------------------------------------------------------------------------------------------
# timesteps against spec.timestep_grid


TIMESTEPS_TOL = Tolerance(
    0.0,
    "timesteps rows: scheduler.timesteps mapped to t = τ + 1 must equal spec.timestep_grid(T, "
    "n, spacing) without its final 0, entry for entry (integers: no tolerance); the value is the "
    "number of entries that differ (a grid of another length counts every entry)",
)


def check_timesteps(s: Any, n: int, spacing: str, *, read: Callable[[list[float]], list[float]] = list,
                    config: Any = None, code: str | None = None) -> CaseResult:
    """`s.timesteps` after `s.set_timesteps(n)`, read as its grid (`read`: Heun's interleaved
    list → `scheduler_target.heun_grid`), t = τ + 1, against spec.timestep_grid(T, n, spacing)
    without its final 0 (Lin et al. 2023, Table 2; spacing leading, trailing or linspace)."""
    code = code or describe(s, f".set_timesteps({n})")
    try:
        s.set_timesteps(n)
        raw = [float(v) for v in s.timesteps]
        T = train_steps(s)
    except Exception as exc:
        return _case(config, code, "failed", f"the target raised {type(exc).__name__}: {exc}")
    try:
        grid = [float(v) for v in read(raw)]
    except ValueError as exc:
        return _case(config, code, "deviates", f"timesteps {raw}: {exc}")
    if any(v != int(v) for v in grid):
        return _case(config, code, "outside", f"the target's claim is outside the spec: timesteps "
                     f"{grid[:6]}… are not integers: no discrete grid t ∈ {{1..T}} is claimed")
    got = [int(v) + 1 for v in grid]
    ref = [int(t) for t in timestep_grid(T, n, spacing)[:-1]]
    wrong = [i for i in range(max(len(got), len(ref)))
             if i >= len(got) or i >= len(ref) or got[i] != ref[i]]
    return _parts(config, float(len(wrong)), not wrong, wrong[0] if wrong else 0, (
        f"configuration: {code}\nscheduler.timesteps + 1 = {got}\n"
        f"spec.timestep_grid({T}, {n}, {spacing!r})[:-1] = {ref}\n"
        f"first entry that parts: index {wrong[0] if wrong else 0}; {len(wrong)} of "
        f"{max(len(got), len(ref))} differ\nspec formula departed from: spec.timestep_grid, "
        f"{spacing} spacing (Lin et al. 2023, Table 2), in the spec's t = τ + 1"))


# ---------------------------------------------------------------------------------------------
# sigmas against the construction a scheduler claims


@dataclass(frozen=True)
class Sigmas:
    """What a claim's σ's should be: `reference(s, n, sigmas, grid, end, plain, mu)` returns the spec's
    σ's (n + 1, the last one final), the absolute bound of each entry (0: exact) and where its
    parameters came from; `options`: the constructor options the construction needs."""

    description: str
    formula: str
    reference: Callable[..., tuple[np.ndarray, np.ndarray, str]]
    tolerance: Tolerance
    options: tuple[tuple[str, Any], ...] = ()


def _vp_sigma(ab: np.ndarray, t: int) -> float:
    """σ_t = √((1 − ᾱ_t)/ᾱ_t) of a table ᾱ_{τ+1} (spec.edm.vp_to_edm); σ_0 = 0."""
    if t == 0:
        return 0.0
    if ab[t - 1] <= 0.0:
        raise OutsideSpec(f"ᾱ_{t} = 0 (zero terminal SNR): σ_{t} is infinite, no EDM σ")
    return float(vp_to_edm(ab[t - 1], np.zeros(1))[1])


def _integer_grid(s: Any, read: Callable[[list[float]], list[float]]) -> list[int]:
    """The spec times t = τ + 1 of the scheduler's grid (OutsideSpec for fractional τ)."""
    grid = [float(v) for v in read([float(v) for v in s.timesteps])]
    if any(v != int(v) for v in grid):
        raise OutsideSpec(f"timesteps {grid[:6]}… are not integers: σ is interpolated between "
                          "table entries, which no discrete grid t ∈ {1..T} claims")
    return [int(v) + 1 for v in grid]


def _vp_reference(s, n, sig, grid, end, plain, mu):
    ab, u = table(s)
    ts = _integer_grid(s, grid)
    ref = np.array([_vp_sigma(ab, t) for t in [*ts, end]])
    bound = (4 * u + EPS / min(ab[t - 1] for t in ts)) * ref
    return ref, bound, f"σ_t of alphas_cumprod at t = τ + 1 = {ts} and t = {end} (the end)"


def _karras_reference(s, n, sig, grid, end, plain, mu):
    """Karras Eq. 5 between σ_min and σ_max: of the table (σ_1, σ_T), or, with `plain` (the same
    scheduler without use_karras_sigmas), of that scheduler's grid (its last and first times)."""
    ab, u = table(s)
    if plain is None:
        lo, hi, where, ab_min = _vp_sigma(ab, 1), _vp_sigma(ab, len(ab)), "σ_1 and σ_T of the table", ab[-1]
    else:
        plain.set_timesteps(n)
        raw = [float(v) for v in grid([float(v) for v in plain.timesteps])]
        if raw[0] != int(raw[0]) or raw[-1] != int(raw[-1]):
            raise OutsideSpec(f"the plain grid's first and last timesteps {raw[0]}, {raw[-1]} are "
                              "not integers: no σ of the table is claimed as σ_max, σ_min")
        first, last = int(raw[0]) + 1, int(raw[-1]) + 1  # spec times t = τ + 1
        lo, hi = _vp_sigma(ab, last), _vp_sigma(ab, first)
        where, ab_min = f"σ at the plain grid's t = {last} and t = {first}", ab[first - 1]
    ref = edm_sigmas(n, lo, hi)
    return ref, (16 * u + EPS / ab_min) * ref, f"σ_min = {lo!r}, σ_max = {hi!r}: {where}"


def _flow_reference(s, n, sig, grid, end, plain, mu):
    """SD3's shift of an evenly spaced u from u_0 = 1 to the u of its last σ, then 0."""
    if option(s, "shift_terminal", None):
        raise OutsideSpec("shift_terminal: the stretched σ's do not say where the evenly spaced "
                          "grid under the shift ended (σ_min is a choice the papers leave open)")
    if str(option(s, "time_shift_type", "exponential")) != "exponential":
        raise OutsideSpec("time_shift_type linear: no spec function (SD3 Eq. 23 is the exponential one)")
    dynamic = bool(option(s, "use_dynamic_shifting", False))
    shift = math.exp(mu) if dynamic and mu is not None else float(option(s, "shift", 1.0))
    last = time_shift(min(max(sig[n - 1], 0.0), 1.0), 1 / shift)  # the inverse shift
    u = 1 + np.arange(n) * (last - 1) / max(n - 1, 1)
    ref = np.array([*time_shift(u, shift), 0.0])
    bound = np.array([*(8 * _unit(s.sigmas) * max(1.0, shift),) * n, 0.0])
    how = f"s = e^μ = {shift!r}" if dynamic else f"shift s = {shift!r}"
    return ref, bound, f"{how}; u from 1 to {float(last)!r} (the inverse shift of the last σ)"


def _flow_grid_reference(s, n, sig, grid, end, plain, mu):
    """spec.flow.flow_sigmas(n, s, shift_terminal): 1 − i/n shifted once by SD3 Eq. 23, σ_n = 0.
    σ's that are `flow_shift`'s construction with u ending elsewhere are outside the spec (where
    u ends is a choice of grid); with n = num_train_timesteps and u ending at time_shift(1/T, s),
    the reason says σ_min was shifted twice."""
    if str(option(s, "time_shift_type", "exponential")) != "exponential":
        raise OutsideSpec("time_shift_type linear: no spec function (SD3 Eq. 23 is the exponential one)")
    dynamic = bool(option(s, "use_dynamic_shifting", False))
    shift = math.exp(mu) if dynamic and mu is not None else float(option(s, "shift", 1.0))
    ref = flow_sigmas(n, shift, option(s, "shift_terminal", None) or None)
    bound = np.array([*(8 * _unit(s.sigmas) * max(1.0, shift),) * n, 0.0])
    how = f"{'s = e^μ' if dynamic else 'shift s'} = {shift!r}"
    if np.all(np.abs(sig - ref) <= bound):
        return ref, bound, f"{how}; u = 1 − i/{n}"
    try:
        other, other_bound, _ = _flow_reference(s, n, sig, grid, end, plain, mu)
    except OutsideSpec:
        return ref, bound, f"{how}; u = 1 − i/{n}"
    if n < 2 or not np.all(np.abs(sig - other) <= other_bound):
        return ref, bound, f"{how}; u = 1 − i/{n}"
    u_end, T = float(time_shift(min(max(sig[n - 1], 0.0), 1.0), 1 / shift)), train_steps(s)
    twice = n == T and abs(u_end - time_shift(1 / T, shift)) <= 8 * _unit(s.sigmas) * max(1.0, shift)
    raise OutsideSpec(
        f"sigmas = {sig.tolist()}: SD3's shift ({how}) of an evenly spaced u from 1 to "
        f"{u_end!r} (the inverse shift of its last σ), where spec.flow.flow_sigmas' u ends at "
        f"1/n = {1 / n!r}: {ref.tolist()}"
        + (f". With n = T = {T}, u ends at time_shift(1/T, s), its constructor's σ_min, which is "
           f"already shifted: σ_min is shifted twice (its last σ time_shift(time_shift(1/T, s), "
           f"s) = {float(sig[n - 1])!r}, the spec's time_shift(1/T, s) = {float(ref[n - 1])!r}), so a grid "
           "rebuilt with n = T is not its own table" if twice else "")
        + ". Which σ_min a grid ends at is a choice the papers leave open (SD3 §5.3.2 gives the "
        "shift, not the grid); the spec's is 1 − i/n shifted once (docs/errata.md §5)")


SIGMAS: dict[str, Sigmas] = {
    "vp": Sigmas(
        "σ of its own table at each grid time, then the σ of the end time (0 at t = 0)",
        "σ_t = √((1 − ᾱ_t)/ᾱ_t) (Karras et al. 2022, Table 1, VP; spec.edm.vp_to_edm) at t = τ + 1",
        _vp_reference,
        Tolerance(1.0, "VP σ rows: |σ_target − σ_spec| as a ratio to (4u + EPS/ᾱ_min)·σ_spec "
                  "(1 − ᾱ, the division, the square root and the stored σ rounded once each in "
                  "the table's dtype; vp_to_edm's safe_div adds EPS = 1e-12 to ᾱ); the final σ "
                  "exact; agrees when ≤ 1")),
    "karras": Sigmas(
        "use_karras_sigmas: Karras Eq. 5 (ρ = 7) from σ_T of its table down to σ_1, then 0",
        "spec.edm.edm_sigmas (Karras et al. 2022, Eq. 5, ρ = 7)",
        _karras_reference,
        Tolerance(1.0, "Karras σ rows: |σ_target − σ_spec|/σ_spec over the n σ's before the final "
                  "0, as a ratio to 16u (σ_min, σ_max formed in the table's dtype, ~4 roundings "
                  "each, carried through Eq. 5 as a relative error; the result stored) plus EPS/ᾱ "
                  "at the endpoints (vp_to_edm's safe_div adds EPS = 1e-12 to ᾱ, which the cosine "
                  "schedule's ᾱ_T ~ 5e-7 makes ~2e-6); the final σ must be 0 on both sides; "
                  "agrees when ≤ 1"),
        (("use_karras_sigmas", True),)),
    "flow_shift": Sigmas(
        "SD3's shift σ = s·u/(1 + (s − 1)·u) of an evenly spaced u from u_0 = 1, then 0 (s: "
        "its shift, or e^μ with use_dynamic_shifting; where u ends is left open)",
        "spec.flow.time_shift (Esser et al. 2024, §5.3.2, Eq. 23) of an evenly spaced grid",
        _flow_reference,
        Tolerance(1.0, "flow shift rows: |σ_target − σ_spec| as a ratio to 8u·max(1, s) (σ and "
                  "the shift rounded a few times each in the σ's dtype; the last σ's rounding, "
                  "carried through the inverse shift and the shift again, at most s times); the "
                  "final σ exact; agrees when ≤ 1")),
}
SIGMAS["flow_grid"] = Sigmas(
    "spec.flow.flow_sigmas(n, s): u = 1 − i/n, i = 0..n, shifted once, σ_n = 0 (s: its shift, or "
    "e^μ with use_dynamic_shifting; shift_terminal's stretch where set); SD3's shift of a grid "
    "whose u ends elsewhere is outside the spec, a choice of grid",
    "spec.flow.flow_sigmas (SD3 Eq. 23 on 1 − i/n)", _flow_grid_reference,
    Tolerance(1.0, "flow grid rows: |σ_target − σ_spec| as a ratio to 8u·max(1, s), as flow_shift's; "
              "the final σ exact; agrees when ≤ 1"))
SIGMAS["karras_grid"] = Sigmas(
    "use_karras_sigmas: Karras Eq. 5 (ρ = 7) between the σ's of its own grid's first and last "
    "times (without use_karras_sigmas), then 0", SIGMAS["karras"].formula,
    _karras_reference, SIGMAS["karras"].tolerance, SIGMAS["karras"].options)
"""The σ constructions a scheduler can claim, by name: "vp" (Euler, Heun, DPM-Solver: the table's
σ's), "karras" (σ_min, σ_max of the table, as DPM-Solver), "karras_grid" (of its own grid, as
Euler and Heun), "flow_shift" (flow matching: the shift, wherever the grid under it ends),
"flow_grid" (flow matching: spec.flow.flow_sigmas itself)."""


def check_sigmas(s: Any, n: int, claim: str = "vp", *, grid: Callable[[list[float]], list[float]] = list,
                 sigma_grid: Callable[[list[float]], list[float]] = list, end: int = 0,
                 plain: Any = None, mu: float | None = None, config: Any = None,
                 code: str | None = None) -> CaseResult:
    """`s.sigmas` after `s.set_timesteps(n)` (mu passed where given), read as one σ per grid
    time and a final one (`sigma_grid`: Heun's interleaved list → heun_sigma_grid; `grid` reads
    the timesteps the same way), against the construction `claim` names (`SIGMAS`). end: the
    spec time of the final σ ("vp"); plain: for "karras_grid", the same scheduler built without
    use_karras_sigmas. The value is the largest ratio of an entry's error to its bound."""
    rule = SIGMAS[claim]
    if claim == "karras_grid" and plain is None:
        raise ValueError("karras_grid: give plain=, the same scheduler without use_karras_sigmas")
    code = code or describe(s, f".set_timesteps({n}{'' if mu is None else f', mu={mu!r}'})")
    try:
        s.set_timesteps(n, **({} if mu is None else {"mu": mu}))
        got = np.array([float(v) for v in sigma_grid(list(s.sigmas))])
    except Exception as exc:
        return _case(config, code, "failed", f"the target raised {type(exc).__name__}: {exc}")
    if len(got) != n + 1:
        return _case(config, code, "deviates", f"sigmas = {got.tolist()}: {len(got)} entries, "
                     f"the claim has n + 1 = {n + 1}\nspec formula departed from: {rule.formula}")
    try:
        ref, bound, where = rule.reference(s, n, got, grid, end, plain, mu)
    except OutsideSpec as exc:
        return _case(config, code, "outside", f"the target's claim is outside the spec: {exc}")
    if not np.all(np.isfinite(got)):
        return _case(config, code, "failed", f"sigmas = {got.tolist()} are not finite; the spec's "
                     f"{ref.tolist()} are")
    diff = np.abs(got - ref)
    ratio = np.where(diff == 0, 0.0, diff / np.where(bound > 0, bound, 1e-300))
    worst, first = int(np.argmax(ratio)), int(np.argmax(ratio > 1.0))
    return _parts(config, float(ratio[worst]), bool(ratio[worst] <= 1.0), first, (
        f"configuration: {code}\nsigmas = {got.tolist()}\nspec: {ref.tolist()}, "
        f"{rule.description}; {where}\nfirst entry that parts: index {first} "
        f"({ratio[first]:.3g}× its bound; the worst, {ratio[worst]:.3g}×, at index {worst})"
        f"{_off_by_one(s, grid, got, ref) if claim == 'vp' else ''}"
        f"\nspec formula departed from: {rule.formula}"))


def _off_by_one(s: Any, grid: Callable, got: np.ndarray, ref: np.ndarray) -> str:
    """A hint for "vp": whether the σ's are the table's at t = τ or t = τ + 2 instead."""
    ab, u = table(s)
    ts = _integer_grid(s, grid)
    for shift, what in ((-1, "alphas_cumprod[τ − 1] (t = τ)"), (1, "alphas_cumprod[τ + 1] (t = τ + 2)")):
        try:
            other = np.array([_vp_sigma(ab, min(max(t + shift, 1), len(ab))) for t in ts])
        except OutsideSpec:
            continue
        if np.allclose(got[:-1], other, rtol=max(64 * u, 1e-9), atol=0):  # 1e-9: vp_to_edm's EPS
            return f"\n  diagnosis: the σ's are those of {what}, one table entry off"
    return ""


# ---------------------------------------------------------------------------------------------
# Rows: a scheduler class, its configurations drawn by hypothesis


@dataclass(frozen=True, kw_only=True)
class TableConfig(SchedulerConfig):
    """A configuration of a table row: the scheduler's constructor (SchedulerConfig) and the
    claim checked (a spacing, a name of SIGMAS, a beta_schedule). `claim` has no default, so the
    JSON of a SchedulerConfig is never read as one (--case tells the two apart)."""

    claim: str


def _accepts(cls: Any, name: str) -> bool:
    params = inspect.signature(cls.__init__).parameters.values()
    return any(p.kind is p.VAR_KEYWORD for p in params) or name in {p.name for p in params}


def _draw_T(draw: Any, profile: str, low: int = 2) -> int:
    return draw(st.integers(low, 40 if profile == "small" else 1000))


def _draw_betas(draw: Any, T: int) -> tuple[float, float]:
    b0 = draw(st.floats(1e-5, 1e-3))
    return b0, draw(st.floats(max(2 * b0, 1e-3), max(2 * b0, min(0.3, 20.0 / T))))


class TableRows:
    """Rows of a report that check one table of a scheduler class, one family per claim: a
    target with `evaluate` instead of `prepare` (the harness calls evaluate(target, config,
    tolerance)). cls: the class or "package.module:Class" (imported when first used); claims:
    what it claims; options: constructor options, fixed; families(rows, profile): families of
    its own instead of one per claim; rerun: the command a reproduction's --case line runs."""

    table = ""
    config_type = TableConfig

    def __init__(self, cls: Any, claims: Sequence[str], *, name: str | None = None,
                 options: dict[str, Any] | None = None, rerun: str = "",
                 families: Callable[[Any, str], list[Family]] | None = None) -> None:
        self._cls, self.claims = cls, tuple(claims)
        self.options = tuple(sorted((options or {}).items()))
        short = cls.rpartition(":")[2] if isinstance(cls, str) else cls.__name__
        self.name = name or f"{short}.{self.table}"
        self.rerun, self._families = rerun, families

    @functools.cached_property
    def cls(self) -> Any:
        return load_object(self._cls) if isinstance(self._cls, str) else self._cls

    def accepts(self, name: str) -> bool:
        return _accepts(self.cls, name)

    def build(self, cfg: SchedulerConfig) -> Any:
        return self.cls(**cfg.kwargs(self.accepts))

    def code(self, cfg: TableConfig) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in cfg.kwargs(self.accepts).items())
        mu = "" if cfg.mu is None else f", mu={cfg.mu!r}"
        case = f'{{"target": "{self.name}", "config": {config_json(cfg)}}}'
        return (f"{self.cls.__module__}.{self.cls.__qualname__}({args}).set_timesteps({cfg.n}{mu}); "
                f"claim {cfg.claim!r}" + (f"\n  rerun: {self.rerun} --case '{case}'" if self.rerun else ""))

    def tolerance(self, cfg: TableConfig) -> Tolerance:
        raise NotImplementedError

    def families(self, profile: str) -> list[Family]:
        return self._families(self, profile) if self._families else self.default_families(profile)

    def default_families(self, profile: str) -> list[Family]:
        raise NotImplementedError

    def spacings(self) -> tuple[str | None, ...]:
        return SPACINGS if self.accepts("timestep_spacing") else (None,)

    def configs(self, profile: str, claim: str, spacing: str | None = None,
                options: tuple[tuple[str, Any], ...] = (), n_max: Callable[[int], int] = lambda T: T,
                n_min: int = 1, schedules: Sequence[str] = ("linear",),
                spacings: Sequence[str | None] = (), shift: bool = False) -> Any:
        """A strategy of TableConfig: T ≤ 40 ("small") or ≤ 1000, any n in {n_min..n_max(T)}, the
        β range, the beta_schedule (of `schedules`), the spacing (or one of `spacings`), and for
        a flow claim the shift ∈ [1, 6] (or μ ∈ [0.3, 1.5] with use_dynamic_shifting)."""
        fixed = dict(self.options)
        T_min = next(T for T in range(2, 2 * n_min + 3) if n_max(T) >= n_min)

        @st.composite
        def draw(draw: Any) -> TableConfig:
            T = _draw_T(draw, profile, T_min)
            b0, b1 = _draw_betas(draw, T)
            extra, mu = dict(options), None
            if shift and fixed.get("use_dynamic_shifting"):
                mu = draw(st.floats(0.3, 1.5))
            elif shift and self.accepts("shift") and "shift" not in fixed:
                extra["shift"] = draw(st.floats(1.0, 6.0))
            return TableConfig(
                T=T, n=draw(st.integers(n_min, n_max(T))), beta_start=b0, beta_end=b1,
                beta_schedule=draw(st.sampled_from(list(schedules))),
                spacing=draw(st.sampled_from(list(spacings))) if spacings else spacing,
                options=tuple(sorted({**fixed, **extra}.items())), mu=mu, claim=claim)

        return draw()


class ScheduleRows(TableRows):
    """`alphas_cumprod` of a class, for each beta_schedule of `claims` (and, with `rescale`,
    under rescale_betas_zero_snr), against the spec (`check_schedule`)."""

    table = "alphas_cumprod"

    def __init__(self, cls: Any, claims: Sequence[str] = ("linear",), *, rescale: bool = False,
                 **kw: Any) -> None:
        super().__init__(cls, claims, **kw)
        self.rescale = rescale

    def default_families(self, profile: str) -> list[Family]:
        out = [Family(f"beta_schedule={c} vs spec", self.configs(profile, c, schedules=(c,)),
                      SCHEDULE_TOL) for c in self.claims]
        if self.rescale:
            out += [Family(f"beta_schedule={c}, rescale_betas_zero_snr vs spec",
                           self.configs(profile, c, schedules=(c,),
                                        options=(("rescale_betas_zero_snr", True),)), RESCALE_TOL)
                    for c in self.claims]
        return out

    def tolerance(self, cfg: TableConfig) -> Tolerance:
        return RESCALE_TOL if dict(cfg.options).get("rescale_betas_zero_snr") else SCHEDULE_TOL

    def evaluate(self, _target: Any, cfg: TableConfig, tol: Tolerance) -> CaseResult:
        try:
            s = self.build(cfg)
        except Exception as exc:
            return _case(cfg, self.code(cfg), "failed", f"the target raised {type(exc).__name__}: {exc}")
        return check_schedule(s, config=cfg, code=self.code(cfg))


class TimestepsRows(TableRows):
    """`timesteps` of a class, for each spacing of `claims`, against spec.timestep_grid
    (`check_timesteps`): built with timestep_spacing = that spacing where the class takes it,
    else its own grid claims it. read: how its timesteps list gives its grid."""

    table = "timesteps"

    def __init__(self, cls: Any, claims: Sequence[str], *, read: Callable = list, **kw: Any) -> None:
        unknown = [c for c in claims if c not in GRID_SPACINGS]
        if unknown:
            raise ValueError(f"timesteps claims must be among {', '.join(GRID_SPACINGS)}, got {unknown}")
        super().__init__(cls, claims, **kw)
        self.read = read

    def default_families(self, profile: str) -> list[Family]:
        own = not self.accepts("timestep_spacing")
        return [Family(f"timesteps: {c}{' (its own grid)' if own else ''}, any n",
                       self.configs(profile, c, None if own else c), TIMESTEPS_TOL,
                       "T and n drawn") for c in self.claims]

    def tolerance(self, cfg: TableConfig) -> Tolerance:
        return TIMESTEPS_TOL

    def evaluate(self, _target: Any, cfg: TableConfig, tol: Tolerance) -> CaseResult:
        try:
            s = self.build(cfg)
        except Exception as exc:
            return _case(cfg, self.code(cfg), "failed", f"the target raised {type(exc).__name__}: {exc}")
        return check_timesteps(s, cfg.n, cfg.claim, read=self.read, config=cfg, code=self.code(cfg))


class SigmasRows(TableRows):
    """`sigmas` of a class, for each construction of `claims` (names of SIGMAS), one family per
    spacing it takes (`check_sigmas`). grid, sigma_grid: how its timesteps and sigmas lists
    give one entry per grid time; end(s): the spec time of its final σ ("vp")."""

    table = "sigmas"

    def __init__(self, cls: Any, claims: Sequence[str], *, grid: Callable = list,
                 sigma_grid: Callable = list, end: Callable[[Any], int] = lambda s: 0,
                 **kw: Any) -> None:
        unknown = [c for c in claims if c not in SIGMAS]
        if unknown:
            raise ValueError(f"sigmas claims must be among {', '.join(SIGMAS)}, got {unknown}")
        super().__init__(cls, claims, **kw)
        self.grid, self.sigma_grid, self.end = grid, sigma_grid, end

    def default_families(self, profile: str) -> list[Family]:
        return [Family(f"sigmas: {c}, {sp or 'its own spacing'}, any n",
                       self.configs(profile, c, sp, SIGMAS[c].options, shift=c == "flow_shift"),
                       SIGMAS[c].tolerance, SIGMAS[c].description)
                for c in self.claims for sp in self.spacings()]

    def tolerance(self, cfg: TableConfig) -> Tolerance:
        return SIGMAS[cfg.claim].tolerance

    def evaluate(self, _target: Any, cfg: TableConfig, tol: Tolerance) -> CaseResult:
        code = self.code(cfg)
        try:
            s = self.build(cfg)
            plain = None
            if cfg.claim == "karras_grid":
                plain = self.cls(**{k: v for k, v in cfg.kwargs(self.accepts).items()
                                    if k != "use_karras_sigmas"})
        except Exception as exc:
            return _case(cfg, code, "failed", f"the target raised {type(exc).__name__}: {exc}")
        return check_sigmas(s, cfg.n, cfg.claim, grid=self.grid, sigma_grid=self.sigma_grid,
                            end=self.end(s), plain=plain, mu=cfg.mu, config=cfg, code=code)


def scheduler_rows(target: Any, grid: Sequence[str] | None = None,
                   sigmas: Sequence[str] | None = None, rerun: str = "") -> list[TableRows]:
    """The table rows of a `scheduler_target.SchedulerTarget`, beside its step families:
    alphas_cumprod for each beta_schedule of SCHEDULES it is drawn with (where it takes
    beta_schedule and has alphas_cumprod); timesteps for each spacing of `grid` (default: every
    timestep_spacing it takes, for a claim on a VP table); sigmas for each construction of
    `sigmas` (default: what its claim reads, "vp" for the EDM claims, "flow_shift" for the flow
    ones, none for the others)."""
    loop, options = target.claims.loop, dict(target.options)
    kw = dict(options=options, rerun=rerun)
    rows: list[TableRows] = []
    schedules = [c for c in target.schedules if c in SCHEDULES]
    probe = target.cls(**SchedulerConfig(T=10, n=5, options=target.options).kwargs(target.accepts))
    if loop != "flow" and target.accepts("beta_schedule") and hasattr(probe, "alphas_cumprod") \
            and schedules:
        rows.append(ScheduleRows(target.cls, schedules, name=f"{target.name}.alphas_cumprod", **kw))
    if grid is None:
        grid = SPACINGS if loop != "flow" and target.accepts("timestep_spacing") else ()
    if grid:
        rows.append(TimestepsRows(target.cls, grid, read=target.claims.grid,
                                  name=f"{target.name}.timesteps", **kw))
    if sigmas is None:
        sigmas = {"edm": ("vp",), "flow": ("flow_shift",)}.get(loop, ())
    lacks = [k for c in sigmas or () for k, _ in SIGMAS.get(c, SIGMAS["vp"]).options
             if not target.accepts(k)]
    if lacks:
        raise ValueError(f"{target.name} takes no {', '.join(dict.fromkeys(lacks))}: its sigmas "
                         f"cannot claim {', '.join(sigmas)}")
    if sigmas:
        rows.append(SigmasRows(target.cls, sigmas, grid=target.claims.grid,
                               sigma_grid=target.claims.sigma_grid, end=target.claims.end,
                               name=f"{target.name}.sigmas", **kw))
    return rows


__all__ = [
    "SCHEDULES", "SIGMAS", "SCHEDULE_TOL", "RESCALE_TOL", "TIMESTEPS_TOL", "Sigmas", "TableConfig",
    "TableRows", "ScheduleRows", "TimestepsRows", "SigmasRows", "check_schedule",
    "check_timesteps", "check_sigmas", "scheduler_rows", "train_steps", "table", "describe",
]
