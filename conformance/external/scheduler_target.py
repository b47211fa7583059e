"""Any class with diffusers' scheduler interface as a target, without adapter code.

    python -m conformance.external --scheduler mylib.sched:MyScheduler --claims ddim
    target = SchedulerTarget(MyScheduler, "ddim")          # the same, from Python

The interface read: the constructor's keyword arguments `num_train_timesteps`, `beta_start`,
`beta_end` (and, where it accepts them, `beta_schedule`, `timestep_spacing`,
`prediction_type`), `set_timesteps(n)`, `timesteps`, `sigmas` (σ-based claims), `alphas_cumprod`
(the schedule the claim is stated on; without it the spec's `linear_betas` of the configuration),
`scale_model_input(x, τ)`, `init_noise_sigma` and `step(model_output, τ, x, ...).prev_sample`.
Options a claim reads from the scheduler's `config` (diffusers' names, diffusers' defaults):
`clip_sample`, `set_alpha_to_one`, `variance_type`, `solver_order`, `lower_order_final`,
`euler_at_final`, `final_sigmas_type`.

Conventions, as for diffusers (docs/external.md): timestep τ is the spec's t = τ + 1
(`alphas_cumprod[τ]` = ᾱ_{τ+1}); the claimed grid is `timesteps` after `set_timesteps(n)`, each
step to the next entry, the last to t = 0 (or where the claim's `end` says); fractional τ is a
claim outside the spec; the sample is the VP x_t ("vp" loops) or EDM's x̃ = x_t·√(1 + σ²)
("edm" loops: started from x_T·√(1 + σ_0²), compared as x̃/√(1 + σ²)); the tables and the
sample run in the dtype of the class's `alphas_cumprod`, with the float32 or float64 tolerance.

`CLAIMS` is the table of what a class can claim, by name: the spec method, how its loop is read.
A new spec method is its class in `methods` and one entry here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

from conformance.external.diffusers_config import dpm_step_orders
from conformance.external.methods import (
    DDIM,
    DDPM,
    DPMSolverPP,
    DPMSolverPP2S,
    DPMSolverPP3M,
    EDMEuler,
    EDMEulerAncestral,
    EDMHeun,
    FlowEuler,
    FlowHeun,
    FlowUniPC,
    Method,
    UniPC,
)
from conformance.external.targets import (
    FLOAT32,
    FLOAT64,
    FLOW32,
    PREDICTIONS,
    Claim,
    Family,
    OutsideSpec,
    Run,
    Tolerance,
    flow_betas,
)

SIGMA_ONE_FLOAT32 = 1.0 + 2.0**-22
"""A flow target's σ_0 up to two float32 ulps above 1 is read as σ = 1: a float32 shift
s·σ/(1 + (s − 1)·σ) of σ = 1 rounds to 1 + 2^-23 for some s (1.91 at T = 2, for one), which is
the rounding of an exact 1, not a σ outside [0, 1]; the step then differs by at most
2^-22·|v̂|, inside FLOW32. Farther above 1 the grid is refused."""

SPACINGS: tuple[str, ...] = ("leading", "trailing", "linspace")
"""diffusers' timestep_spacing values, each drawn as its own family where the class takes it."""


@dataclass(frozen=True)
class SchedulerConfig:
    """One configuration of a scheduler class and its sampling loop.

    spacing: timestep_spacing (None: the class's own); options: further constructor keyword
    arguments as (name, value) pairs; eta: passed to step() by the "ddim" claim; mu: passed to
    set_timesteps (diffusers' dynamic shifting, σ' = time_shift(σ, e^μ)); shape, seed: of x_T,
    the noise and the ε-model.
    """

    T: int
    n: int
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_schedule: str = "linear"
    spacing: str | None = None
    prediction_type: str = "epsilon"
    eta: float = 0.0
    shape: tuple[int, ...] = (1, 1, 2, 2)
    seed: int = 0
    options: tuple[tuple[str, Any], ...] = ()
    mu: float | None = None

    def kwargs(self, accepts: Callable[[str], bool]) -> dict[str, Any]:
        """The constructor's keyword arguments, those the class `accepts`."""
        kw = dict(num_train_timesteps=self.T, beta_start=self.beta_start, beta_end=self.beta_end,
                  beta_schedule=self.beta_schedule, timestep_spacing=self.spacing,
                  prediction_type=self.prediction_type, **dict(self.options))
        return {k: v for k, v in kw.items() if v is not None and accepts(k)}


