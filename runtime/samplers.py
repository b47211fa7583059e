"""The sampler table of the runtime: one entry per `--sampler` of `python -m runtime.sample`.

The twin of `spec.samplers` (which holds the math: spec function, order, paper). Every sampler
is called one way, `name_sample(sched, model, x_T, grid, noise, progress=True, **options)`;
an entry adds what the command needs: the grid it walks, built from a checkpoint (`Start`), the
`--steps` it accepts, the sampler flags it reads, its cost and its one-line help. The grid kind,
the cost and `stochastic` are also in `spec.samplers` (the runtime never imports spec);
conformance/test_sampler_table.py fails when the two tables disagree. `--sampler`'s choices
and help, the flag checks, the dispatch and the printed model evaluations all read this table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from runtime.ddim import ddim_sample_strided
from runtime.ddpm import ddpm_sample
from runtime.dpm_solver import dpm_solver_pp_2m_sample
from runtime.edm import edm_sample_euler, edm_sample_heun, edm_sigmas, vp_to_edm
from runtime.flow import RectifiedFlow, flow_sigmas
from runtime.pf_ode import (
    VPContinuousSchedule,
    VPCosineSchedule,
    VPLinearSchedule,
    pf_ode_sample_euler,
    pf_ode_uniform_grid,
)
from runtime.schedule import Schedule, timestep_grid

DEFAULT_STEPS = 50
EDM_SIGMA_MAX = 80.0
"""σ_max of Karras et al. 2022 (Table 1, "Ours"): the default start of the ODE samplers."""
CONTINUOUS_KINDS = ("sigmas", "continuous")
"""Grid kinds whose samplers follow the checkpoint's schedule in continuous time."""
OBJECTIVE_KINDS = {"vp": ("times", "continuous", "sigmas"), "flow": ("flow",)}
"""A checkpoint's --objective (runtime.train_step.OBJECTIVES) → the grid kinds whose samplers
draw from it. A flow checkpoint's network is a velocity model v̂(x, σ) fed σ as its time: only
the flow samplers (grid kind "flow", runtime.flow) read it; the VP samplers are refused."""
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


@dataclass(frozen=True)
class Start:
    """Where the samplers of a checkpoint start: its schedule in table and in continuous time,
    t0 = the last table time with σ_t <= cap (--sigma-max, default EDM_SIGMA_MAX), and the noise
    levels σ_max = σ_{t0} (every ODE sampler starts there) and σ_min = σ_1; `objective` is the
    checkpoint's --objective ("vp" for a checkpoint that predates it)."""

    sched: Schedule
    continuous: VPContinuousSchedule
    cap: float
    t0: int
    sigma_max: float
    sigma_min: float
    objective: str = "vp"

    @classmethod
    def of(cls, sched: Schedule, stored: dict, sigma_max: float | None) -> Start:
        sigmas = sigma_table(sched)
        cap = EDM_SIGMA_MAX if sigma_max is None else sigma_max
        t0 = int(torch.nonzero(sigmas <= cap).max())
        return cls(sched, continuous_schedule(stored, sched.T), cap, t0, float(sigmas[t0]),
                   float(sigmas[1]), stored.get("objective", "vp"))

    def schedule(self, kind: str) -> Schedule | VPContinuousSchedule | RectifiedFlow:
        """The schedule a sampler of grid kind `kind` takes (the flow's: `RectifiedFlow()`)."""
        if kind == "flow":
            return RectifiedFlow()
        return self.continuous if kind in CONTINUOUS_KINDS else self.sched

    def state(self, kind: str, x_T: Tensor) -> Tensor:
        """x_T (a VP state at σ_max; on a flow checkpoint the flow state at σ = 1, pure noise)
        in the scale of grid kind `kind`: EDM's x̃ for σ grids."""
        return vp_to_edm(1.0 / (1.0 + self.sigma_max**2), x_T)[0] if kind == "sigmas" else x_T


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
    """The grid of a flow sampler on a flow checkpoint: σ_i = 1 − i/S, i = 0..S (flow_sigmas;
    the network was trained on every σ ∈ [0, 1], so the grid starts at pure noise, σ = 1)."""
    return flow_sigmas(steps)


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
        dpm_solver_pp_2m_sample, "times", per_step, False,
        lambda s, n, spacing: timestep_grid(s.t0, n, spacing), up_to_t0,
        "DPM-Solver++(2M) (Lu et al.) from t0", (), ("spacing", "sigma_max")),
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
    "FLOW_MAX_STEPS",
    "OBJECTIVE_KINDS",
    "SAMPLERS",
    "SAMPLER_FLAGS",
    "Sampler",
    "Start",
    "Steps",
    "continuous_schedule",
    "flow_grid",
    "flow_steps",
    "model_evaluations",
    "readers",
    "sampler_help",
    "sigma_table",
    "steps_help",
]
