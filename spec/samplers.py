"""The sampler table: one entry per sampler, the math side (`runtime.samplers` is the runtime's).

Every sampler is one function with one calling convention,

    name_sample(sched, model, x_T, grid, noise=None, **options) -> x_0

`grid` is the decreasing sequence the sampler walks, of one of four kinds (GRID_KINDS); `sched`
is the schedule that kind needs; x_T is the state at grid[0] in the sampler's own scale;
`noise` is the injected noise of a stochastic sampler (None for a deterministic one, which
refuses any other value); options (η, clip, UniPC's order, …) are keyword-only. Model
evaluations are counted for S steps (a grid of S + 1 values ending at 0) on a table of T steps.
`order` is the order of accuracy of the ODE solver with its default options (None for a
stochastic sampler); `variants` the orders it has with other options (as data, each an `Order`).
Both are measured by conformance/test_order.py (runtime, every variant) and
tests/test_sampler_order.py (spec, the default options; each variant tied to its runtime twin).

A new sampler is its spec module, one entry here, its runtime twin with one entry in
`runtime.samplers`, its conformance records and its docs row; conformance/test_sampler_table.py
fails when the two tables disagree.
"""

from collections.abc import Callable
from dataclasses import dataclass

from spec.ddim import ddim_sample_strided
from spec.ddpm import ddpm_sample
from spec.dpm_solver import (
    dpm_solver_pp_2m_sample,
    dpm_solver_pp_2s_sample,
    dpm_solver_pp_3m_sample,
)
from spec.edm import edm_euler_ancestral_sample, edm_sample_euler, edm_sample_heun
from spec.flow import flow_euler_sample, flow_heun_sample
from spec.pf_ode import pf_ode_sample_euler
from spec.unipc import UNIPC_VARIANTS, unipc_sample

__all__ = ["SAMPLERS"]

GRID_KINDS: dict[str, str] = {
    "times": "integer table times T ≥ τ_0 > … > τ_n = 0 of a discrete VPSchedule",
    "sigmas": "EDM noise levels σ_0 > … > σ_N ≥ 0 (Karras Eq. 5) of a continuous VP schedule; "
              "x_T is EDM's x̃ at σ_0",
    "continuous": "continuous times 1 ≥ t_0 > … > t_N ≥ 0 of a continuous VP schedule",
    "flow": "flow noise levels 1 ≥ σ_0 > … > σ_N ≥ 0 of the rectified flow (spec.flow; its "
            "`RectifiedFlow()` as the schedule, a velocity model); x_T is the flow state at σ_0",
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
class Order:
    """The order of accuracy of a sampler run with `options` (keyword → value pairs of its
    function), and `fit_from`: the smallest N of the order test (conformance/order.py), where
    its error already shrinks by the asymptotic 2^order per halving of the step."""

    order: int
    options: tuple[tuple[str, object], ...] = ()
    fit_from: int = 32


@dataclass(frozen=True)
class Sampler:
    """One sampler: its `--sampler` name, spec function, grid kind, cost, order (default
    options), whether it takes noise, the paper and algorithm it follows, and the orders of its
    other options."""

    name: str
    sample: Callable
    grid: str
    evaluations: Cost
    order: int | None
    stochastic: bool
    paper: str
    variants: tuple[Order, ...] = ()

    @property
    def orders(self) -> tuple[Order, ...]:
        """Every order the table states: the default options' first, then the variants."""
        return () if self.order is None else (Order(self.order), *self.variants)


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
    Sampler("dpm-solver++(2s)", dpm_solver_pp_2s_sample, "times", Cost(), 2, False,
            "DPM-Solver++(2S) (Lu et al. 2022, Algorithm 1)"),
    Sampler("dpm-solver++(3m)", dpm_solver_pp_3m_sample, "times", Cost(), 3, False,
            "DPM-Solver++(3M) (Lu et al. 2022, Eq. 9 integrated exactly for x̂_0 quadratic in λ)"),
    Sampler("unipc", unipc_sample, "times", Cost(), 3, False,
            "UniPC (Zhao et al. 2023): UniP-p then UniC-p, p = 1..3, B(h) bh1 or bh2",
            tuple(Order(p + c, (("order", p), ("variant", v), ("corrector", bool(c))),
                        64 if (p, v) == (2, "bh1") or (p, c) == (3, 1) else 32)
                  for p in (1, 2, 3) for v in UNIPC_VARIANTS for c in (0, 1)
                  if (p, v, c) != (2, "bh2", 1))),
    Sampler("euler-ancestral", edm_euler_ancestral_sample, "sigmas", Cost(), None, True,
            "ancestral Euler, EDM form (Karras et al. 2022 §4; k-diffusion's "
            "sample_euler_ancestral, η = 1)"),
    Sampler("flow-euler", flow_euler_sample, "flow", Cost(), 1, False,
            "Euler on the rectified-flow ODE (Esser et al. 2024, §2)"),
    Sampler("flow-heun", flow_heun_sample, "flow", Cost(2), 2, False,
            "Heun on the rectified-flow ODE (Karras et al. 2022, Algorithm 1)"),
)}
"""`--sampler` name → its entry. Heun's 2·S − 1: the last step, into σ = 0, is Euler's (flow
Heun corrects that step too: the velocity is defined at σ = 0). UniPC's default (order 2, bh2,
with the corrector) is UniPC-2, of order 3; its variants hold UniP-p (order p) and UniPC-p
(order p + 1), p = 1..3. Fitted from N = 64: UniP-2 and UniPC-2 with bh1 (error ratios per
halving 5.4 and 10.1 from N = 32 to 64, against 4 and 8) and UniPC-3 (19.9 and 19.0, against 16).
The (2S) pairs grid intervals, 2 evaluations per pair: S in all, as the (2M)."""