@st.composite
def scheduler_configs(draw, profile: str = "small", *, spacing: str | None = None,
                      predictions: Sequence[str] = ("epsilon",),
                      schedules: Sequence[str] = ("linear",), eta: bool = False,
                      n_min: int = 1, options: tuple[tuple[str, Any], ...] = ()) -> SchedulerConfig:
    """A strategy of `SchedulerConfig`: T ≤ 40 ("small") or ≤ 1000 ("full"), any n in
    {n_min..T}, β range and schedule, prediction type, η ∈ [0.1, 1] when `eta`, shape and seed."""
    T = draw(st.integers(max(2, n_min), 40 if profile == "small" else 1000))
    b0 = draw(st.floats(1e-5, 1e-3))
    b1 = draw(st.floats(max(2 * b0, 1e-3), max(2 * b0, min(0.3, 20.0 / T))))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 4)),
             draw(st.integers(1, 4)))
    return SchedulerConfig(
        T=T, n=draw(st.integers(n_min, T)), beta_start=b0, beta_end=b1,
        beta_schedule=draw(st.sampled_from(list(schedules))), spacing=spacing,
        prediction_type=draw(st.sampled_from(list(predictions))),
        eta=draw(st.floats(0.1, 1.0)) if eta else 0.0, shape=shape,
        seed=draw(st.integers(0, 2**16)), options=options)


# ---------------------------------------------------------------------------------------------
# Reading a scheduler: its options, its timesteps, its noise


def option(scheduler: Any, name: str, default: Any) -> Any:
    """A constructor option as the scheduler holds it (diffusers: `scheduler.config[name]`)."""
    config = getattr(scheduler, "config", None)
    if isinstance(config, dict) or hasattr(config, "get"):
        value = config.get(name, None)
        if value is not None:
            return value
    return getattr(scheduler, name, default)


def integer_timesteps(values: Sequence[float], T: int) -> list[int]:
    """The timesteps as integers τ, or OutsideSpec for fractional ones (σ interpolated between
    table entries: no discrete grid t ∈ {1..T} is claimed)."""
    raw = [float(v) for v in values]
    if any(v != int(v) for v in raw):
        raise OutsideSpec(f"timesteps {raw[:6]}… are not integers: the model is called at "
                          "fractional τ, which no discrete grid t ∈ {1..T} claims")
    taus = [int(v) for v in raw]
    past = [tau for tau in taus if not 0 <= tau < T]
    if past:
        raise ValueError(f"timesteps {taus} have τ = {past} outside alphas_cumprod's {{0..{T - 1}}}"
                         f" (spec t = τ + 1 outside {{1..{T}}})")
    return taus


def heun_grid(timesteps: Sequence[float]) -> list[float]:
    """Heun's interleaved [τ_0, τ_1, τ_1, …, τ_(n−1), τ_(n−1)] read as its grid timesteps[0::2]
    (each repeated τ: one step's corrector call, then the next step's predictor)."""
    raw = list(timesteps)
    grid = raw[0::2]
    if raw != [grid[0], *(v for g in grid[1:] for v in (g, g))]:
        raise ValueError(f"timesteps {raw} are not [τ_0, τ_1, τ_1, …, τ_(n−1), τ_(n−1)]")
    return grid


def heun_sigma_grid(sigmas: Sequence[float]) -> list[float]:
    """[σ_0, σ_1, σ_1, …, σ_(n−1), σ_(n−1), 0] read as σ_0, σ_1, …, σ_(n−1), 0."""
    return [*sigmas[0::2], sigmas[-1]]


def heun_whole_step(k: int, last: int) -> bool:
    """Whether model call k of Heun's loop ends a whole step: after its corrector (odd k), or
    the last call (the Euler step into σ = 0)."""
    return k % 2 == 1 or k == last


def dpm_first_order(order: int, lower_order_final: bool, euler_at_final: bool,
                    final_sigmas_type: str, n: int) -> tuple[int, ...]:
    """diffusers' first-order DPM-Solver++ steps beyond the spec's own (step 0; a step into
    ᾱ = 1): every step for solver_order 1; the last under euler_at_final, or
    lower_order_final with fewer than 15 steps, unless it steps into σ = 0 anyway."""
    if order == 1:
        return tuple(range(1, n))
    last = euler_at_final or (lower_order_final and n < 15)
    return (n - 1,) if last and n > 1 and final_sigmas_type != "zero" else ()


