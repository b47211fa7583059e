"""The sampler table: one entry per sampler, and one entry per `--sampler` of
`python -m runtime.sample`. It is the only list of the samplers; everything else reads it.

Every sampler is one function with one calling convention, on both sides,

    name_sample(sched, model, x_T, grid, noise=None, **options) -> x_0

(the runtime's adds `progress=True`). `grid` is the decreasing sequence the sampler walks, of one
of four kinds (GRID_KINDS); `sched` is the schedule that kind needs; x_T is the state at grid[0]
in the sampler's own scale; `noise` is the injected noise of a stochastic sampler (None for a
deterministic one); options (η, clip, UniPC's order, …) are keyword-only.

An entry holds the math (its spec function, by dotted path: the runtime never imports spec; the
grid kind; its model evaluations for S steps on a table of T, a `Cost`; its order of accuracy with
the default options and with others, `Order`s; whether it takes noise; the paper it follows) and
what the command needs (the runtime function; the grid it walks on a checkpoint, built from a
`Start`; the `--steps` it accepts; the sampler flags it reads; its one-line help).
`--sampler`'s choices and help, the flag checks, the dispatch, the printed model evaluations,
the order tests (conformance/order.py), the docs table (scripts/docs_tables.py) and the gallery
all read this table; conformance/test_sampler_table.py resolves each spec path and fails when a
spec sampler has no entry or an entry's runtime function is not its spec function's twin.
A checkpoint is a VP model; `PROCESSES` gives, per grid kind, the schedule, the start state and
the network as that kind's samplers take them (for the flow samplers the exact VP → flow map).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from runtime.ddim import ddim_sample_strided
from runtime.ddpm import ddpm_sample
from runtime.dpm_solver import (
    dpm_solver_pp_2m_sample,
    dpm_solver_pp_2s_sample,
    dpm_solver_pp_3m_sample,
)
from runtime.edm import (
    edm_euler_ancestral_sample,
    edm_sample_euler,
    edm_sample_heun,
    edm_sigmas,
    vp_to_edm,
)
from runtime.flow import (
    RectifiedFlow,
    flow_euler_sample,
    flow_heun_sample,
    flow_sigmas,
    velocity_from_vp,
    vp_to_flow,
)
from runtime.pf_ode import (
    VPContinuousSchedule,
    VPCosineSchedule,
    VPLinearSchedule,
    pf_ode_sample_euler,
    pf_ode_uniform_grid,
)
from runtime.schedule import Schedule, timestep_grid
from runtime.unipc import UNIPC_VARIANTS, unipc_sample

DEFAULT_STEPS = 50
EDM_SIGMA_MAX = 80.0
"""σ_max of Karras et al. 2022 (Table 1, "Ours"): the default start of the ODE samplers."""
CONTINUOUS_KINDS = ("sigmas", "continuous")
"""Grid kinds whose samplers follow the checkpoint's schedule in continuous time."""
FLOW_MAX_STEPS = 10_000
"""The most --steps of a flow sampler on a flow checkpoint (its grid σ_i = 1 − i/S has no T)."""


def continuous_schedule(stored: dict, T: int) -> VPContinuousSchedule:
    """The checkpoint's schedule in continuous time t ∈ [0, 1] (the model's t/T)."""
    if stored.get("schedule") == "linear":
        return VPLinearSchedule(beta_min=T * float(stored["beta_start"]),
                                beta_max=T * float(stored["beta_end"]))
    return VPCosineSchedule()  # the trainer builds cosine_betas(T), s = 0.008


def sigma_table(sched: Schedule) -> Tensor:
    """σ_t = √((1 − ᾱ_t)/ᾱ_t), t = 0..T, float64 on the CPU (increasing in t)."""
    ab = sched.alpha_bar.float64
    return torch.sqrt((1.0 - ab) / ab)


def flow_sigma_table(sched: Schedule) -> Tensor:
    """σ_t = √(1 − ᾱ_t)/(√ᾱ_t + √(1 − ᾱ_t)), t = 0..T: the flow noise level of the VP state at
    t (runtime.flow.vp_to_flow), float64 on the CPU (increasing in t, from 0)."""
    ab = sched.alpha_bar.float64
    return vp_to_flow(ab, torch.zeros_like(ab))[1]


