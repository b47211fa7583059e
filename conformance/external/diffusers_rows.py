"""The rows that check one piece of a diffusers scheduler on its own, against the spec function
that defines it: `alphas_cumprod` against spec.linear_betas / cosine_betas (and
rescale_zero_terminal_snr), `scheduler.timesteps` against spec.timestep_grid, and the Karras σ's
against spec.edm.edm_sigmas. Which schedulers each row reads comes from `TARGETS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from conformance.external.check import CaseResult, FamilyResult, check_family
from conformance.external.diffusers_config import scheduler_class, spec_time
from conformance.external.diffusers_families import trailing_extra
from conformance.external.diffusers_targets import TARGETS
from conformance.external.targets import Family, Tolerance


@dataclass(frozen=True)
class RowTarget:
    """A row of the report that checks one piece of a scheduler (a target with its own
    `evaluate(target, config, tol)` instead of `prepare`)."""

    name: str
    make_families: Callable[[str], list[Family]]
    evaluate: Callable[[Any, Any, Tolerance], CaseResult]

    def families(self, profile: str) -> list[Family]:
        return self.make_families(profile)


# ---------------------------------------------------------------------------------------------
# The schedule: alphas_cumprod against the spec's betas


SCHEDULE_TOL = Tolerance(
    1.0,
    "schedule rows: the ratio of |ᾱ_diffusers − ᾱ_spec|/ᾱ_spec to the float32 bound "
    "Σ_{s≤t} 3·2^-24·(1 + β_s/(1 − β_s)) (each β_s and 1 − β_s rounded once to float32 and the "
    "running product once per step); agrees when ≤ 1",
)


@dataclass(frozen=True)
class ScheduleConfig:
    T: int
    beta_schedule: str
    beta_start: float
    beta_end: float
    shape: tuple[int, ...] = ()
    seed: int = 0


def _schedule_case(_target: Any, cfg: ScheduleConfig, tol: Tolerance) -> CaseResult:
    from spec.schedule import VPSchedule, cosine_betas, linear_betas

    s = scheduler_class("DDIMScheduler")(
        num_train_timesteps=cfg.T, beta_schedule=cfg.beta_schedule, beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
    )
    ab = s.alphas_cumprod.double().numpy()
    if cfg.beta_schedule == "linear":
        betas, name = linear_betas(cfg.T, cfg.beta_start, cfg.beta_end), "spec.linear_betas (DDPM §4)"
    else:
        betas, name = cosine_betas(cfg.T), "spec.cosine_betas (Nichol & Dhariwal 2021, Eq. 17)"
    ref = VPSchedule(betas).alpha_bar[1:]
    bound = np.cumsum(3 * 2.0**-24 * (1 + betas / (1 - betas)))
    ratio = np.abs(ab - ref) / ref / bound
    worst = int(np.argmax(ratio))
    r = CaseResult(cfg, bool(ratio[worst] <= tol.rel), float(ratio[worst]), [])
    if not r.agrees:
        r.first = worst
        r.detail = (
            f"configuration: DDIMScheduler(num_train_timesteps={cfg.T}, beta_schedule="
            f"{cfg.beta_schedule!r}, beta_start={cfg.beta_start!r}, beta_end={cfg.beta_end!r})\n"
            f"alphas_cumprod[{worst}] = {ab[worst]!r}; spec ᾱ_{worst + 1} = {ref[worst]!r} "
            f"({ratio[worst]:.3g}× the float32 bound)\nspec formula departed from: {name}"
        )
    return r


def _sqrt_ab_bound(betas: np.ndarray) -> np.ndarray:
    """The float32 bound on |√ᾱ'_diffusers − √ᾱ'_spec| after rescaling (t = 1..T).

    diffusers rescales in float32: the running product and its square root (t + 1 roundings of
    √ᾱ_t relatively, plus each β_s once), the shift √ᾱ_t − √ᾱ_T and the scale s_1/(s_1 − s_T)
    (which magnifies the absolute errors of √ᾱ_t and √ᾱ_T by s_1/(s_1 − s_T)), then ᾱ' → β' →
    ᾱ' again (another t roundings, relatively). Bound: 4·u·(t + 4)·(1 + s_1/(s_1 − s_T)), u = 2^-24.
    """
    s = np.sqrt(np.cumprod(1 - betas))
    t = np.arange(1, len(betas) + 1)
    return 4 * 2.0**-24 * (t + 4) * (1 + s[0] / (s[0] - s[-1]))


def _rescale_case(_target: Any, cfg: ScheduleConfig, tol: Tolerance) -> CaseResult:
    from spec.schedule import VPSchedule, cosine_betas, linear_betas, rescale_zero_terminal_snr

    s = scheduler_class("DDIMScheduler")(
        num_train_timesteps=cfg.T, beta_schedule=cfg.beta_schedule, beta_start=cfg.beta_start,
        beta_end=cfg.beta_end, rescale_betas_zero_snr=True,
    )
    ab = s.alphas_cumprod.double().numpy()
    betas = (linear_betas(cfg.T, cfg.beta_start, cfg.beta_end) if cfg.beta_schedule == "linear"
             else cosine_betas(cfg.T))
    ref = VPSchedule(rescale_zero_terminal_snr(betas)).alpha_bar[1:]
    ratio = np.abs(np.sqrt(ab) - np.sqrt(ref)) / _sqrt_ab_bound(betas)
    worst = int(np.argmax(ratio))
    zero = ab[-1] == 0.0 and ref[-1] == 0.0  # SNR(T) = 0 exactly on both sides
    r = CaseResult(cfg, bool(zero and ratio[worst] <= tol.rel), float(ratio[worst]), [])
    if not r.agrees:
        r.first = worst
        r.detail = (
            f"configuration: DDIMScheduler(num_train_timesteps={cfg.T}, beta_schedule="
            f"{cfg.beta_schedule!r}, beta_start={cfg.beta_start!r}, beta_end={cfg.beta_end!r}, "
            f"rescale_betas_zero_snr=True)\nalphas_cumprod[{worst}] = {ab[worst]!r}; spec ᾱ'_"
            f"{worst + 1} = {ref[worst]!r} ({ratio[worst]:.3g}× the float32 bound on √ᾱ'); "
            f"ᾱ'_T: diffusers {ab[-1]!r}, spec {ref[-1]!r}\n"
            "spec formula departed from: spec.rescale_zero_terminal_snr (Lin et al. 2023, Algorithm 1)"
        )
    return r


RESCALE_TOL = Tolerance(
    1.0,
    "rescaled schedule rows: ᾱ'_T = 0 exactly on both sides, and the ratio of |√ᾱ'_diffusers − "
    "√ᾱ'_spec| to the float32 bound 4·2^-24·(t + 4)·(1 + s_1/(s_1 − s_T)) (s = √ᾱ before "
    "rescaling; the shift by s_T magnifies absolute errors by s_1/(s_1 − s_T)); agrees when ≤ 1",
)


@st.composite
def _schedule_configs(draw, schedule: str, profile: str) -> ScheduleConfig:
    T = draw(st.integers(2, 40 if profile == "small" else 1000))
    b0 = draw(st.floats(1e-5, 1e-3))
    b1 = draw(st.floats(max(2 * b0, 1e-3), max(2 * b0, min(0.3, 20.0 / T))))
    return ScheduleConfig(T, schedule, b0, b1)


def _schedule_case_or_rescale(target: Any, cfg: ScheduleConfig, tol: Tolerance) -> CaseResult:
    return (_rescale_case if tol is RESCALE_TOL else _schedule_case)(target, cfg, tol)


def _schedule_families(profile: str) -> list[Family]:
    return [
        *(Family(f"beta_schedule={schedule} vs spec", _schedule_configs(schedule, profile),
                 SCHEDULE_TOL) for schedule in ("linear", "squaredcos_cap_v2")),
        *(Family(f"beta_schedule={schedule}, rescale_betas_zero_snr vs spec",
                 _schedule_configs(schedule, profile), RESCALE_TOL)
          for schedule in ("linear", "squaredcos_cap_v2")),
    ]


SCHEDULE_ROWS = RowTarget("alphas_cumprod (both)", _schedule_families, _schedule_case_or_rescale)
"""diffusers' `alphas_cumprod` against the spec's schedules (both schedulers share the code)."""


def schedule_results(profile: str, examples: int, derandomize: bool | None = None) -> list[FamilyResult]:
    """The schedule rows, checked."""
    return [check_family(SCHEDULE_ROWS, fam, examples, derandomize=derandomize)
            for fam in SCHEDULE_ROWS.families(profile)]


# ---------------------------------------------------------------------------------------------
# The grid: scheduler.timesteps against spec.timestep_grid (Lin et al. 2023, Table 2)


GRID_TOL = Tolerance(
    0.0,
    "grid rows: scheduler.timesteps mapped to t = τ + 1 must equal spec.timestep_grid(T, n, "
    "spacing) without its final 0, entry for entry (integers: no tolerance); the value is the "
    "number of entries that differ (a grid of another length counts every entry)",
)


@dataclass(frozen=True)
class GridConfig:
    scheduler: str
    T: int
    n: int
    spacing: str
    steps_offset: int = 0
    shape: tuple[int, ...] = ()
    seed: int = 0


def linspace_tie(T: int, n: int) -> bool:
    """Whether diffusers' grid round(np.linspace(0, T − 1, n)) + 1 (τ rounded half to even in
    floats, then t = τ + 1) differs from the spec's exact round(1 + k(T−1)/(n−1)): at a tie x.5
    the two roundings always part, and the float linspace decides which values are ties."""
    from spec.schedule import timestep_grid

    got = (np.round(np.linspace(0, T - 1, n)) + 1).astype(np.int64)[::-1]
    return list(got) != list(timestep_grid(T, n, "linspace")[:-1])


def trailing_misround(T: int, n: int) -> bool:
    """Whether diffusers' float arange(T, 0, −T/n), rounded, differs from the exact round(T·(n−i)/n)
    (ties to even) on its first n entries: a tie that the float step pushes the other way."""
    from spec.schedule import timestep_grid

    got = np.round(np.arange(T, 0, -T / n)).astype(np.int64)[:n]
    return list(got) != list(timestep_grid(T, n, "trailing")[:-1])


def _grid_kind(T: int, n: int, spacing: str) -> str:
    if spacing == "linspace":
        return "tie" if linspace_tie(T, n) else "exact"
    if spacing == "trailing":
        if trailing_extra(T, n):
            return "extra"
        return "misround" if trailing_misround(T, n) else "exact"
    return "exact"


def _grid_case(_target: Any, cfg: GridConfig, tol: Tolerance) -> CaseResult:
    from spec.schedule import timestep_grid

    s = scheduler_class(cfg.scheduler)(num_train_timesteps=cfg.T, timestep_spacing=cfg.spacing,
                               steps_offset=cfg.steps_offset)
    code = (f"{cfg.scheduler}(num_train_timesteps={cfg.T}, timestep_spacing={cfg.spacing!r}, "
            f"steps_offset={cfg.steps_offset}).set_timesteps({cfg.n})")
    ref = [int(t) for t in timestep_grid(cfg.T, cfg.n, cfg.spacing)[:-1]]
    try:
        s.set_timesteps(cfg.n)
        raw = TARGETS[cfg.scheduler].grid([float(tau) for tau in s.timesteps])  # Heun: [0::2]
        got = [spec_time(int(tau)) for tau in raw]
    except Exception as exc:
        return CaseResult(cfg, False, math.inf, [], 0,
                          f"configuration: {code}\nthe target raised {type(exc).__name__}: {exc}")
    wrong = [i for i in range(max(len(got), len(ref)))
             if i >= len(got) or i >= len(ref) or got[i] != ref[i]]
    r = CaseResult(cfg, not wrong, float(len(wrong)), [])
    if wrong:
        i = wrong[0]
        r.first = i
        r.detail = (
            f"configuration: {code}\nscheduler.timesteps + 1 = {got}\n"
            f"spec.timestep_grid({cfg.T}, {cfg.n}, {cfg.spacing!r})[:-1] = {ref}\n"
            f"first entry that parts: index {i}; {len(wrong)} of {max(len(got), len(ref))} differ\n"
            f"spec formula departed from: spec.timestep_grid, {cfg.spacing} spacing "
            "(Lin et al. 2023, Table 2), in the spec's t = τ + 1"
        )
    return r


@st.composite
def _grid_configs(draw, scheduler: str, profile: str, spacing: str, kind: str,
                  offset: int = 0) -> GridConfig:
    T = draw(st.integers(2, 40 if profile == "small" else 1000))
    ns = [n for n in range(1, T + 1) if _grid_kind(T, n, spacing) == kind]
    if not ns:
        draw(st.nothing())
    return GridConfig(scheduler, T, draw(st.sampled_from(ns)), spacing, offset)


GRID_FAMILIES: tuple[tuple[str, str, str, int], ...] = (
    ("timesteps: leading, steps_offset=0", "leading", "exact", 0),
    ("timesteps: leading, steps_offset=1", "leading", "exact", 1),
    ("timesteps: linspace, no tie rounded apart", "linspace", "exact", 0),
    ("timesteps: linspace, a tie k·(T−1)/(n−1) = x.5 rounded apart (e.g. T=4, n=3)", "linspace", "tie", 0),
    ("timesteps: trailing, float arange exact", "trailing", "exact", 0),
    ("timesteps: trailing, float arange misrounds a tie (e.g. T=7, n=6)", "trailing", "misround", 0),
    ("timesteps: trailing, float arange adds τ = −1 (e.g. T=17, n=7)", "trailing", "extra", 0),
)


def grid_rows(scheduler: str) -> RowTarget:
    """The grid rows of one scheduler of TARGETS: one family per spacing it claims Lin et al.'s
    grid for and rounding case (GRID_FAMILIES)."""
    spacings = TARGETS[scheduler].grid_spacings

    def families(profile: str) -> list[Family]:
        return [Family(name, _grid_configs(scheduler, profile, spacing, kind, offset), GRID_TOL,
                       "T and n drawn; the family fixes the spacing and which rounding case")
                for name, spacing, kind, offset in GRID_FAMILIES if spacing in spacings]

    return RowTarget(f"{scheduler}.timesteps", families, _grid_case)


def grid_results(profile: str, examples: int, derandomize: bool | None = None) -> list[FamilyResult]:
    """scheduler.timesteps (t = τ + 1) against spec.timestep_grid, per spacing: DDIM and DDPM,
    and the leading / trailing grids of Euler and Heun (Heun's interleaved list read as its
    grid, timesteps[0::2]; their linspace is unrounded, fractional τ: the step rows report it)."""
    rows = [grid_rows(name) for name, target in TARGETS.items() if target.grid_spacings]
    return [check_family(row, fam, examples, derandomize=derandomize)
            for row in rows for fam in row.families(profile)]


# ---------------------------------------------------------------------------------------------
# Karras σ's: use_karras_sigmas against spec.edm.edm_sigmas (Karras et al. 2022, Eq. 5)


KARRAS_TOL = Tolerance(
    1.0,
    "Karras σ rows: max_i |σ_i,diffusers − σ_i,spec|/σ_i,spec over the n σ's before the final 0, as "
    "a ratio to the float32 bound 16·2^-24 (σ_min, σ_max = √((1−ᾱ)/ᾱ) formed in float32, ~4 "
    "roundings each, carried through Eq. 5 as a relative error; the result cast to float32) plus "
    "EPS/ᾱ at the endpoints (spec.edm.vp_to_edm's safe_div(1 − ᾱ, ᾱ) adds EPS = 1e-12 to ᾱ, "
    "which the cosine schedule's ᾱ_T ~ 5e-7 makes ~2e-6); the final σ must be 0 on both "
    "sides; agrees when ≤ 1",
)


@dataclass(frozen=True)
class KarrasConfig:
    scheduler: str
    T: int
    n: int
    spacing: str
    beta_schedule: str
    beta_start: float
    beta_end: float
    shape: tuple[int, ...] = ()
    seed: int = 0

    def code(self) -> str:
        return (f"{self.scheduler}(num_train_timesteps={self.T}, beta_schedule={self.beta_schedule!r}, "
                f"beta_start={self.beta_start!r}, beta_end={self.beta_end!r}, timestep_spacing="
                f"{self.spacing!r}, use_karras_sigmas=True).set_timesteps({self.n})")


def karras_endpoints(cfg: KarrasConfig) -> tuple[float, float, str, float]:
    """(σ_min, σ_max, where from) that the scheduler's Karras σ's claim, in the spec's σ_t:
    Euler and Heun take the σ's of their own grid's last and first timesteps (set_timesteps
    without use_karras_sigmas, τ → t = τ + 1); DPMSolverMultistep takes the whole table's, σ_1
    and σ_T. σ_t = √((1 − ᾱ_t)/ᾱ_t) of the scheduler's alphas_cumprod, by spec.edm.vp_to_edm.
    The fourth value is the smaller ᾱ of the two (for the bound's safe_div term)."""
    from spec.edm import vp_to_edm

    plain = scheduler_class(cfg.scheduler)(num_train_timesteps=cfg.T, beta_schedule=cfg.beta_schedule,
                                   beta_start=cfg.beta_start, beta_end=cfg.beta_end,
                                   timestep_spacing=cfg.spacing)
    ab = plain.alphas_cumprod.double().numpy()  # ᾱ_{τ+1}

    def sigma(t: int) -> float:
        return float(vp_to_edm(ab[t - 1], np.zeros(1))[1])

    if TARGETS[cfg.scheduler].karras_from_table:
        return sigma(1), sigma(cfg.T), "σ_1 and σ_T of the table", float(ab[-1])
    plain.set_timesteps(cfg.n)
    ts = [spec_time(int(v)) for v in plain.timesteps]
    return (sigma(ts[-1]), sigma(ts[0]), f"σ at the {cfg.spacing} grid's t = {ts[-1]} and t = {ts[0]}",
            float(ab[ts[0] - 1]))


def _karras_case(_target: Any, cfg: KarrasConfig, tol: Tolerance) -> CaseResult:
    from spec.edm import edm_sigmas

    s = scheduler_class(cfg.scheduler)(num_train_timesteps=cfg.T, beta_schedule=cfg.beta_schedule,
                               beta_start=cfg.beta_start, beta_end=cfg.beta_end,
                               timestep_spacing=cfg.spacing, use_karras_sigmas=True)
    s.set_timesteps(cfg.n)
    got = np.array(TARGETS[cfg.scheduler].sigma_grid(s.sigmas.double().numpy()))  # Heun: [0::2], 0
    from spec.core import EPS

    lo, hi, where, ab_min = karras_endpoints(cfg)
    ref = edm_sigmas(cfg.n, lo, hi)
    if got.shape != ref.shape:
        ratio, worst = math.inf, 0
    else:
        rel = np.abs(got[:-1] - ref[:-1]) / ref[:-1] / (16 * 2.0**-24 + EPS / ab_min)
        worst = int(np.argmax(rel))
        ratio = float(rel[worst]) if got[-1] == 0.0 else math.inf
    r = CaseResult(cfg, bool(ratio <= tol.rel), ratio, [])
    if not r.agrees:
        r.first = worst
        r.detail = (
            f"configuration: {cfg.code()}\nsigmas = {[float(v) for v in got]}\n"
            f"spec.edm.edm_sigmas({cfg.n}, σ_min={lo!r}, σ_max={hi!r}) = {[float(v) for v in ref]} "
            f"(σ_min, σ_max: {where})\nfirst entry that parts: index {worst} ({ratio:.3g}× the "
            "bound)\nspec formula departed from: spec.edm.edm_sigmas (Karras et al. 2022, "
            "Eq. 5, ρ = 7)"
        )
    return r


@st.composite
def _karras_configs(draw, scheduler: str, profile: str) -> KarrasConfig:
    T = draw(st.integers(3, 40 if profile == "small" else 1000))
    # leading and linspace grids: integer first and last timesteps (trailing can add τ = −1)
    spacing = draw(st.sampled_from(["leading", "linspace"]))
    n = draw(st.integers(2, TARGETS[scheduler].karras_n_max(T)))
    b0 = draw(st.floats(1e-5, 1e-3))
    b1 = draw(st.floats(max(2 * b0, 1e-3), max(2 * b0, min(0.3, 20.0 / T))))
    schedule = draw(st.sampled_from(["linear", "scaled_linear", "squaredcos_cap_v2"]))
    return KarrasConfig(scheduler, T, n, spacing, schedule, b0, b1)


def karras_results(profile: str, examples: int, derandomize: bool | None = None) -> list[FamilyResult]:
    """scheduler.sigmas with use_karras_sigmas=True against spec.edm.edm_sigmas (ρ = 7).

    Only the σ's: their steps call the model at timesteps of their own σ → τ interpolation
    (fractional for Euler and Heun, rounded for DPM), which no discrete claim has (SCOPE)."""
    rows = [karras_rows(name) for name, target in TARGETS.items() if target.karras]
    return [check_family(row, fam, examples, derandomize=derandomize)
            for row in rows for fam in row.families(profile)]


def karras_rows(scheduler: str) -> RowTarget:
    """The Karras σ row of one scheduler of TARGETS."""

    def families(profile: str) -> list[Family]:
        return [Family("use_karras_sigmas vs spec.edm.edm_sigmas (ρ = 7)",
                       _karras_configs(scheduler, profile), KARRAS_TOL,
                       "T, n, spacing (leading, linspace), beta_schedule and β range drawn")]

    return RowTarget(f"{scheduler}.sigmas", families, _karras_case)


def row_targets() -> list[RowTarget]:
    """Every row of the diffusers report, in its order: schedules, grids, Karras σ's, flow σ's."""
    from conformance.external.diffusers_flow_rows import flow_rows

    return [SCHEDULE_ROWS, *(grid_rows(name) for name, t in TARGETS.items() if t.grid_spacings),
            *(karras_rows(name) for name, t in TARGETS.items() if t.karras), *flow_rows()]