def _randn_modules(scheduler: Any) -> list[Any]:
    """The modules of the scheduler's class and bases that draw noise through `randn_tensor`."""
    mods = [sys.modules.get(c.__module__) for c in type(scheduler).__mro__]
    return [m for m in dict.fromkeys(mods) if m is not None and hasattr(m, "randn_tensor")]


def step_parameters(scheduler: Any) -> set[str]:
    """The keyword arguments `scheduler.step` takes (every name when it takes **kwargs)."""
    params = inspect.signature(scheduler.step).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return {"*"}
    return {p.name for p in params}


def can_inject_noise(scheduler: Any) -> bool:
    """Whether `inject_noise` can hand `scheduler.step` its noise."""
    params = step_parameters(scheduler)
    return "variance_noise" in params or "*" in params or bool(_randn_modules(scheduler))


@contextlib.contextmanager
def inject_noise(scheduler: Any, noise: Any, kwargs: dict[str, Any]):
    """Hand one `scheduler.step` call the given noise (a torch tensor): as its `variance_noise`
    argument where step() takes one (added to `kwargs`), and as the return value of
    `randn_tensor` in the modules of its class (diffusers' DDPM and ancestral schedulers draw
    through it) for the duration of the call."""
    if {"variance_noise", "*"} & step_parameters(scheduler):
        kwargs["variance_noise"] = noise
    mods = _randn_modules(scheduler)
    saved = [m.randn_tensor for m in mods]

    def given(shape, generator=None, device=None, dtype=None, **_: Any):
        if tuple(shape) != tuple(noise.shape):
            raise ValueError(f"noise of shape {tuple(noise.shape)} asked for {tuple(shape)}")
        return noise.to(dtype=dtype) if dtype is not None else noise

    for m in mods:
        m.randn_tensor = given
    try:
        yield kwargs
    finally:
        for m, f in zip(mods, saved, strict=True):
            m.randn_tensor = f


# ---------------------------------------------------------------------------------------------
# The claims table


def _ddim(cfg: SchedulerConfig, s: Any, n: int) -> Method:
    return DDIM(eta=cfg.eta, clip=bool(option(s, "clip_sample", False)))


def _ddim_end(s: Any) -> int:
    return 0 if option(s, "set_alpha_to_one", True) else 1  # ᾱ = 1, or alphas_cumprod[0] (t = 1)


def _ddpm(cfg: SchedulerConfig, s: Any, n: int) -> Method:
    variance = str(option(s, "variance_type", "fixed_small"))
    if variance.removesuffix("_log") not in ("fixed_small", "fixed_large"):
        raise OutsideSpec(f"variance_type {variance!r}: the spec's DDPM has σ² = β̃_t "
                          "(fixed_small) and σ² = β_t (fixed_large) only; a learned variance "
                          "comes from the model")
    return DDPM(variance=variance.removesuffix("_log"), clip=bool(option(s, "clip_sample", False)))


def _dpm(cfg: SchedulerConfig, s: Any, n: int) -> Method:
    order = int(option(s, "solver_order", 2))
    algorithm = str(option(s, "algorithm_type", "dpmsolver++"))
    if order not in (1, 2) or algorithm != "dpmsolver++":
        raise OutsideSpec(f"solver_order {order}, algorithm_type {algorithm!r}: the spec has "
                          "DPM-Solver++(1) and (2M) (Lu et al. 2022b, Algorithm 2) only")
    return DPMSolverPP(first_order=dpm_first_order(
        order, bool(option(s, "lower_order_final", True)), bool(option(s, "euler_at_final", False)),
        str(option(s, "final_sigmas_type", "zero")), n))


def _dpm_3m(cfg: SchedulerConfig, s: Any, n: int) -> Method:
    order = int(option(s, "solver_order", 3))
    algorithm, solver = str(option(s, "algorithm_type", "dpmsolver++")), str(option(s, "solver_type", "midpoint"))
    if order not in (1, 2, 3) or algorithm != "dpmsolver++" or solver != "midpoint":
        raise OutsideSpec(f"solver_order {order}, algorithm_type {algorithm!r}, solver_type "
                          f"{solver!r}: the spec has DPM-Solver++(3M) and its lower orders (1), (2M) "
                          "(Lu et al. 2022b, Algorithm 2, the midpoint form) only")
    return DPMSolverPP3M(orders=dpm_step_orders(
        order, bool(option(s, "lower_order_final", True)), bool(option(s, "euler_at_final", False)),
        str(option(s, "final_sigmas_type", "zero")), n))


