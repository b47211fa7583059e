"""The σ's a flow-match scheduler's `set_timesteps` builds, against spec.flow.flow_sigmas, at
n = T (num_train_timesteps): there the two constructions meet, so a difference is the σ_min the
rebuilt grid ends at and nothing else.

spec.flow.flow_sigmas(n, s) is 1 − i/n, i = 0..n, shifted once by SD3 Eq. 23 (time_shift); at
n = T its nonzero σ's are time_shift(t/T, s), t = T..1, which is also the table diffusers'
flow-match schedulers build in their constructor (`sigmas` before set_timesteps). Their
set_timesteps(n) instead spreads n points uniformly from σ_max to σ_min of that table and shifts
them: with n = T and σ_min = 1/T that is the same grid again. The rows report which: the spec's
grid (agrees), the grid whose σ_min is the table's already shifted one, shifted a second time
(outside the spec: which σ_min a rebuilt grid ends at is a choice no paper makes, docs/errata.md
§5), or anything else (deviates). Each case also calls set_timesteps twice: rebuilding must give
the same grid.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from conformance.external.check import CaseResult
from conformance.external.diffusers_config import scheduler_class
from conformance.external.diffusers_families import _draw
from conformance.external.diffusers_rows import RowTarget
from conformance.external.diffusers_targets import TARGETS
from conformance.external.scheduler_target import CLAIMS
from conformance.external.targets import Family, Tolerance

FLOW_GRID_TOL = Tolerance(
    1.0,
    "flow σ rows at n = T: max_i |σ_i,diffusers − σ_i,spec|/σ_i over the T nonzero σ's, as a "
    "ratio to 8·2^-24 (diffusers forms t/T and the shift in float64 from a σ_min read out of "
    "its float32 table, then rounds to float32: a few float32 roundings); the final σ must be "
    "0 on both sides and the grid must have T + 1 entries; agrees when ≤ 1",
)

RTOL = 8 * 2.0**-24


@dataclass(frozen=True)
class FlowGridConfig:
    """A flow-match scheduler built with num_train_timesteps = T and `shift` (or, with `mu`,
    use_dynamic_shifting), its grid rebuilt by set_timesteps(T[, mu])."""

    scheduler: str
    T: int
    shift: float = 1.0
    mu: float | None = None
    shape: tuple[int, ...] = ()
    seed: int = 0

    def kwargs(self) -> dict[str, Any]:
        if self.mu is not None:
            return dict(num_train_timesteps=self.T, use_dynamic_shifting=True)
        return dict(num_train_timesteps=self.T, shift=self.shift)

    @property
    def s(self) -> float:
        """The shift of SD3 Eq. 23 it applies: e^μ under dynamic shifting, else `shift`."""
        return math.exp(self.mu) if self.mu is not None else self.shift

    def code(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs().items())
        mu = "" if self.mu is None else f", mu={self.mu!r}"
        return f"s = {self.scheduler}({args}); s.set_timesteps({self.T}{mu})"


def _ratio(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got − ref|/ref over the nonzero σ's, in units of RTOL (inf for another shape)."""
    if got.shape != ref.shape or got[-1] != 0.0:
        return math.inf
    return float(np.max(np.abs(got[:-1] - ref[:-1]) / ref[:-1])) / RTOL


def _show(v: np.ndarray) -> str:
    shown = [f"{x:.6g}" for x in v]
    return "[" + ", ".join(shown if len(shown) <= 7 else [*shown[:3], "…", *shown[-3:]]) + "]"