class VPVelocity(torch.nn.Module):
    """A VP checkpoint's network as a velocity model of the flow samplers: at a flow σ that is
    the flow noise level of a table time t (a grid of `flow_times`), v̂ = ε̂ − x̂_0 of the VP
    model at that t (runtime.flow.velocity_from_vp: the exact VP → flow map, so the flow ODE
    solved is the checkpoint's PF ODE)."""

    def __init__(self, sched: Schedule, model: torch.nn.Module) -> None:
        super().__init__()
        self.sched, self.model = sched, model
        self.time_of = {float(s): t for t, s in enumerate(flow_sigma_table(sched))}

    def forward(self, x_sigma: Tensor, sigma: float) -> Tensor:
        t = self.time_of.get(float(sigma))
        if t is None:
            raise ValueError(f"σ = {sigma!r} is not the flow noise level of a table time "
                             f"(build the grid with runtime.samplers.flow_times)")
        return velocity_from_vp(self.sched, self.model, x_sigma, t)


def flow_times(sched: Schedule, times: Sequence[int]) -> list[float]:
    """The flow noise levels of table times (a grid of the flow samplers on a VP checkpoint)."""
    table = flow_sigma_table(sched)
    return [float(table[t]) for t in times]


GRID_KINDS: dict[str, str] = {
    "times": "integer table times T ≥ τ_0 > … > τ_n = 0 of a discrete VP schedule",
    "sigmas": "EDM noise levels σ_0 > … > σ_N ≥ 0 (Karras Eq. 5) of a continuous VP schedule; "
              "x_T is EDM's x̃ at σ_0",
    "continuous": "continuous times 1 ≥ t_0 > … > t_N ≥ 0 of a continuous VP schedule",
    "flow": "flow noise levels 1 ≥ σ_0 > … > σ_N ≥ 0 of the rectified flow (its "
            "`RectifiedFlow()` as the schedule, a velocity model); x_T is the flow state at σ_0",
}
"""Grid kind → what the grid holds (and which schedule the sampler takes)."""


@dataclass(frozen=True)
class Process:
    """How the samplers of one grid kind see a checkpoint: the schedule they take, x_T in their
    scale, the network in their form, and (where the checkpoint decides them, not the sampler)
    the grid, the sampler flags that grid reads (`grid_flags`) and the --steps bound, which
    otherwise come from the sampler's entry."""

    schedule: Callable[[Start], object]
    state: Callable[[Start, Tensor], Tensor]
    model: Callable[[Start, torch.nn.Module], torch.nn.Module]
    grid: Callable[[Start, int, str], Sequence] | None = None
    steps: Callable[[Start], Steps] | None = None
    grid_flags: tuple[str, ...] = ()


def as_is(start: Start, value: Tensor | torch.nn.Module) -> Tensor | torch.nn.Module:
    return value


"""Grid kind → its view of a VP checkpoint: EDM's x̃ = x_T·√(1 + σ_max²) for σ grids; for the
flow, the exact VP → flow map (x_σ = x_T/(√ᾱ + √(1 − ᾱ)) and a `VPVelocity`)."""