def _dpm_end(s: Any) -> int:
    return 0 if option(s, "final_sigmas_type", "zero") == "zero" else 1


def _vp_sigmas_only(s: Any, what: str) -> None:
    """OutsideSpec for a VP solver run on flow σ's (use_flow_sigmas): not a table of ᾱ_t."""
    if option(s, "use_flow_sigmas", False):
        raise OutsideSpec(f"use_flow_sigmas: {what} on the flow σ's 1 − t/T (shifted), with the "
                          "model read as a flow velocity: spec.dpm_solver runs on a VP table's "
                          "integer times (of the multistep solvers, UniPC has a flow claim, flow_unipc)")


def _unipc_options(s: Any, n: int) -> UniPC:
    """The UniPC of the scheduler's options: solver_order, solver_type, disable_corrector,
    lower_order_final (predict_x0 on)."""
    order, variant = int(option(s, "solver_order", 2)), str(option(s, "solver_type", "bh2"))
    if not option(s, "predict_x0", True) or variant not in ("bh1", "bh2") or order > 3:
        raise OutsideSpec(f"predict_x0 {option(s, 'predict_x0', True)}, solver_type {variant!r}, "
                          f"solver_order {order}: spec.unipc has the data-prediction UniPC "
                          "(bh1, bh2) of orders 1 to 3 only")
    disabled = set(option(s, "disable_corrector", []) or [])
    corrected = set(range(n - 1))  # the steps whose output the next step corrects
    if disabled & corrected and not corrected <= disabled:
        raise OutsideSpec(f"disable_corrector {sorted(disabled)}: UniC on some steps only; "
                          "spec.unipc runs it after every step but the last or not at all")
    return UniPC(order=order, variant=variant, corrector=not corrected <= disabled or n == 1,
                 lower_order_final=bool(option(s, "lower_order_final", True)))


def _unipc(cfg: SchedulerConfig, s: Any, n: int) -> Method:
    if option(s, "use_flow_sigmas", False):
        raise OutsideSpec("use_flow_sigmas: UniPC on flow states x_σ = (1 − σ)·x_0 + σ·ε, the claim "
                          "flow_unipc (spec.flow's exact VP ↔ flow map), not unipc on a VP table")
    return _unipc_options(s, n)


def _flow_unipc(cfg: SchedulerConfig, s: Any, n: int) -> Method:
    prediction = option(s, "prediction_type", "flow_prediction")
    if prediction != "flow_prediction":
        raise OutsideSpec(f"prediction_type {prediction!r}: the flow claims read the network as a "
                          "velocity v̂(x_σ, σ) on both sides (prediction_type flow_prediction)")
    return FlowUniPC(**dataclasses.asdict(_unipc_options(s, n)))


def dpm_2s_first_order(order: int, lower_order_final: bool, final_sigmas_type: str,
                       n: int) -> tuple[int, ...]:
    """diffusers' first-order DPMSolverSinglestep steps beyond the spec's own (the first of
    each pair, an odd last step): every step for solver_order 1; the last of an even grid
    under lower_order_final (its order list ends [1, 1]) or final_sigmas_type zero."""
    if order == 1:
        return tuple(range(1, n, 2))
    last = n % 2 == 0 and (lower_order_final or final_sigmas_type == "zero")
    return (n - 1,) if last else ()


def _dpm_2s(cfg: SchedulerConfig, s: Any, n: int) -> Method:
    _vp_sigmas_only(s, "DPM-Solver++(2S)")
    order = int(option(s, "solver_order", 2))
    algorithm, solver = str(option(s, "algorithm_type", "dpmsolver++")), str(option(s, "solver_type", "midpoint"))
    if order not in (1, 2) or algorithm != "dpmsolver++" or solver != "midpoint":
        raise OutsideSpec(f"solver_order {order}, algorithm_type {algorithm!r}, solver_type "
                          f"{solver!r}: the spec has DPM-Solver++(2S) (Lu et al. 2022b, Algorithm "
                          "1, the midpoint r = 1/2 of its λ-interval's pair) and its first-order step only")
    return DPMSolverPP2S(first_order=dpm_2s_first_order(
        order, bool(option(s, "lower_order_final", True)), str(option(s, "final_sigmas_type", "zero")), n))


