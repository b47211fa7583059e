"""The sampler table of the runtime: one entry per `--sampler` of `python -m runtime.sample`.

The twin of `spec.samplers` (which holds the math: spec function, order, paper). Every sampler
is called one way, `name_sample(sched, model, x_T, grid, noise, progress=True, **options)`;
an entry adds what the command needs: the grid it walks, built from a checkpoint (`Start`), the
`--steps` it accepts, the sampler flags it reads, its cost and its one-line help. The grid kind,
the cost and `stochastic` are also in `spec.samplers` (the runtime never imports spec);
conformance/test_sampler_table.py fails when the two tables disagree. `--sampler`'s choices
and help, the flag checks, the dispatch and the printed model evaluations all read this table.
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
from runtime.unipc import unipc_sample

DEFAULT_STEPS = 50
EDM_SIGMA_MAX = 80.0
"""σ_max of Karras et al. 2022 (Table 1, "Ours"): the default start of the ODE samplers."""
CONTINUOUS_KINDS = ("sigmas", "continuous")
"""Grid kinds whose samplers follow the checkpoint's schedule in continuous time."""


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


@dataclass(frozen=True)
class Process:
    """How the samplers of one grid kind see a VP checkpoint: the schedule they take, x_T (a VP
    state at σ_max) in their scale, and the network in their form."""

    schedule: Callable[[Start], object]
    state: Callable[[Start, Tensor], Tensor]
    model: Callable[[Start, torch.nn.Module], torch.nn.Module]


def as_is(start: Start, value: Tensor | torch.nn.Module) -> Tensor | torch.nn.Module:
    return value


PROCESSES: dict[str, Process] = {
    "times": Process(lambda s: s.sched, as_is, as_is),
    "continuous": Process(lambda s: s.continuous, as_is, as_is),
    "sigmas": Process(lambda s: s.continuous,
                      lambda s, x_T: vp_to_edm(s.alpha_bar_max, x_T)[0], as_is),
    "flow": Process(lambda s: RectifiedFlow(),
                    lambda s, x_T: vp_to_flow(s.alpha_bar_max, x_T)[0],
                    lambda s, model: VPVelocity(s.sched, model)),
}
"""Grid kind → its view of a VP checkpoint: EDM's x̃ = x_T·√(1 + σ_max²) for σ grids; for the
flow, the exact VP → flow map (x_σ = x_T/(√ᾱ + √(1 − ᾱ)) and a `VPVelocity`)."""


@dataclass(frozen=True)
class Start:
    """Where the samplers of a checkpoint start: its schedule in table and in continuous time,
    t0 = the last table time with σ_t <= cap (--sigma-max, default EDM_SIGMA_MAX), and the noise
    levels σ_max = σ_{t0} (every ODE sampler starts there) and σ_min = σ_1."""

    sched: Schedule
    continuous: VPContinuousSchedule
    cap: float
    t0: int
    sigma_max: float
    sigma_min: float

    @classmethod
    def of(cls, sched: Schedule, stored: dict, sigma_max: float | None) -> Start:
        sigmas = sigma_table(sched)
        cap = EDM_SIGMA_MAX if sigma_max is None else sigma_max
        t0 = int(torch.nonzero(sigmas <= cap).max())
        return cls(sched, continuous_schedule(stored, sched.T), cap, t0, float(sigmas[t0]),
                   float(sigmas[1]))

    @property
    def alpha_bar_max(self) -> float:
        """ᾱ at σ_max: 1/(1 + σ_max²)."""
        return 1.0 / (1.0 + self.sigma_max**2)

    def schedule(self, kind: str) -> Schedule | VPContinuousSchedule | RectifiedFlow:
        """The schedule a sampler of grid kind `kind` takes."""
        return PROCESSES[kind].schedule(self)

    def state(self, kind: str, x_T: Tensor) -> Tensor:
        """x_T (a VP state at σ_max) in the scale of grid kind `kind`."""
        return PROCESSES[kind].state(self, x_T)

    def model(self, kind: str, model: torch.nn.Module) -> torch.nn.Module:
        """The checkpoint's network as a sampler of grid kind `kind` calls it."""
        return PROCESSES[kind].model(self, model)


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


def up_to_t0(start: Start) -> Steps:
    return Steps(1, start.t0, f"its grid starts at t0 = {start.t0}, the last time with "
                 f"σ_t <= {start.cap:g}")


@dataclass(frozen=True)
class Sampler:
    """One `--sampler`: its runtime function (the twin of spec.samplers' entry), grid kind,
    model evaluations for S steps on T, whether it takes noise (the generator), the grid it
    walks on a checkpoint ((start, steps, spacing) -> grid), the --steps it accepts, the
    SampleConfig fields passed to it as keyword options, the ones its grid reads, its help."""

    sample: Callable[..., Tensor]
    kind: str
    evaluations: Callable[[int, int], int]
    stochastic: bool
    grid: Callable[[Start, int, str], Sequence]
    steps: Callable[[Start], Steps]
    help: str
    options: tuple[str, ...] = ()
    grid_flags: tuple[str, ...] = ()

    @property
    def flags(self) -> tuple[str, ...]:
        """Every sampler flag (SampleConfig field) it reads."""
        return self.options + self.grid_flags