@dataclass(frozen=True)
class Start:
    """Where the samplers of a checkpoint start: its schedule in table and in continuous time,
    t0 = the last table time with σ_t <= cap (--sigma-max, default EDM_SIGMA_MAX), and the noise
    levels σ_max = σ_{t0} (every ODE sampler starts there) and σ_min = σ_1; `objective` is the
    checkpoint's --objective ("vp" for a checkpoint that predates it); `shift` is --shift, SD3's
    time shift of a flow checkpoint's grid (`flow_grid`)."""

    sched: Schedule
    continuous: VPContinuousSchedule
    cap: float
    t0: int
    sigma_max: float
    sigma_min: float
    objective: str = "vp"
    shift: float = 1.0

    @classmethod
    def of(cls, sched: Schedule, stored: dict, sigma_max: float | None,
           shift: float = 1.0) -> Start:
        sigmas = sigma_table(sched)
        cap = EDM_SIGMA_MAX if sigma_max is None else sigma_max
        t0 = int(torch.nonzero(sigmas <= cap).max())
        return cls(sched, continuous_schedule(stored, sched.T), cap, t0, float(sigmas[t0]),
                   float(sigmas[1]), stored.get("objective", "vp"), shift)

    @property
    def alpha_bar_max(self) -> float:
        """ᾱ at σ_max: 1/(1 + σ_max²)."""
        return 1.0 / (1.0 + self.sigma_max**2)

    def schedule(self, kind: str) -> Schedule | VPContinuousSchedule | RectifiedFlow:
        """The schedule a sampler of grid kind `kind` takes."""
        return PROCESSES[self.objective][kind].schedule(self)

    def state(self, kind: str, x_T: Tensor) -> Tensor:
        """x_T (a VP state at σ_max) in the scale of grid kind `kind`."""
        return PROCESSES[self.objective][kind].state(self, x_T)

    def model(self, kind: str, model: torch.nn.Module) -> torch.nn.Module:
        """The checkpoint's network as a sampler of grid kind `kind` calls it."""
        return PROCESSES[self.objective][kind].model(self, model)

    def grid(self, entry: Sampler, steps: int, spacing: str) -> Sequence:
        """The grid `entry` walks on this checkpoint (the process's, where it decides it)."""
        process = PROCESSES[self.objective][entry.kind]
        return (process.grid or entry.grid)(self, steps, spacing)

    def draw(self, entry: Sampler, model: torch.nn.Module, x_T: Tensor, steps: int,
             spacing: str, generator: torch.Generator | None = None, progress: bool = False,
             **options: object) -> Tensor:
        """x_0 of `entry` in `steps` steps from x_T on this checkpoint: its schedule, model,
        state and grid as this start sees them (the one dispatch of `python -m runtime.sample`);
        `generator` is handed to a stochastic sampler only, `options` are its SampleConfig
        options. Shapes: x_T (B, C, H, W) -> (B, C, H, W)."""
        return entry.sample(self.schedule(entry.kind), self.model(entry.kind, model),
                            self.state(entry.kind, x_T), self.grid(entry, steps, spacing),
                            generator if entry.stochastic else None, progress=progress,
                            **options)

    def steps(self, entry: Sampler) -> Steps:
        """The --steps `entry` accepts on this checkpoint (the process's, where it decides it)."""
        process = PROCESSES[self.objective][entry.kind]
        return (process.steps or entry.steps)(self)

    def flags(self, entry: Sampler) -> tuple[str, ...]:
        """The sampler flags `entry` reads on this checkpoint: its options and the flags of the
        grid it walks here (the process's, where it decides the grid)."""
        process = PROCESSES[self.objective][entry.kind]
        return entry.options + (process.grid_flags if process.grid else entry.grid_flags)


@dataclass(frozen=True)
class Steps:
    """The `--steps` a sampler accepts on a checkpoint: low..high, and why."""

    low: int
    high: int
    why: str


def up_to_T(start: Start) -> Steps:
    return Steps(1, start.sched.T, f"at most T = {start.sched.T}")


def exactly_T(start: Start) -> Steps:
    return Steps(start.sched.T, start.sched.T,
                 f"it runs all T = {start.sched.T} steps; use --sampler ddim for fewer")


def flow_steps(start: Start) -> Steps:
    """The --steps of a flow sampler on a flow checkpoint."""
    return Steps(1, FLOW_MAX_STEPS, f"at most {FLOW_MAX_STEPS} on a flow checkpoint")


def flow_grid(start: Start, steps: int, spacing: str) -> Tensor:
    """The grid of a flow sampler on a flow checkpoint: σ_i = 1 − i/S, i = 0..S, shifted by
    --shift s, σ' = s·σ/(1 + (s − 1)·σ) (flow_sigmas; SD3 Eq. 23; the network was trained on
    every σ ∈ [0, 1], so the grid starts at pure noise, σ = 1)."""
    return flow_sigmas(steps, start.shift)


PROCESSES: dict[str, dict[str, Process]] = {
    "vp": {
        "times": Process(lambda s: s.sched, as_is, as_is),
        "continuous": Process(lambda s: s.continuous, as_is, as_is),
        "sigmas": Process(lambda s: s.continuous,
                          lambda s, x_T: vp_to_edm(s.alpha_bar_max, x_T)[0], as_is),
        "flow": Process(lambda s: RectifiedFlow(),
                        lambda s, x_T: vp_to_flow(s.alpha_bar_max, x_T)[0],
                        lambda s, model: VPVelocity(s.sched, model)),
    },
    "flow": {
        "flow": Process(lambda s: RectifiedFlow(), as_is, as_is, grid=flow_grid, steps=flow_steps,
                        grid_flags=("shift",)),
    },
}
"""A checkpoint's --objective (runtime.train_step.OBJECTIVES) → grid kind → how its samplers see
it. On a VP checkpoint: EDM's x̃ = x_T·√(1 + σ_max²) for σ grids; for the flow, the exact VP →
flow map (x_σ = x_T/(√ᾱ + √(1 − ᾱ)) and a `VPVelocity`). A flow checkpoint's network is a
velocity model v̂(x, σ) fed σ as its time: only the flow samplers read it, from pure noise at
σ = 1 on `flow_sigmas`, shifted by --shift (the one flag its grid reads: --spacing and
--sigma-max place a grid on a VP table); the VP samplers are refused."""
OBJECTIVE_KINDS = {objective: tuple(kinds) for objective, kinds in PROCESSES.items()}
"""A checkpoint's --objective → the grid kinds whose samplers draw from it."""


