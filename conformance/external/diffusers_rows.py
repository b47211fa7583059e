"""diffusers' table rows: the public checks of `tables` on diffusers' classes. `alphas_cumprod`
against spec.linear_betas / cosine_betas (and rescale_zero_terminal_snr), `scheduler.timesteps`
against spec.timestep_grid, the Karras σ's against spec.edm.edm_sigmas, and the flow-match σ's
at n = T against spec.flow.flow_sigmas. Which schedulers
get which rows, and how their lists are read, comes from `TARGETS`. What is diffusers' own here
is the families: the grids are split by where diffusers' float arithmetic parts from the
spec's exact rounding (`linspace_tie`, `trailing_misround`, `trailing_extra`), so that every
member of a family behaves alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from conformance.external.diffusers_families import _draw, trailing_extra
from conformance.external.diffusers_targets import TARGETS
from conformance.external.scheduler_target import CLAIMS
from conformance.external.tables import (
    SIGMAS,
    TIMESTEPS_TOL,
    ScheduleRows,
    SigmasRows,
    TableConfig,
    TableRows,
    TimestepsRows,
)
from conformance.external.targets import Family
from spec.schedule import timestep_grid

RERUN = "python -m conformance.external diffusers"


SCHEDULE_ROWS = ScheduleRows("diffusers:DDIMScheduler", ("linear", "squaredcos_cap_v2"),
                             rescale=True, name="alphas_cumprod (both)", rerun=RERUN)
"""diffusers' `alphas_cumprod` against the spec's schedules (every scheduler shares the code)."""


# ---------------------------------------------------------------------------------------------
# The grid: where diffusers' float arithmetic parts from Lin et al.'s exact rounding


def linspace_tie(T: int, n: int) -> bool:
    """Whether diffusers' grid round(np.linspace(0, T − 1, n)) + 1 (τ rounded half to even in
    floats, then t = τ + 1) differs from the spec's exact round(1 + k(T−1)/(n−1)): at a tie x.5
    the two roundings always part, and the float linspace decides which values are ties."""
    got = (np.round(np.linspace(0, T - 1, n)) + 1).astype(np.int64)[::-1]
    return list(got) != list(timestep_grid(T, n, "linspace")[:-1])


def trailing_misround(T: int, n: int) -> bool:
    """Whether diffusers' float arange(T, 0, −T/n), rounded, differs from the exact round(T·(n−i)/n)
    (ties to even) on its first n entries: a tie that the float step pushes the other way."""
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


@st.composite
def _grid_configs(draw, profile: str, spacing: str, kind: str, offset: int = 0) -> TableConfig:
    T = draw(st.integers(2, 40 if profile == "small" else 1000))
    ns = [n for n in range(1, T + 1) if _grid_kind(T, n, spacing) == kind]
    if not ns:
        draw(st.nothing())
    return TableConfig(T=T, n=draw(st.sampled_from(ns)), spacing=spacing,
                       options=(("steps_offset", offset),) if offset else (), claim=spacing)


GRID_FAMILIES: tuple[tuple[str, str, str, int], ...] = (
    ("timesteps: leading, steps_offset=0", "leading", "exact", 0),
    ("timesteps: leading, steps_offset=1", "leading", "exact", 1),
    ("timesteps: linspace, no tie rounded apart", "linspace", "exact", 0),
    ("timesteps: linspace, a tie k·(T−1)/(n−1) = x.5 rounded apart (e.g. T=4, n=3)", "linspace", "tie", 0),
    ("timesteps: trailing, float arange exact", "trailing", "exact", 0),
    ("timesteps: trailing, float arange misrounds a tie (e.g. T=7, n=6)", "trailing", "misround", 0),
    ("timesteps: trailing, float arange adds τ = −1 (e.g. T=17, n=7)", "trailing", "extra", 0),
)


def grid_rows(scheduler: str) -> TimestepsRows:
    """The timesteps rows of one scheduler of TARGETS: one family per spacing it claims Lin et
    al.'s grid for and rounding case (GRID_FAMILIES); Heun's interleaved list read as its grid."""
    target = TARGETS[scheduler]

    def families(rows: TableRows, profile: str) -> list[Family]:
        return [Family(name, _grid_configs(profile, spacing, kind, offset), TIMESTEPS_TOL,
                       "T and n drawn; the family fixes the spacing and which rounding case")
                for name, spacing, kind, offset in GRID_FAMILIES if spacing in target.grid_spacings]

    return TimestepsRows(f"diffusers:{scheduler}", target.grid_spacings, read=target.grid,
                         rerun=RERUN, families=families)


# ---------------------------------------------------------------------------------------------
# Karras σ's: use_karras_sigmas against spec.edm.edm_sigmas (Karras et al. 2022, Eq. 5)


def karras_rows(scheduler: str) -> SigmasRows:
    """The Karras σ row of one scheduler of TARGETS: σ_min, σ_max of its table (DPM-Solver) or of
    its own grid (Euler, Heun); T, n, spacing (leading and linspace: integer first and last
    timesteps, where trailing can add τ = −1), beta_schedule and β range drawn. Only the σ's:
    the steps call the model at diffusers' own σ → τ interpolation, which no discrete claim
    has (SCOPE)."""
    target = TARGETS[scheduler]
    claim = "karras" if target.karras_from_table else "karras_grid"

    def families(rows: TableRows, profile: str) -> list[Family]:
        configs = rows.configs(profile, claim, options=SIGMAS[claim].options,
                               n_max=target.karras_n_max, n_min=2, spacings=("leading", "linspace"),
                               schedules=("linear", "scaled_linear", "squaredcos_cap_v2"))
        return [Family("use_karras_sigmas vs spec.edm.edm_sigmas (ρ = 7)", configs,
                       SIGMAS[claim].tolerance,
                       "T, n, spacing (leading, linspace), beta_schedule and β range drawn")]

    return SigmasRows(f"diffusers:{scheduler}", (claim,), grid=target.grid,
                      sigma_grid=target.sigma_grid, rerun=RERUN, families=families)


# ---------------------------------------------------------------------------------------------
# Flow σ's at n = T: spec.flow.flow_sigmas, where diffusers' construction meets the spec's


@st.composite
def _flow_grid_configs(draw, profile: str, shift: Any = 1.0, mu: Any = None) -> TableConfig:
    """n = T (set_timesteps(num_train_timesteps)): the only n at which diffusers' n points from
    σ_max to its table's σ_min and spec.flow.flow_sigmas' 1 − i/n can be the same grid."""
    T = draw(st.integers(2, 40 if profile == "small" else 1000))
    options = (("use_dynamic_shifting", True),) if mu is not None else (("shift", _draw(draw, shift)),)
    return TableConfig(T=T, n=T, options=options, mu=_draw(draw, mu), claim="flow_grid")


def flow_grid_rows(scheduler: str) -> SigmasRows:
    """The σ rows of a flow-match scheduler of TARGETS at n = T (`SIGMAS["flow_grid"]`): shift 1
    and shift ∈ [1.5, 6], and μ ∈ [0.3, 1.5] where it takes use_dynamic_shifting. With shift ≠ 1
    diffusers' σ_min is shifted twice: outside the spec, a choice of grid (docs/errata.md §5)."""
    claims = CLAIMS[TARGETS[scheduler].claims]
    rule = SIGMAS["flow_grid"]

    def families(rows: TableRows, profile: str) -> list[Family]:
        note = "T drawn; n = T (set_timesteps(num_train_timesteps))"
        out = [Family("set_timesteps(T), shift = 1 vs spec.flow.flow_sigmas(T)",
                      _flow_grid_configs(profile), rule.tolerance, note),
               Family("set_timesteps(T), shift ∈ [1.5, 6] vs spec.flow.flow_sigmas(T, shift)",
                      _flow_grid_configs(profile, st.floats(1.5, 6.0)), rule.tolerance, note)]
        if rows.accepts("use_dynamic_shifting"):
            out.append(Family("set_timesteps(T, mu=μ), use_dynamic_shifting, μ ∈ [0.3, 1.5] vs "
                              "spec.flow.flow_sigmas(T, e^μ)",
                              _flow_grid_configs(profile, mu=st.floats(0.3, 1.5)), rule.tolerance,
                              note))
        return out

    return SigmasRows(f"diffusers:{scheduler}", ("flow_grid",), grid=claims.grid,
                      sigma_grid=claims.sigma_grid, rerun=RERUN, families=families)


def row_targets() -> list[TableRows]:
    """Every row of the diffusers report, in its order: schedules, grids, Karras σ's, flow σ's."""
    return [SCHEDULE_ROWS, *(grid_rows(name) for name, t in TARGETS.items() if t.grid_spacings),
            *(karras_rows(name) for name, t in TARGETS.items() if t.karras),
            *(flow_grid_rows(name) for name, t in TARGETS.items()
              if getattr(t, "claims", None) in CLAIMS and CLAIMS[t.claims].loop == "flow")]