def per_step(steps: int, T: int) -> int:
    return steps


def from_t0(start: Start, steps: int, spacing: str) -> list[int]:
    """The table-time grid of `steps` steps from t0 to 0 (`--spacing`)."""
    return timestep_grid(start.t0, steps, spacing)


SAMPLERS: dict[str, Sampler] = {
    "ddim": Sampler(
        ddim_sample_strided, "times", per_step, True,
        lambda s, n, spacing: timestep_grid(s.sched.T, n, spacing), up_to_T,
        "strided DDIM (Song et al.) from t = T", ("eta", "clip"), ("spacing",)),
    "ddpm": Sampler(
        ddpm_sample, "times", lambda steps, T: T, True,
        lambda s, n, spacing: list(range(s.sched.T, -1, -1)), exactly_T,
        "ancestral sampling (Ho et al.) over all T steps"),
    "pf-ode": Sampler(
        pf_ode_sample_euler, "continuous", per_step, False,
        lambda s, n, spacing: pf_ode_uniform_grid(
            n, min(float(s.continuous.time_of_edm_sigma(s.sigma_max)), 1.0)), up_to_T,
        "Euler on the probability-flow ODE in t (Song et al.)", (), ("sigma_max",)),
    "euler": Sampler(
        edm_sample_euler, "sigmas", per_step, False,
        lambda s, n, spacing: edm_sigmas(n, s.sigma_min, s.sigma_max), up_to_T,
        "Euler in EDM form (Karras et al.)", (), ("sigma_max",)),
    "heun": Sampler(
        edm_sample_heun, "sigmas", lambda steps, T: 2 * steps - 1, False,
        lambda s, n, spacing: edm_sigmas(n, s.sigma_min, s.sigma_max), up_to_T,
        "Heun in EDM form (Karras et al.)", (), ("sigma_max",)),
    "dpm-solver++": Sampler(
        dpm_solver_pp_2m_sample, "times", per_step, False, from_t0, up_to_t0,
        "DPM-Solver++(2M) (Lu et al.) from t0", (), ("spacing", "sigma_max")),
    "dpm-solver++(2s)": Sampler(
        dpm_solver_pp_2s_sample, "times", per_step, False, from_t0, up_to_t0,
        "DPM-Solver++(2S) (Lu et al.) from t0, grid intervals taken in pairs",
        (), ("spacing", "sigma_max")),
    "dpm-solver++(3m)": Sampler(
        dpm_solver_pp_3m_sample, "times", per_step, False, from_t0, up_to_t0,
        "DPM-Solver++(3M) from t0, with the exact quadratic term (third order; the reference "
        "code's is second order)", (), ("spacing", "sigma_max")),
    "unipc": Sampler(
        unipc_sample, "times", per_step, False, from_t0, up_to_t0,
        "UniPC (Zhao et al.) from t0: UniP of --order p, then UniC (order p + 1; none with "
        "--no-corrector)", ("order", "variant", "corrector"), ("spacing", "sigma_max")),
    "euler-ancestral": Sampler(
        edm_euler_ancestral_sample, "sigmas", per_step, True,
        lambda s, n, spacing: edm_sigmas(n, s.sigma_min, s.sigma_max), up_to_T,
        "ancestral Euler in EDM form (k-diffusion's, η = 1)", (), ("sigma_max",)),
    "flow-euler": Sampler(
        flow_euler_sample, "flow", per_step, False,
        lambda s, n, spacing: flow_times(s.sched, timestep_grid(s.t0, n, spacing)), up_to_t0,
        "Euler on the rectified-flow ODE from t0, on a VP checkpoint through the exact VP → "
        "flow map (x_σ = x_t/(√ᾱ + √(1 − ᾱ)), v̂ = ε̂ − x̂0)", (), ("spacing", "sigma_max")),
    "flow-heun": Sampler(
        flow_heun_sample, "flow", lambda steps, T: 2 * steps, False,
        lambda s, n, spacing: flow_times(s.sched, timestep_grid(s.t0, n, spacing)), up_to_t0,
        "Heun on the rectified-flow ODE from t0 (every step corrected), through the same exact "
        "map", (), ("spacing", "sigma_max")),
}
"""`--sampler` name → its entry (the order of `--help` and of the docs table)."""

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
    "DEFAULT_STEPS",
    "EDM_SIGMA_MAX",
    "PROCESSES",
    "SAMPLERS",
    "SAMPLER_FLAGS",
    "Sampler",
    "Start",
    "Steps",
    "VPVelocity",
    "continuous_schedule",
    "flow_sigma_table",
    "flow_times",
    "model_evaluations",
    "readers",
    "sampler_help",
    "sigma_table",
    "steps_help",
]