def up_to_t0(start: Start) -> Steps:
    return Steps(1, start.t0, f"its grid starts at t0 = {start.t0}, the last time with "
                 f"σ_t <= {start.cap:g}")


@dataclass(frozen=True)
class Cost:
    """Model evaluations of one sample: T (every time of the table) when `every_time`, else
    per_step·S + extra for S steps; `str` gives the docs' form ("2·S − 1")."""

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
    """One sampler. The math: `spec`, its spec function as a dotted path ("spec.ddim.
    ddim_sample_strided"); `kind`, the grid kind (GRID_KINDS); `evaluations`, its model
    evaluations for S steps on T; `order`, its order of accuracy with the default options (None
    for a stochastic sampler) and `variants`, the orders of its other options; `stochastic`,
    whether it takes noise (the generator); `paper`, the paper and algorithm it follows. The
    command: `sample`, the runtime function (the spec function's twin); `grid`, the grid it walks
    on a checkpoint ((start, steps, spacing) -> grid); `steps`, the --steps it accepts;
    `options`, the SampleConfig fields passed to it as keyword options, and `grid_flags`, the
    ones its grid reads (on a checkpoint whose process decides the grid, that process's
    `grid_flags` instead: `Start.flags`); `help`, its line of `--sampler`'s help."""

    spec: str
    sample: Callable[..., Tensor]
    kind: str
    evaluations: Cost
    order: int | None
    stochastic: bool
    paper: str
    grid: Callable[[Start, int, str], Sequence]
    steps: Callable[[Start], Steps]
    help: str
    options: tuple[str, ...] = ()
    grid_flags: tuple[str, ...] = ()
    variants: tuple[Order, ...] = ()

    @property
    def flags(self) -> tuple[str, ...]:
        """Every sampler flag (SampleConfig field) it reads on some checkpoint: its options, its
        grid's flags and those of every process grid of its kind."""
        grids = [p[self.kind].grid_flags for p in PROCESSES.values()
                 if self.kind in p and p[self.kind].grid]
        return tuple(dict.fromkeys(self.options + self.grid_flags + sum(grids, ())))

    @property
    def orders(self) -> tuple[Order, ...]:
        """Every order the table states: the default options' first, then the variants."""
        return () if self.order is None else (Order(self.order), *self.variants)


def from_t0(start: Start, steps: int, spacing: str) -> list[int]:
    """The table-time grid of `steps` steps from t0 to 0 (`--spacing`)."""
    return timestep_grid(start.t0, steps, spacing)


def from_T(start: Start, steps: int, spacing: str) -> list[int]:
    """The table-time grid of `steps` steps from T to 0 (`--spacing`)."""
    return timestep_grid(start.sched.T, steps, spacing)


def every_time(start: Start, steps: int, spacing: str) -> list[int]:
    """T, T − 1, …, 0."""
    return list(range(start.sched.T, -1, -1))


def karras_sigmas(start: Start, steps: int, spacing: str) -> Tensor:
    """EDM's ρ = 7 noise levels from σ_max to σ_min, then 0."""
    return edm_sigmas(steps, start.sigma_min, start.sigma_max)


def continuous_from_sigma_max(start: Start, steps: int, spacing: str) -> Tensor:
    """`steps` uniform steps in continuous t from the time of σ_max (at most 1) to 0."""
    return pf_ode_uniform_grid(
        steps, min(float(start.continuous.time_of_edm_sigma(start.sigma_max)), 1.0))


def flow_from_t0(start: Start, steps: int, spacing: str) -> list[float]:
    """The flow noise levels of the table-time grid from t0 (`flow_times`)."""
    return flow_times(start.sched, timestep_grid(start.t0, steps, spacing))