def _flow_grid_case(_target: Any, cfg: FlowGridConfig, tol: Tolerance) -> CaseResult:
    from spec.flow import flow_sigmas, time_shift

    s = scheduler_class(cfg.scheduler)(**cfg.kwargs())
    table = s.sigmas.double().numpy()  # the constructor's σ's, t = T..1
    read = CLAIMS[TARGETS[cfg.scheduler].claims].sigma_grid  # Heun: [σ_0, σ_1, σ_1, …] read
    mu = {} if cfg.mu is None else {"mu": cfg.mu}
    s.set_timesteps(cfg.T, **mu)
    got = np.array(read([float(v) for v in s.sigmas]))
    s.set_timesteps(cfg.T, **mu)
    again = np.array(read([float(v) for v in s.sigmas]))
    ref = flow_sigmas(cfg.T, cfg.s)
    ratio = _ratio(got, ref)
    r = CaseResult(cfg, ratio <= tol.rel and np.array_equal(got, again), ratio, [])
    if r.agrees:
        return r
    twice = np.append(time_shift(np.linspace(1.0, time_shift(1 / cfg.T, cfg.s), cfg.T), cfg.s), 0.0)
    head = (f"configuration: {cfg.code()}\nits sigmas = {_show(got)}\n"
            f"spec.flow.flow_sigmas({cfg.T}, {cfg.s!r}) = {_show(ref)} ({ratio:.3g}× the bound)")
    if not np.array_equal(got, again):
        r.detail = (f"{head}\na second set_timesteps({cfg.T}) gives {_show(again)}: rebuilding "
                    "changes its grid\nspec formula departed from: spec.flow.flow_sigmas, a "
                    "function of (n, shift) alone")
    elif _ratio(got, twice) <= tol.rel:
        r.kind = "outside"
        r.detail = (
            f"{head}\nits table (the constructor's sigmas, time_shift(t/T, s), t = T..1) ends at "
            f"σ_min = {table[-1]:.6g}; its rebuilt grid is {cfg.T} points uniform from 1 to that "
            f"σ_min, shifted again, so its last nonzero σ is time_shift(time_shift(1/T, s), s) = "
            f"{got[-2]:.6g} where the spec's (and its own table's) is time_shift(1/T, s) = "
            f"{ref[-2]:.6g}: σ_min is shifted twice and set_timesteps({cfg.T}) does not rebuild "
            "its own table. Which σ_min a rebuilt grid ends at is a choice the papers leave open "
            "(SD3 §5.3.2 gives Eq. 23's shift, not the grid); the spec's is 1 − i/n shifted once "
            "(docs/errata.md §5)\nspec formula departed from: spec.flow.flow_sigmas (the "
            "spec's choice of grid; the shift is SD3 Eq. 23)")
    else:
        r.detail = (f"{head}\nnot the spec's grid, nor the grid with σ_min shifted twice "
                    f"{_show(twice)}\nspec formula departed from: spec.flow.flow_sigmas "
                    "(SD3 Eq. 23 on 1 − i/n)")
    r.first = int(np.argmax(np.abs(got - ref))) if got.shape == ref.shape else 0
    return r


@st.composite
def _flow_grid_configs(draw, scheduler: str, profile: str, shift: Any = 1.0,
                       mu: Any = None) -> FlowGridConfig:
    T = draw(st.integers(2, 40 if profile == "small" else 1000))
    return FlowGridConfig(scheduler, T, _draw(draw, shift), _draw(draw, mu))


def flow_grid_rows(scheduler: str) -> RowTarget:
    """The σ rows of one flow-match scheduler (dynamic shifting where it takes it)."""

    def families(profile: str) -> list[Family]:
        note = "T drawn; n = T (set_timesteps(num_train_timesteps)), called twice"
        out = [
            Family("set_timesteps(T), shift = 1 vs spec.flow.flow_sigmas(T)",
                   _flow_grid_configs(scheduler, profile), FLOW_GRID_TOL, note),
            Family("set_timesteps(T), shift ∈ [1.5, 6] vs spec.flow.flow_sigmas(T, shift)",
                   _flow_grid_configs(scheduler, profile, st.floats(1.5, 6.0)), FLOW_GRID_TOL,
                   note),
        ]
        if "use_dynamic_shifting" in inspect.signature(scheduler_class(scheduler)).parameters:
            out.append(Family("set_timesteps(T, mu=μ), use_dynamic_shifting, μ ∈ [0.3, 1.5] vs "
                              "spec.flow.flow_sigmas(T, e^μ)",
                              _flow_grid_configs(scheduler, profile, mu=st.floats(0.3, 1.5)),
                              FLOW_GRID_TOL, note))
        return out

    return RowTarget(f"{scheduler}.sigmas", families, _flow_grid_case)


def flow_rows() -> list[RowTarget]:
    """The σ rows of every flow-match scheduler of TARGETS (those whose claim is a flow loop)."""
    return [flow_grid_rows(name) for name, target in TARGETS.items()
            if CLAIMS.get(getattr(target, "claims", ""), None) is not None
            and CLAIMS[target.claims].loop == "flow"]