def _flow_euler(cfg: SchedulerConfig, s: Any, n: int) -> Method:
    if option(s, "stochastic_sampling", False):
        raise OutsideSpec("stochastic_sampling: x' = (1 − σ_next)·x̂_0 + σ_next·z with fresh noise z "
                          "(x̂_0 = x − σ·v̂) has no spec function: spec.flow integrates the ODE "
                          "dx/dσ = v̂ only")
    terminal = option(s, "shift_terminal", None)
    if terminal and n == 1:
        raise OutsideSpec(f"shift_terminal {terminal!r} with one step: stretching 1 − σ by "
                          "(1 − σ_term)/(1 − σ_{n−1}) divides by 1 − σ_0 = 0 (diffusers' sigmas are "
                          "[nan, 0]); a claim of Euler on the class's own σ's has no grid here "
                          "(spec.flow.flow_sigmas' one-step grid is [1, 0], which the diffusers "
                          "suite's adapter claims)")
    if option(s, "invert_sigmas", False):
        raise OutsideSpec("invert_sigmas: the σ's run from 0 up to 1 (Mochi): no spec.flow grid")
    return FlowEuler()


@dataclass(frozen=True)
class Claims:
    """What a scheduler class claims to compute, and how the adapter reads its loop.

    method(config, scheduler, n): the spec method (raise OutsideSpec for an option the spec has
    no function for); loop: "vp" (the sample is x_t), "edm" (x̃ = x_t·√(1 + σ²)) or "flow" (the
    flow state x_σ itself; its σ's, from `sigmas`, are the claim's table, `targets.flow_betas`,
    and the model is called at the table time of σ = timestep/num_train_timesteps); end(s): the
    spec time the last step lands on; grid / sigma_grid: the claimed grid from `timesteps`, the
    σ of each grid time and the final one from `sigmas`; whole_step(k, last): whether model call
    k ends a step; noise: step() draws noise (handed in by `inject_noise`); eta: η is drawn and
    passed to step().
    """

    method: Callable[[SchedulerConfig, Any, int], Method]
    loop: str
    description: str
    end: Callable[[Any], int] = field(default=lambda s: 0)
    grid: Callable[[Sequence[float]], list[float]] = list
    sigma_grid: Callable[[Sequence[float]], list[float]] = list
    whole_step: Callable[[int, int], bool] = field(default=lambda k, last: True)
    noise: bool = False
    eta: bool = False


CLAIMS: dict[str, Claims] = {
    "ddim": Claims(_ddim, "vp", "DDIM Eq. 12 (σ of Eq. 16; η passed to step() where it takes "
                   "eta), clip_sample, set_alpha_to_one", end=_ddim_end, noise=True, eta=True),
    "ddpm": Claims(_ddpm, "vp", "DDPM Algorithm 2, respaced on a strided grid; variance_type "
                   "fixed_small / fixed_large, clip_sample", noise=True),
    "euler": Claims(lambda c, s, n: EDMEuler(), "edm", "EDM Euler (Karras Algorithm 1 without "
                    "its correction) on the VP σ's of the table, then σ = 0"),
    "heun": Claims(lambda c, s, n: EDMHeun(), "edm", "EDM Heun (Karras Algorithm 1), two model "
                   "calls per step (interleaved timesteps), then Euler into σ = 0",
                   grid=heun_grid, sigma_grid=heun_sigma_grid, whole_step=heun_whole_step),
    "dpmsolver++2m": Claims(_dpm, "vp", "DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2), "
                            "solver_order 1 or 2, lower_order_final, euler_at_final, "
                            "final_sigmas_type", end=_dpm_end),
    "dpmsolver++3m": Claims(_dpm_3m, "vp", "DPM-Solver++(3M) (spec.dpm_solver: DPM-Solver++ "
                            "Eq. 9 integrated exactly for x̂_0 quadratic in λ through the last "
                            "three x̂_0), solver_order 3 (1, 2: its lower orders), the order of "
                            "each step by diffusers' rule (1, 2, then 3), lower_order_final, "
                            "euler_at_final, final_sigmas_type", end=_dpm_end),
    "dpmsolver++2s": Claims(_dpm_2s, "vp", "DPM-Solver++(2S) (Lu et al. 2022b, Algorithm 1), the "
                            "grid in pairs from its start, solver_order 1 or 2, lower_order_final, "
                            "final_sigmas_type", end=_dpm_end),
    "unipc": Claims(_unipc, "vp", "UniPC (Zhao et al. 2023) of solver_order 1–3, solver_type "
                    "bh1 / bh2, the corrector on (disable_corrector empty) or off, "
                    "lower_order_final, final_sigmas_type; the state after a step is the "
                    "predictor's output", end=_dpm_end),
    "euler_ancestral": Claims(lambda c, s, n: EDMEulerAncestral(), "edm", "EDM ancestral Euler "
                              "(k-diffusion sample_euler_ancestral, η = 1) on the VP σ's of the "
                              "table, then σ = 0; noise through randn_tensor", noise=True),
    "flow_euler": Claims(_flow_euler, "flow", "Euler on the rectified-flow ODE dx/dσ = v̂ "
                         "(spec.flow) over the class's own sigmas, ending at σ = 0"),
    "flow_unipc": Claims(_flow_unipc, "flow", "UniPC (Zhao et al. 2023) on the rectified flow, "
                         "α = 1 − σ (use_flow_sigmas): spec.unipc on the VP table of the class's own "
                         "σ's by spec.flow's exact map, its states x_σ = x_t/(√ᾱ + √(1 − ᾱ)); "
                         "prediction_type flow_prediction; options as unipc; ending at σ = 0"),
    "flow_heun": Claims(lambda c, s, n: FlowHeun(euler_last=True), "flow", "Heun on the "
                        "rectified-flow ODE (Karras Algorithm 1 on dx/dσ = v̂) over the class's "
                        "own sigmas, two model calls per step (interleaved timesteps), Euler into σ = 0",
                        grid=heun_grid, sigma_grid=heun_sigma_grid, whole_step=heun_whole_step),
}
"""What a scheduler class can claim, by the name `--claims` takes."""