SAMPLERS: dict[str, Sampler] = {
    "ddim": Sampler(
        spec="spec.ddim.ddim_sample_strided", sample=ddim_sample_strided, kind="times",
        evaluations=Cost(), order=1, stochastic=True,
        paper="DDIM η = 0 (Song, Meng & Ermon 2021, Eq. 12; stochastic for η > 0)",
        grid=from_T, steps=up_to_T, help="strided DDIM (Song et al.) from t = T",
        options=("eta", "clip"), grid_flags=("spacing",)),
    "ddpm": Sampler(
        spec="spec.ddpm.ddpm_sample", sample=ddpm_sample, kind="times",
        evaluations=Cost(every_time=True), order=None, stochastic=True,
        paper="DDPM ancestral sampling (Ho et al. 2020, Algorithm 2)",
        grid=every_time, steps=exactly_T, help="ancestral sampling (Ho et al.) over all T steps",
        options=("variance",)),
    "pf-ode": Sampler(
        spec="spec.pf_ode.pf_ode_sample_euler", sample=pf_ode_sample_euler, kind="continuous",
        evaluations=Cost(), order=1, stochastic=False,
        paper="PF-ODE Euler (Song et al. 2021, Eq. 13)",
        grid=continuous_from_sigma_max, steps=up_to_T,
        help="Euler on the probability-flow ODE in t (Song et al.)", grid_flags=("sigma_max",)),
    "euler": Sampler(
        spec="spec.edm.edm_sample_euler", sample=edm_sample_euler, kind="sigmas",
        evaluations=Cost(), order=1, stochastic=False,
        paper="Euler, EDM form (Karras et al. 2022, Algorithm 1 without correction)",
        grid=karras_sigmas, steps=up_to_T, help="Euler in EDM form (Karras et al.)",
        grid_flags=("sigma_max",)),
    "heun": Sampler(
        spec="spec.edm.edm_sample_heun", sample=edm_sample_heun, kind="sigmas",
        evaluations=Cost(2, -1), order=2, stochastic=False,
        paper="Heun, EDM Algorithm 1 (Karras et al. 2022)",
        grid=karras_sigmas, steps=up_to_T, help="Heun in EDM form (Karras et al.)",
        grid_flags=("sigma_max",)),
    "dpm-solver++": Sampler(
        spec="spec.dpm_solver.dpm_solver_pp_2m_sample", sample=dpm_solver_pp_2m_sample,
        kind="times", evaluations=Cost(), order=2, stochastic=False,
        paper="DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2)",
        grid=from_t0, steps=up_to_t0, help="DPM-Solver++(2M) (Lu et al.) from t0",
        grid_flags=("spacing", "sigma_max")),
    "dpm-solver++(2s)": Sampler(
        spec="spec.dpm_solver.dpm_solver_pp_2s_sample", sample=dpm_solver_pp_2s_sample,
        kind="times", evaluations=Cost(), order=2, stochastic=False,
        paper="DPM-Solver++(2S) (Lu et al. 2022, Algorithm 1)",
        grid=from_t0, steps=up_to_t0,
        help="DPM-Solver++(2S) (Lu et al.) from t0, grid intervals taken in pairs",
        grid_flags=("spacing", "sigma_max")),
    "dpm-solver++(3m)": Sampler(
        spec="spec.dpm_solver.dpm_solver_pp_3m_sample", sample=dpm_solver_pp_3m_sample,
        kind="times", evaluations=Cost(), order=3, stochastic=False,
        paper="DPM-Solver++(3M) (Lu et al. 2022, Eq. 9 integrated exactly for x̂_0 quadratic "
              "in λ)",
        grid=from_t0, steps=up_to_t0,
        help="DPM-Solver++(3M) from t0, with the exact quadratic term (third order; the "
             "reference code's is second order)", grid_flags=("spacing", "sigma_max")),
    "unipc": Sampler(
        spec="spec.unipc.unipc_sample", sample=unipc_sample, kind="times",
        evaluations=Cost(), order=3, stochastic=False,
        paper="UniPC (Zhao et al. 2023): UniP-p then UniC-p, p = 1..3, B(h) bh1 or bh2",
        grid=from_t0, steps=up_to_t0,
        help="UniPC (Zhao et al.) from t0: UniP of --order p, then UniC (order p + 1; none "
             "with --no-corrector)",
        options=("order", "variant", "corrector"), grid_flags=("spacing", "sigma_max"),
        variants=tuple(Order(p + c, (("order", p), ("variant", v), ("corrector", bool(c))),
                             64 if (p, v) == (2, "bh1") or (p, c) == (3, 1) else 32)
                       for p in (1, 2, 3) for v in UNIPC_VARIANTS for c in (0, 1)
                       if (p, v, c) != (2, "bh2", 1))),
    "euler-ancestral": Sampler(
        spec="spec.edm.edm_euler_ancestral_sample", sample=edm_euler_ancestral_sample,
        kind="sigmas", evaluations=Cost(), order=None, stochastic=True,
        paper="ancestral Euler, EDM form (Karras et al. 2022 §4; k-diffusion's "
              "sample_euler_ancestral, η = 1)",
        grid=karras_sigmas, steps=up_to_T,
        help="ancestral Euler in EDM form (k-diffusion's, η = 1)", grid_flags=("sigma_max",)),
    "flow-euler": Sampler(
        spec="spec.flow.flow_euler_sample", sample=flow_euler_sample, kind="flow",
        evaluations=Cost(), order=1, stochastic=False,
        paper="Euler on the rectified-flow ODE (Esser et al. 2024, §2)",
        grid=flow_from_t0, steps=up_to_t0,
        help="Euler on the rectified-flow ODE from t0, on a VP checkpoint through the exact "
             "VP → flow map (x_σ = x_t/(√ᾱ + √(1 − ᾱ)), v̂ = ε̂ − x̂0); on a flow checkpoint "
             "from σ = 1 on σ_i = 1 − i/S shifted by --shift",
        grid_flags=("spacing", "sigma_max")),
    "flow-heun": Sampler(
        spec="spec.flow.flow_heun_sample", sample=flow_heun_sample, kind="flow",
        evaluations=Cost(2), order=2, stochastic=False,
        paper="Heun on the rectified-flow ODE (Karras et al. 2022, Algorithm 1)",
        grid=flow_from_t0, steps=up_to_t0,
        help="Heun on the rectified-flow ODE from t0 (every step corrected), through the same "
             "exact map", grid_flags=("spacing", "sigma_max")),
}
"""`--sampler` name → its entry (the order of `--help` and of the docs table). Heun's 2·S − 1:
the last step, into σ = 0, is Euler's (flow Heun corrects that step too: the velocity is defined
at σ = 0). UniPC's default (order 2, bh2, with the corrector) is UniPC-2, of order 3; its
variants hold UniP-p (order p) and UniPC-p (order p + 1), p = 1..3. Fitted from N = 64: UniP-2
and UniPC-2 with bh1 (error ratios per halving 5.4 and 10.1 from N = 32 to 64, against 4 and 8)
and UniPC-3 (19.9 and 19.0, against 16). The (2S) pairs grid intervals, 2 evaluations per pair:
S in all, as the (2M)."""

