"""The sampler table: one entry per sampler, the math side (`runtime.samplers` is the runtime's).

Every sampler is one function with one calling convention,

    name_sample(sched, model, x_T, grid, noise=None, **options) -> x_0

`grid` is the decreasing sequence the sampler walks, of one of three kinds (GRID_KINDS); `sched`
is the schedule that kind needs; x_T is the state at grid[0] in the sampler's own scale;
`noise` is the injected noise of a stochastic sampler (None for a deterministic one, which
refuses any other value); options (η, clip) are keyword-only. Model evaluations are counted
for S steps (a grid of S + 1 values ending at 0) on a table of T steps. `order` is the order
of accuracy of the ODE solver (None for a stochastic sampler), measured by
tests/test_sampler_order.py and conformance/test_order.py for every entry that has one.

A new sampler is its spec module, one entry here, its runtime twin with one entry in
`runtime.samplers`, its conformance records and its docs row; conformance/test_sampler_table.py
fails when the two tables disagree.
"""

from collections.abc import Callable
from dataclasses import dataclass

from spec.ddim import ddim_sample_strided
from spec.ddpm import ddpm_sample
from spec.dpm_solver import dpm_solver_pp_2m_sample
from spec.edm import edm_sample_euler, edm_sample_heun
from spec.pf_ode import pf_ode_sample_euler

__all__ = ["SAMPLERS"]

GRID_KINDS: dict[str, str] = {
    "times": "integer table times T ≥ τ_0 > … > τ_n = 0 of a discrete VPSchedule",
    "sigmas": "EDM noise levels σ_0 > … > σ_N ≥ 0 (Karras Eq. 5) of a continuous VP schedule; "
              "x_T is EDM's x̃ at σ_0",
    "continuous": "continuous times 1 ≥ t_0 > … > t_N ≥ 0 of a continuous VP schedule",
}
"""Grid kind → what the grid holds (and which schedule the sampler takes)."""


@dataclass(frozen=True)
class Cost:
    """Model evaluations of one sample: T (every time of the table) when `every_time`, else
    per_step·S + extra for S steps. Shapes: scalars."""

    per_step: int = 1
    extra: int = 0
    every_time: bool = False

    def __call__(self, steps: int, T: int) -> int:
        return T if self.every_time else self.per_step * steps + self.extra

    def __str__(self) -> str:
        if self.every_time:
            return "T"
        head = "S" if self.per_step == 1 else f"{self.per_step}·S"
        return head if self.extra == 0 else f"{head} {'+' if self.extra > 0 else '−'} {abs(self.extra)}"


@dataclass(frozen=True)
class Sampler:
    """One sampler: its `--sampler` name, spec function, grid kind, cost, order, whether it
    takes noise, and the paper and algorithm it follows."""

    name: str
    sample: Callable
    grid: str
    evaluations: Cost
    order: int | None
    stochastic: bool
    paper: str


SAMPLERS: dict[str, Sampler] = {s.name: s for s in (
    Sampler("ddim", ddim_sample_strided, "times", Cost(), 1, True,
            "DDIM η = 0 (Song, Meng & Ermon 2021, Eq. 12; stochastic for η > 0)"),
    Sampler("ddpm", ddpm_sample, "times", Cost(every_time=True), None, True,
            "DDPM ancestral sampling (Ho et al. 2020, Algorithm 2)"),
    Sampler("pf-ode", pf_ode_sample_euler, "continuous", Cost(), 1, False,
            "PF-ODE Euler (Song et al. 2021, Eq. 13)"),
    Sampler("euler", edm_sample_euler, "sigmas", Cost(), 1, False,
            "Euler, EDM form (Karras et al. 2022, Algorithm 1 without correction)"),
    Sampler("heun", edm_sample_heun, "sigmas", Cost(2, -1), 2, False,
            "Heun, EDM Algorithm 1 (Karras et al. 2022)"),
    Sampler("dpm-solver++", dpm_solver_pp_2m_sample, "times", Cost(), 2, False,
            "DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2)"),
)}
"""`--sampler` name → its entry. Heun's 2·S − 1: the last step, into σ = 0, is Euler's."""