# ---------------------------------------------------------------------------------------------
# The target


def load_object(spec: str) -> Any:
    """`package.module:attribute` (attribute may be dotted) → the object; ValueError otherwise."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"expected package.module:attribute, got {spec!r}")
    try:
        obj = importlib.import_module(module)
    except ImportError as exc:
        raise ValueError(f"cannot import {module!r} (from {spec!r}): {exc}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {module!r} has no attribute {attr!r} (from {spec!r})")
        obj = getattr(obj, part)
    return obj


class SchedulerTarget:
    """A class with diffusers' scheduler interface, checked against the spec method it claims.

    cls: the class (or "package.module:Class"); claims: a name of `CLAIMS`; name: the report's
    name (default the class's); schedules: the beta_schedule values drawn where the class
    takes beta_schedule; options: further constructor keyword arguments, fixed.
    """

    config_type = SchedulerConfig

    def __init__(self, cls: Any, claims: str, *, name: str | None = None,
                 schedules: Sequence[str] = ("linear",),
                 options: dict[str, Any] | None = None) -> None:
        self.cls = load_object(cls) if isinstance(cls, str) else cls
        if claims not in CLAIMS:
            raise ValueError(f"claims must be one of {', '.join(CLAIMS)}, got {claims!r}")
        needs = ("set_timesteps", "step") + (() if CLAIMS[claims].loop == "flow" else
                                             ("scale_model_input",))
        missing = [a for a in needs if not callable(getattr(self.cls, a, None))]
        if missing:
            raise ValueError(f"{self.cls!r} lacks {', '.join(missing)}: not diffusers' scheduler "
                             "interface (set_timesteps, step, timesteps, sigmas, scale_model_input, "
                             "init_noise_sigma)")
        self.claims_name, self.claims = claims, CLAIMS[claims]
        self.name = name or self.cls.__name__
        self.schedules = tuple(schedules)
        self.options = tuple(sorted((options or {}).items()))
        params = inspect.signature(self.cls.__init__).parameters.values()
        self._any = any(p.kind is p.VAR_KEYWORD for p in params)
        self._params = {p.name for p in params}

    def accepts(self, name: str) -> bool:
        """Whether the constructor takes the keyword argument `name`."""
        return self._any or name in self._params

    def build(self, cfg: SchedulerConfig) -> Any:
        """The scheduler of `cfg`, timesteps set."""
        s = self.cls(**cfg.kwargs(self.accepts))
        s.set_timesteps(cfg.n, **({} if cfg.mu is None else {"mu": cfg.mu}))
        return s

    def _probe(self) -> Any:
        return self.build(SchedulerConfig(T=10, n=5, options=self.options))

    def families(self, profile: str) -> list[Family]:
        probe = self._probe()
        tol = self._tolerance(probe, 10)
        spacings = SPACINGS if self.accepts("timestep_spacing") else (None,)
        predictions = PREDICTIONS if self.accepts("prediction_type") else ("epsilon",)
        schedules = self.schedules if self.accepts("beta_schedule") else ("linear",)
        noise = can_inject_noise(probe)
        if self.claims.noise and self.claims_name != "ddim" and not noise:
            raise ValueError(f"{self.name}.step draws noise the adapter cannot hand it: it takes no "
                             "variance_noise argument and its module has no randn_tensor")
        note = (f"claims {self.claims_name}: {self.claims.description}; prediction_type "
                f"{', '.join(predictions)}, beta_schedule {', '.join(schedules)} and β range drawn")

        def configs(spacing: str | None, eta: bool = False) -> Any:
            return scheduler_configs(profile, spacing=spacing, predictions=predictions,
                                     schedules=schedules, eta=eta, options=self.options)

        out = [Family(f"{sp or 'its own spacing'}, any n", configs(sp), tol, note)
               for sp in spacings]
        if self.claims.eta and noise and {"eta", "*"} & step_parameters(probe):
            out.append(Family(f"{spacings[0] or 'its own spacing'}, any n, η ∈ [0.1, 1]",
                              configs(spacings[0], eta=True), tol, note))
        return out

    def _tolerance(self, s: Any, T: int) -> Tolerance:
        if self.claims.loop == "flow":
            return FLOW32
        return FLOAT64 if _table(s, T)[1] == np.float64 else FLOAT32

    def tolerance(self, cfg: SchedulerConfig) -> Tolerance:
        return self._tolerance(self.build(cfg), cfg.T)

    def code(self, cfg: SchedulerConfig) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in cfg.kwargs(self.accepts).items())
        eta = f", eta={cfg.eta!r}" if cfg.eta else ""
        from conformance.external.check import config_json

        mu = "" if cfg.mu is None else f", mu={cfg.mu!r}"
        return (f"s = {self.cls.__module__}.{self.cls.__qualname__}({args}); s.set_timesteps({cfg.n}{mu})\n"
                f"  for tau in s.timesteps: x = s.step(model(s.scale_model_input(x, tau), tau), "
                f"tau, x{eta}).prev_sample\n  x_T, noise: shape {cfg.shape}, seed {cfg.seed}\n"
                f"  rerun: python -m conformance.external --scheduler {self.cls.__module__}:"
                f"{self.cls.__qualname__} --claims {self.claims_name} --case '{config_json(cfg)}'")

    def prepare(self, cfg: SchedulerConfig) -> Run:
        s = self.build(cfg)
        if self.claims.loop == "flow":
            return self._prepare_flow(cfg, s)
        return self._prepare_table(cfg, s)

    def _prepare_flow(self, cfg: SchedulerConfig, s: Any) -> Run:
        """A flow claim: the class's own σ's as the claim's table (`targets.flow_betas`), the
        sample x_σ itself, the model called at the table time of σ = timestep / T."""
        import torch

        sig = self.claims.sigma_grid([float(v) for v in s.sigmas])
        method = self.claims.method(cfg, s, len(sig) - 1)
        if sig[-1] != 0.0:
            raise OutsideSpec(f"sigmas end in σ = {sig[-1]!r}, not 0: spec.flow's samplers end at σ = 0")
        if 1.0 < sig[0] <= SIGMA_ONE_FLOAT32:
            sig[0] = 1.0  # the float32 rounding of s·1/(1 + (s − 1)·1) = 1, read as σ = 1
        if not all(a > b for a, b in zip(sig, sig[1:], strict=False)) or sig[0] > 1.0:
            raise ValueError(f"sigmas {sig} are not a strictly decreasing grid in [0, 1] "
                             "(spec.flow's samplers need one)")
        n = len(sig) - 1
        claim = Claim(betas=flow_betas(sig[:-1]), grid=tuple(range(n, 0, -1)), end=0,
                      method=method, labels=(*(f"σ={v:.6g}" for v in sig[:-1]), "σ=0"))
        T_train = float(option(s, "num_train_timesteps", cfg.T))

        def table_time(tau: float) -> int:
            """The table time of the σ the model is called at (−1: no grid σ)."""
            d = [abs(v - tau / T_train) for v in sig]
            j = int(np.argmin(d))
            return n - j if d[j] <= 1e-6 * max(1.0, sig[j]) else -1

        def sample(x_T: np.ndarray, predict: Any, noise: np.ndarray) -> list[np.ndarray]:
            x = torch.from_numpy(np.array(x_T, dtype=np.float32))
            states, last = [x_T], len(s.timesteps) - 1
            for k, tau in enumerate(s.timesteps):
                out = torch.from_numpy(np.array(predict(x.numpy(), table_time(float(tau)))))
                x = s.step(out, tau, x).prev_sample
                if self.claims.whole_step(k, last):
                    states.append(x.double().numpy())
            return states

        return Run(claim=claim, sample=sample, dtype=np.float32, repro=self.code(cfg))

    def _prepare_table(self, cfg: SchedulerConfig, s: Any) -> Run:
        import torch

        ab, dtype = _table(s, cfg.T, cfg)
        taus = integer_timesteps(self.claims.grid([float(v) for v in s.timesteps]), cfg.T)
        n = len(taus)
        end = self.claims.end(s)
        claim = Claim(betas=1.0 - ab / np.concatenate([[1.0], ab[:-1]]),
                      grid=tuple(tau + 1 for tau in taus), end=end,
                      method=self.claims.method(cfg, s, n), prediction=cfg.prediction_type,
                      labels=(*(f"τ={tau}" for tau in taus), f"final (t={end})"))
        edm = self.claims.loop == "edm"
        sig = self.claims.sigma_grid([float(v) for v in s.sigmas]) if edm else []
        if edm and (len(sig) != n + 1 or sig[-1] != 0.0):
            raise OutsideSpec(f"sigmas {sig} do not end in σ = 0 after one σ per grid time: the "
                              "EDM claims (spec.edm, Karras Algorithm 1) end at σ = 0")
        torch_dtype = torch.float64 if dtype == np.float64 else torch.float32
        takes_eta = {"eta", "*"} & step_parameters(s)

        def sample(x_T: np.ndarray, predict: Any, noise: np.ndarray) -> list[np.ndarray]:
            scale = float(np.sqrt(1 + sig[0] ** 2)) if edm else float(s.init_noise_sigma)
            x = torch.from_numpy(np.array(x_T)).to(torch_dtype) * scale
            states, last, i = [x_T], len(s.timesteps) - 1, 0
            for k, tau in enumerate(s.timesteps):
                x_in = s.scale_model_input(x, tau)
                out = torch.from_numpy(np.array(predict(x_in.numpy(), int(tau) + 1)))
                kwargs: dict[str, Any] = {"eta": cfg.eta} if takes_eta and self.claims.eta else {}
                z = torch.from_numpy(np.array(noise[min(i, n - 1)])).to(torch_dtype)
                noisy = self.claims.noise and (cfg.eta > 0 or self.claims_name != "ddim")
                with inject_noise(s, z, kwargs) if noisy else contextlib.nullcontext(kwargs) as kw:
                    x = s.step(out, tau, x, **kw).prev_sample
                if self.claims.whole_step(k, last):
                    i += 1
                    v = x.double().numpy()
                    states.append(v / np.sqrt(1 + sig[i] ** 2) if edm else v)
            return states

        return Run(claim=claim, sample=sample, dtype=dtype, repro=self.code(cfg))


def _table(s: Any, T: int, cfg: SchedulerConfig | None = None) -> tuple[np.ndarray, Any]:
    """(ᾱ_{τ+1} for τ = 0..T−1 as float64, the dtype the scheduler computes in): its
    `alphas_cumprod`, or without one the spec's linear_betas of `cfg` (float32)."""
    table = getattr(s, "alphas_cumprod", None)
    if table is not None:
        arr = table.detach().cpu().numpy() if hasattr(table, "detach") else np.asarray(table)
        dtype = np.float64 if arr.dtype == np.float64 else np.float32
        return arr.astype(np.float64), dtype
    from spec.schedule import VPSchedule, linear_betas

    if cfg is None:
        return VPSchedule(linear_betas(T, 1e-4, 0.02)).alpha_bar[1:], np.float32
    return VPSchedule(linear_betas(cfg.T, cfg.beta_start, cfg.beta_end)).alpha_bar[1:], np.float32