SAMPLER_FLAGS = tuple(dict.fromkeys(f for s in SAMPLERS.values() for f in s.flags))
"""The SampleConfig fields that only some samplers read."""


def readers(flag: str) -> str:
    """The samplers that read `flag`, for help and error text: "ddim, dpm-solver++"."""
    return ", ".join(name for name, s in SAMPLERS.items() if flag in s.flags)


def sampler_help() -> str:
    """`--sampler`'s help: every entry's name, help and cost."""
    return "; ".join(f"{name}: {s.help}" for name, s in SAMPLERS.items())


def steps_help() -> str:
    """`--steps`' help: the default and every bound of the table."""
    bounds = {up_to_T: "at most T", exactly_T: "exactly T", up_to_t0: "at most t0"}
    parts = [f"{bounds[b]} for {', '.join(n for n, s in SAMPLERS.items() if s.steps is b)}"
             for b in bounds if any(s.steps is b for s in SAMPLERS.values())]
    return f"sampling steps (default: {DEFAULT_STEPS}, or the bound below it; " + "; ".join(
        parts) + ")"


def model_evaluations(sampler: str, steps: int, T: int) -> int:
    """Network calls of one sample of `sampler` with `steps` steps on a table of T steps."""
    return SAMPLERS[sampler].evaluations(steps, T)


__all__ = [
    "CONTINUOUS_KINDS",
    "Cost",
    "DEFAULT_STEPS",
    "EDM_SIGMA_MAX",
    "GRID_KINDS",
    "Order",
    "PROCESSES",
    "FLOW_MAX_STEPS",
    "OBJECTIVE_KINDS",
    "SAMPLERS",
    "SAMPLER_FLAGS",
    "Sampler",
    "Start",
    "Steps",
    "VPVelocity",
    "continuous_schedule",
    "flow_sigma_table",
    "flow_times",
    "flow_grid",
    "flow_steps",
    "model_evaluations",
    "readers",
    "sampler_help",
    "sigma_table",
    "steps_help",
]
