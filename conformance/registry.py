"""The registry: one record per name in `spec.__all__`.

A record names the runtime twin (by default the same name in the runtime module of the same
name), a hypothesis strategy for a *plan*, a builder turning the plan into a `Call` (see
`harness`), and per-dtype tolerance overrides, each with its reason. Types and constants may be
exempted, with a reason. The generic tests in `test_conformance.py` iterate this registry;
`test_coverage.py` fails for any spec name without a record.

Batched records call the runtime once on a batch and the spec once per sample, so
"per-sample t on a batch equals the spec per sample" is part of every such test; `reduce="mean"`
(the loss) compares the runtime with the mean of the per-sample spec values; `sampler=True`
also runs the batch-size independence test.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

import runtime.core
import runtime.ddim
import runtime.dynamics
import runtime.model
import runtime.pf_ode
import runtime.schedule
import runtime.torchlean
import spec.core
import spec.ddim
import spec.dynamics
import spec.model
import spec.pf_ode
import spec.schedule
import spec.torchlean
from conformance import strategies as S
from conformance.harness import (
    Arr,
    Batched,
    Call,
    Cfg,
    Fn,
    Model,
    Params,
    PerSample,
    PFSched,
    Sched,
    Seq,
    Times,
    batch_size,
)
from conformance.tolerances import Tol

ALL_DTYPES = ("float64", "float32", "bfloat16")
Plan = dict[str, Any]


@dataclass(frozen=True)
class Record:
    """How one spec name is checked against its runtime twin."""

    name: str
    module: str  # spec.<module> and runtime.<module>
    plan: st.SearchStrategy[Any] | None = None
    build: Callable[[Plan], Call] | None = None
    spec_fn: Callable[..., Any] | None = None  # default: spec.<module>.<name>
    runtime_fn: Callable[..., Any] | None = None  # default: runtime.<module>.<name>
    batched: bool = True
    reduce: str = "stack"  # or "mean": runtime == mean of the per-sample spec values
    post: Callable[[Any, Call], Any] | None = None  # runtime output -> the spec's layout
    tolerances: dict[str, Tol] = field(default_factory=dict)  # overrides, each with a reason
    dtypes: tuple[str, ...] = ALL_DTYPES
    dtypes_reason: str = ""  # why a dtype is left out
    sampler: bool = False  # also check batch-size independence
    max_examples: int | None = None  # cap (cost), below the profile's count
    errors: tuple[tuple[str, Callable[[], Any], Callable[[], Any]], ...] = ()
    exempt: str = ""  # reason the name has no comparison (types and constants only)
    skip: Callable[[Plan, str], bool] | None = None  # plans left out for a dtype; fn.reason says why

    def spec_callable(self) -> Callable[..., Any]:
        return self.spec_fn or getattr(importlib.import_module(f"spec.{self.module}"), self.name)

    def runtime_callable(self) -> Callable[..., Any]:
        return self.runtime_fn or getattr(
            importlib.import_module(f"runtime.{self.module}"), self.name
        )


# ---------------------------------------------------------------------------------------------
# Plan and build helpers


def _rng_array(plan: Plan, stream: int, shape: Any, scale: float = 1.0) -> np.ndarray:
    """An N(0, scale²) array from the plan's seed; `stream` separates the arrays of one plan."""
    return S.gaussian_array(plan["seed"] * 64 + stream, shape, scale)


def _t(time_plan: Plan) -> Any:
    return PerSample(time_plan["t"]) if time_plan["per_sample"] else time_plan["t"]


@st.composite
def batch_plans(
    draw: Any,
    max_T: int = 50,
    min_beta: float = 0.0,
    t_low: int = 0,
    t_high: int = 0,
    model: bool = False,
) -> Plan:
    """B, an image shape, a discrete schedule, a time index in t_low..T + t_high, a seed and
    (optionally) an ε-model."""
    plan: Plan = {
        "B": draw(S.batch_sizes),
        "shape": draw(S.image_shapes),
        "schedule": draw(S.beta_schedules(max_T, min_beta)),
        "seed": draw(S.seeds),
    }
    T = plan["schedule"]["T"]
    plan["time"] = draw(S.time_indices(T, plan["B"], t_low, T + t_high))
    if model:
        plan["model"] = draw(S.eps_models)
    return plan


def _images(plan: Plan, stream: int, lead: tuple[int, ...] = ()) -> np.ndarray:
    return _rng_array(plan, stream, (*lead, plan["B"], *plan["shape"]))


def _sched(plan: Plan) -> Sched:
    return Sched(S.betas_of(plan["schedule"]))


def _model(plan: Plan, schedule: tuple | None = None) -> Model:
    m, channels = plan["model"], plan["shape"][0]
    if "schedule" in plan and plan["schedule"]["kind"] == "zero_snr" and \
            m.get("prediction", "eps") == "eps":
        # an ε-model cannot be sampled or asked for x̂0 at ᾱ_T = 0 (a ValueError on both sides,
        # checked by test_same_errors); zero-terminal-SNR plans use a v-model instead
        m = {**m, "prediction": "v"}
    if m["kind"] == "gauss":
        if schedule is None:
            schedule = ("discrete", S.betas_of(plan["schedule"]).tolist())
        return Model("gauss", data=S.gaussian_data_of(m, channels, schedule))
    return Model(m["kind"], S.config_of(m, channels), S.params_of(m, channels),
                 prediction=m.get("prediction", "eps"))


def _eps_model(plan: Plan) -> Model:
    """The plan's model as an ε-model (for the ε-only TorchLean loss, total at ᾱ_T = 0 too)."""
    m, channels = {**plan["model"], "prediction": "eps"}, plan["shape"][0]
    if m["kind"] == "gauss":
        return Model("gauss", data=S.gaussian_data_of(
            m, channels, ("discrete", S.betas_of(plan["schedule"]).tolist())))
    return Model(m["kind"], S.config_of(m, channels), S.params_of(m, channels))


def _variance_per_sample(out: Any, call: Call) -> Any:
    """q_posterior_mean_variance: the runtime's variance (0-d or (B, 1, 1, 1)) as (B,)."""
    mean, variance = out
    return mean, np.broadcast_to(np.reshape(variance, -1), (batch_size(call),)).copy()


def _np_tanh_map(x: Any) -> Any:
    return 0.5 * np.tanh(x) + 0.1


def _torch_tanh_map(x: Any) -> Any:
    return 0.5 * torch.tanh(x) + 0.1


CONTRACTION = Fn(_np_tanh_map, _torch_tanh_map, "x↦0.5·tanh(x)+0.1")
DRIVEN = Fn(lambda x, u: 0.5 * np.tanh(x) + u, lambda x, u: 0.5 * torch.tanh(x) + u,
            "(x,u)↦0.5·tanh(x)+u")
FIELD = Fn(lambda x, t: np.sin(x) - t * x, lambda x, t: torch.sin(x) - t * x, "(x,t)↦sin(x)−t·x")

small_arrays = st.fixed_dictionaries({"shape": S.array_shapes, "seed": S.seeds})

# ---------------------------------------------------------------------------------------------
# Tolerance overrides (each with its reason)

MODEL_BF16 = Tol(
    rtol=5e-2, atol=5e-2,
    reason="the network itself runs in bfloat16: every layer's output is rounded to 8 bits and "
    "the next layer amplifies it (depth 3-8 layers)",
)
SAMPLER_BF16 = Tol(
    rtol=1e-1, atol=1e-1,
    reason="the sampler state is stored in bfloat16 between steps (the caller's dtype), so a "
    "rounding of ~2^-9 per step accumulates over up to 50 steps of a bfloat16 network",
)
BF16_CONDITIONING = (
    "bfloat16 is checked on well-conditioned schedules only (every β_t ≤ 0.5 and ᾱ_T ≥ 0.01; "
    "for the PF ODE ᾱ(1) ≥ 0.01): elsewhere a step divides ε̂ or x̂0 by √α_t or √ᾱ_t down to "
    "0.03, so bfloat16's 2^-9 rounding of ε̂ alone exceeds any tolerance that still catches "
    "bugs; those schedules are checked in float64 and float32"
)


def _bf16_ill_conditioned(plan: Plan, dtype: str) -> bool:
    if dtype != "bfloat16":
        return False
    if "schedule" in plan:
        betas = S.betas_of(plan["schedule"])
        return bool(betas.max() > 0.5 or np.prod(1.0 - betas) < 0.01)
    if "pf" in plan:
        b0, b1 = plan["pf"]["beta0"], plan["pf"]["beta1"]
        return bool(np.exp(-(b0 + 0.5 * (b1 - b0))) < 0.01)
    return False


X0_FLOAT32 = (
    "x̂0 read at a time with ᾱ_t < 1e-4 (float32) or < 0.1 (bfloat16) is checked in float64 "
    "only: x_t − √(1−ᾱ_t)·ε̂ cancels to √ᾱ_t·x0, so the relative error of x̂0 is the dtype's "
    "rounding (6e-8, 4e-3) times |x_t|/√ᾱ_t, more than any useful tolerance"
)


SAMPLER_FLOAT32 = (
    "float32 DDPM/DDIM chains are checked where ᾱ_{T−1} ≥ 1e-4: an error made at step t is "
    "divided by √α_s at every later step, i.e. amplified by up to 1/√ᾱ_{T−1}; random schedules "
    "with β up to 0.9 reach 1e5 and are checked in float64 only"
)


def _sampler_skip(plan: Plan, dtype: str) -> bool:
    if dtype == "float32":
        betas = S.betas_of(plan["schedule"])
        return bool(np.prod(1.0 - betas[:-1]) < 1e-4)
    return _bf16_ill_conditioned(plan, dtype)


X0_MIN_ALPHA_BAR = {"float32": 1e-4, "bfloat16": 0.1}


def _x0_skip(plan: Plan, dtype: str) -> bool:
    if dtype in X0_MIN_ALPHA_BAR:
        ab = np.cumprod(np.concatenate([[1.0], 1.0 - S.betas_of(plan["schedule"])]))
        times = plan["time"]["t"] if plan["time"]["per_sample"] else [plan["time"]["t"]]
        if ab[list(times)].min() < X0_MIN_ALPHA_BAR[dtype]:
            return True
    return _bf16_ill_conditioned(plan, dtype)


PF_AT_ZERO = (
    "t = 0 exactly is checked with the Gaussian ε- and v-denoisers only (ε* = v* = 0 there, "
    "exactly; an x0-model's ε̂ = (x − x̂0)/σ(0) is rounding noise over EPS): σ(0) = 0, "
    "so the drift's ε̂ coefficient is ½β(0)/EPS ≈ 5e11 (safe_div's totality guard, never reached "
    "by a sampler), and a network's ε̂ rounding (1e-16 absolute in float64) becomes ~5e-5 in "
    "the output, beyond any fixed atol"
)


PF_SMALL_T_F64 = (
    "t in (0, 0.01) is checked in float32 and bfloat16 only (where it catches coefficients "
    "computed in the working dtype): in float64, 1 − exp(−β0·t − …) cancels, so a 1-ulp "
    "difference between math.exp (spec) and torch.exp is a relative error up to ~1e-16/(β0·t), "
    "beyond float64's 1e-12"
)


PF_X0_LOW = (
    "an x0- or v-model is checked in float32 for t >= 0.01 and in bfloat16 for t >= 0.05 only: "
    "its ε̂ = (x − √ᾱ·out)/σ(t) divides the output's rounding by σ(t) (about 16× at t = 0.004 "
    "and 8× at t = 0.016 with β0 = 1), beyond the row's tolerance; the ε-models still cover "
    "the small times that catch coefficients computed in the working dtype"
)


def _pf_skip(plan: Plan, dtype: str) -> bool:
    times = plan["t"] if isinstance(plan["t"], list) else [plan["t"]]
    exact_at_zero = plan["model"]["kind"] == "gauss" and plan["model"]["prediction"] != "x0"
    at_zero = min(times) == 0.0 and not exact_at_zero
    small = dtype == "float64" and 0.0 < min(times) < 0.01
    below = {"float32": 0.01, "bfloat16": 0.05}.get(dtype, 0.0)
    x0_low = plan["model"].get("prediction", "eps") != "eps" and min(times) < below
    return at_zero or small or x0_low or _bf16_ill_conditioned(plan, dtype)


_bf16_ill_conditioned.reason = BF16_CONDITIONING  # type: ignore[attr-defined]
_sampler_skip.reason = SAMPLER_FLOAT32 + "; " + BF16_CONDITIONING  # type: ignore[attr-defined]
_x0_skip.reason = X0_FLOAT32 + "; " + BF16_CONDITIONING  # type: ignore[attr-defined]
_pf_skip.reason = (PF_AT_ZERO + "; " + PF_SMALL_T_F64 + "; " + PF_X0_LOW + "; "
                   + BF16_CONDITIONING)  # type: ignore[attr-defined]


SAMPLER_F32 = Tol(
    rtol=1e-4, atol=1e-4,
    reason="float32 rounding of the state accumulates over up to 50 steps, each step dividing "
    "by √α_t (≥ 1) and, with a network, going through ~8 float32 layers",
)
X0_F32 = Tol(
    rtol=1e-4, atol=1e-4,
    reason="x̂0 divides x_t − √(1−ᾱ_t)·ε̂ by √ᾱ_t: near t = T of a cosine schedule (ᾱ_T ~ 1e-6) "
    "float32 rounding of the difference is amplified ~1/√ᾱ_T, relative to a result that is "
    "itself large",
)

# ---------------------------------------------------------------------------------------------
# Records, module by module

RECORDS: list[Record] = []


def record(**kwargs: Any) -> Record:
    r = Record(**kwargs)
    RECORDS.append(r)
    return r


# --- spec.core -------------------------------------------------------------------------------

record(
    name="EPS", module="core", plan=st.just({}), build=lambda p: Call([]),
    spec_fn=lambda: spec.core.EPS, runtime_fn=lambda: runtime.core.EPS, batched=False,
    dtypes=("float64",), dtypes_reason="a Python constant: compared exactly, dtype-free",
)
record(
    name="sqrt_nonneg", module="core", plan=small_arrays, batched=False,
    build=lambda p: Call([Arr(_rng_array(p, 0, p["shape"]))]),  # half the values negative
)


def _safe_div_call(p: Plan) -> Call:
    y = np.abs(_rng_array(p, 1, p["shape"]))
    y[_rng_array(p, 2, p["shape"]) > 0.5] = 0.0  # exact zeros: the case EPS is there for
    return Call([Arr(_rng_array(p, 0, p["shape"])), Arr(y)])


record(name="safe_div", module="core", plan=small_arrays, build=_safe_div_call, batched=False)
record(
    name="mse", module="core", plan=small_arrays, batched=False,
    build=lambda p: Call([Arr(_rng_array(p, 0, p["shape"])), Arr(_rng_array(p, 1, p["shape"]))]),
)
record(
    name="EpsModel", module="core",
    exempt="a typing.Protocol (an interface with no behaviour); runtime.core.EpsModel is its "
    "twin and every model-taking record runs runtime models through it",
)

# --- spec.schedule ---------------------------------------------------------------------------


@st.composite
def _schedule_plans(draw: Any) -> Plan:
    sched = draw(S.beta_schedules())
    T = sched["T"]
    return {"schedule": sched, "t": draw(st.integers(0, T))}


record(
    name="VPSchedule", module="schedule", plan=_schedule_plans(), batched=False,
    build=lambda p: Call([_sched(p), p["t"]]),
    spec_fn=lambda s, t: (s.T, s.beta, s.alpha, s.alpha_bar, s.alpha_bar[t]),
    runtime_fn=lambda s, t: (s.T, s.beta[:], s.alpha[:], s.alpha_bar[:], s.alpha_bar[t]),
    errors=(
        ("a beta above 1", lambda: spec.schedule.VPSchedule(np.array([0.1, 1.5])),
         lambda: runtime.schedule.Schedule([0.1, 1.5])),
        ("a negative beta", lambda: spec.schedule.VPSchedule(np.array([-0.1, 0.2])),
         lambda: runtime.schedule.Schedule([-0.1, 0.2])),
        ("a NaN beta", lambda: spec.schedule.VPSchedule(np.array([np.nan])),
         lambda: runtime.schedule.Schedule([float("nan")])),
    ),
)
record(
    name="linear_betas", module="schedule", batched=False,
    plan=st.fixed_dictionaries({"T": st.integers(1, 1000), "a": st.floats(0, 0.02),
                                "b": st.floats(0, 0.5)}),
    build=lambda p: Call([p["T"], p["a"], p["b"]]),
    dtypes=("float64",), dtypes_reason="returns float64 by contract, whatever the caller uses",
    errors=(("T = 0", lambda: spec.schedule.linear_betas(0, 1e-4, 0.02),
             lambda: runtime.schedule.linear_betas(0, 1e-4, 0.02)),),
)
record(
    name="cosine_betas", module="schedule", batched=False,
    plan=st.fixed_dictionaries({"T": st.integers(1, 1000), "s": st.floats(0.0, 0.05),
                                "max_beta": st.floats(0.1, 0.999)}),
    build=lambda p: Call([p["T"], p["s"], p["max_beta"]]),
    dtypes=("float64",), dtypes_reason="returns float64 by contract, whatever the caller uses",
    errors=(("T = 0", lambda: spec.schedule.cosine_betas(0), lambda: runtime.schedule.cosine_betas(0)),),
)


@st.composite
def _time_of_index_plans(draw: Any) -> Plan:
    T = draw(st.integers(0, 1000))
    return {"T": T, "t": draw(st.lists(st.integers(0, T), min_size=1, max_size=4))}


record(
    name="time_of_index", module="schedule", plan=_time_of_index_plans(),
    build=lambda p: Call([PerSample(p["t"]), p["T"]]),
    dtypes=("float64",), dtypes_reason="integer input; the output dtype is the caller's "
    "choice (dtype=, float64 by default)",
    errors=(("t = T + 1", lambda: spec.schedule.time_of_index(5, 4),
             lambda: runtime.schedule.time_of_index(5, 4)),),
)

# --- spec.forward ----------------------------------------------------------------------------

record(
    name="q_sample", module="forward", plan=batch_plans(),
    build=lambda p: Call([_sched(p), Batched(_images(p, 0)), _t(p["time"]), Batched(_images(p, 1))]),
)
record(
    name="q_posterior_mean_variance", module="forward", plan=batch_plans(t_low=1),
    build=lambda p: Call([_sched(p), Batched(_images(p, 0)), Batched(_images(p, 1)), _t(p["time"])]),
    post=_variance_per_sample,
)

# --- spec.loss -------------------------------------------------------------------------------

record(
    skip=_bf16_ill_conditioned,
    name="eps_pred_loss", module="loss", plan=batch_plans(model=True), reduce="mean",
    build=lambda p: Call([_sched(p), _eps_model(p), Batched(_images(p, 0)), _t(p["time"]),
                          Batched(_images(p, 1))]),
    tolerances={"bfloat16": MODEL_BF16},
)

# --- spec.ddpm -------------------------------------------------------------------------------

record(
    skip=_x0_skip,
    name="x0_pred", module="ddpm", plan=batch_plans(model=True),
    build=lambda p: Call([_sched(p), _model(p), Batched(_images(p, 0)), _t(p["time"])]),
    tolerances={"float32": X0_F32, "bfloat16": MODEL_BF16},
)
record(
    skip=_bf16_ill_conditioned,
    name="ddpm_step", module="ddpm", plan=batch_plans(model=True, t_low=1),
    build=lambda p: Call([_sched(p), _model(p), _t(p["time"]), Batched(_images(p, 0)),
                          Batched(_images(p, 1))]),
    tolerances={"bfloat16": MODEL_BF16},
)
record(
    skip=_sampler_skip,
    name="ddpm_sample", module="ddpm", plan=batch_plans(max_T=20, model=True), sampler=True,
    build=lambda p: Call([_sched(p), _model(p), Batched(_images(p, 0)),
                          Batched(_images(p, 1, (p["schedule"]["T"],)), axis=1)]),
    tolerances={"float32": SAMPLER_F32, "bfloat16": SAMPLER_BF16}, max_examples=8,
)

# --- spec.ddim -------------------------------------------------------------------------------

record(
    skip=_bf16_ill_conditioned,
    name="ddim_step", module="ddim", plan=batch_plans(model=True, t_low=1),
    build=lambda p: Call([_sched(p), _model(p), _t(p["time"]), Batched(_images(p, 0))]),
    tolerances={"bfloat16": MODEL_BF16},
)
record(
    skip=_sampler_skip,
    name="ddim_sample", module="ddim", plan=batch_plans(max_T=20, model=True), sampler=True,
    build=lambda p: Call([_sched(p), _model(p), Batched(_images(p, 0))]),
    tolerances={"float32": SAMPLER_F32, "bfloat16": SAMPLER_BF16}, max_examples=8,
)
record(
    skip=_bf16_ill_conditioned,
    name="ddim_step_system", module="torchlean", plan=batch_plans(model=True, t_low=1),
    build=lambda p: Call([_sched(p), _model(p), p["time"]["t"] if not p["time"]["per_sample"]
                          else p["time"]["t"][0], Batched(_images(p, 0))]),
    spec_fn=lambda s, m, t, x: spec.torchlean.ddim_step_system(s, m, t).step(x),
    runtime_fn=lambda s, m, t, x: runtime.torchlean.ddim_step_system(s, m, t).step(x),
    tolerances={"bfloat16": MODEL_BF16},
)


@st.composite
def _ddim_prev_plans(draw: Any) -> Plan:
    ab = draw(st.floats(1e-4, 1.0))
    return {"B": draw(S.batch_sizes), "shape": draw(S.image_shapes), "seed": draw(S.seeds),
            "ab": ab, "ab_prev": draw(st.floats(ab, 1.0)), "clip": draw(st.booleans())}


record(
    name="ddim_prev", module="ddim", plan=_ddim_prev_plans(),
    build=lambda p: Call([p["ab_prev"], p["ab"], Batched(_images(p, 0)),
                          Batched(_images(p, 1)), p["clip"]]),
)
record(
    name="ddim_timesteps", module="ddim", batched=False,
    plan=st.integers(1, 1000).flatmap(
        lambda T: st.fixed_dictionaries({"T": st.just(T), "n": st.integers(1, T)})),
    build=lambda p: Call([p["T"], p["n"]]),
    dtypes=("float64",), dtypes_reason="integer-valued: compared exactly",
    errors=(("num_steps = 0", lambda: spec.ddim.ddim_timesteps(10, 0),
             lambda: runtime.ddim.ddim_timesteps(10, 0)),
            ("num_steps > T", lambda: spec.ddim.ddim_timesteps(10, 11),
             lambda: runtime.ddim.ddim_timesteps(10, 11))),
)


@st.composite
def _ddim_between_plans(draw: Any) -> Plan:
    plan = draw(batch_plans(t_low=1, model=True))
    if plan["time"]["per_sample"]:  # 0 <= t_prev < t, per sample
        plan["t_prev"] = [draw(st.integers(0, t - 1)) for t in plan["time"]["t"]]
    else:
        plan["t_prev"] = draw(st.integers(0, plan["time"]["t"] - 1))
    plan["eta"] = draw(S.etas)
    plan["with_z"] = plan["eta"] > 0 or draw(st.booleans())
    plan["clip"] = draw(st.booleans())
    return plan


def _ddim_between_call(p: Plan) -> Call:
    t_prev = PerSample(p["t_prev"]) if p["time"]["per_sample"] else p["t_prev"]
    z = Batched(_images(p, 1)) if p["with_z"] else None
    return Call([_sched(p), _model(p), _t(p["time"]), t_prev, Batched(_images(p, 0)), p["eta"], z,
                 p["clip"]])


def _eta_without_z(spec_side: bool) -> Any:
    x = np.zeros((1, 4, 4))
    if spec_side:
        return spec.ddim.ddim_step_between(spec.schedule.VPSchedule(np.array([0.1, 0.2])),
                                           spec.model.FunctionEpsModel(lambda y, t: y), 2, 0, x, 0.5)
    return runtime.ddim.ddim_step_between(runtime.schedule.Schedule([0.1, 0.2]),
                                          lambda y, t: y, 2, 0, torch.zeros(1, 1, 4, 4), 0.5)


record(
    skip=_x0_skip,
    name="ddim_step_between", module="ddim", plan=_ddim_between_plans(), build=_ddim_between_call,
    tolerances={"float32": X0_F32, "bfloat16": MODEL_BF16},
    errors=(("eta > 0 without z", lambda: _eta_without_z(True), lambda: _eta_without_z(False)),),
)


@st.composite
def _strided_plans(draw: Any) -> Plan:
    plan = draw(batch_plans(max_T=30, model=True))
    plan["timesteps"] = draw(S.timestep_grids(plan["schedule"]["T"]))
    plan["eta"] = draw(S.etas)
    plan["with_noise"] = plan["eta"] > 0 or draw(st.booleans())
    plan["clip"] = draw(st.booleans())
    return plan


def _strided_call(p: Plan) -> Call:
    steps = len(p["timesteps"]) - 1
    noise = Batched(_images(p, 1, (steps,)), axis=1) if p["with_noise"] else None
    return Call([_sched(p), _model(p), Batched(_images(p, 0)), p["timesteps"], p["eta"], noise,
                 p["clip"]])


def _bad_grid(spec_side: bool) -> Any:
    if spec_side:
        return spec.ddim.ddim_sample_strided(spec.schedule.VPSchedule(np.array([0.1, 0.2])),
                                             spec.model.FunctionEpsModel(lambda y, t: y),
                                             np.zeros((1, 4, 4)), [2, 2, 0])
    return runtime.ddim.ddim_sample_strided(runtime.schedule.Schedule([0.1, 0.2]), lambda y, t: y,
                                            torch.zeros(1, 1, 4, 4), [2, 2, 0])


record(
    skip=_sampler_skip,
    name="ddim_sample_strided", module="ddim", plan=_strided_plans(), build=_strided_call,
    sampler=True, tolerances={"float32": SAMPLER_F32, "bfloat16": SAMPLER_BF16}, max_examples=8,
    errors=(("a grid that is not strictly decreasing", lambda: _bad_grid(True),
             lambda: _bad_grid(False)),),
)

# --- spec.pf_ode -----------------------------------------------------------------------------


@st.composite
def _pf_plans(draw: Any, per_sample_time: bool = True, max_steps: int = 20) -> Plan:
    plan: Plan = {"B": draw(S.batch_sizes), "shape": draw(S.image_shapes), "seed": draw(S.seeds),
                  "pf": draw(S.pf_schedules), "model": draw(S.eps_models)}
    times = st.one_of(S.continuous_times, S.small_continuous_times)
    if per_sample_time and draw(st.booleans()):
        plan["t"] = draw(st.lists(times, min_size=plan["B"], max_size=plan["B"]))
    else:
        plan["t"] = draw(times)
    plan["dt"] = draw(st.floats(-0.5, 0.5))
    plan["steps"] = draw(st.integers(1, max_steps))
    return plan


def _pf(p: Plan) -> PFSched:
    return PFSched(p["pf"]["beta0"], p["pf"]["beta1"])


def _pf_model(p: Plan) -> Model:
    return _model(p, ("continuous", p["pf"]["beta0"], p["pf"]["beta1"]))


def _pf_t(p: Plan) -> Any:
    return Times(p["t"]) if isinstance(p["t"], list) else p["t"]



def _pf_small_t(plan: Plan, dtype: str) -> bool:
    times = plan["t"] if isinstance(plan["t"], list) else [plan["t"]]
    return 0.0 < min(times) < 0.01


_pf_small_t.reason = (  # type: ignore[attr-defined]
    "the schedule's own methods compute in the dtype of the t they are given (float32 for a "
    "float32 tensor t: its contract; the samplers call them with float64 t), so for t in "
    "(0, 0.01) σ(t) carries float32 cancellation by design; " + PF_SMALL_T_F64
)

record(
    skip=_pf_small_t,
    name="VPLinearSchedule", module="pf_ode", plan=_pf_plans(), batched=True,
    build=lambda p: Call([_pf(p), Times(p["t"] if isinstance(p["t"], list) else [p["t"]])]),
    spec_fn=lambda s, t: (s.beta(t), s.alpha_bar(t), s.sqrt_one_minus_alpha_bar(t)),
    runtime_fn=lambda s, t: (s.beta(t), s.alpha_bar(t), s.sqrt_one_minus_alpha_bar(t)),
)
record(
    skip=_pf_skip,
    name="pf_ode_rhs", module="pf_ode", plan=_pf_plans(),
    build=lambda p: Call([_pf(p), _pf_model(p), Batched(_images(p, 0)), _pf_t(p)]),
    tolerances={"bfloat16": MODEL_BF16},
    errors=(("t = 1.5", lambda: spec.pf_ode.pf_ode_rhs(
        spec.pf_ode.VPLinearSchedule(), spec.model.FunctionEpsModel(lambda y, t: y),
        np.zeros((1, 4, 4)), 1.5),
        lambda: runtime.pf_ode.pf_ode_rhs(runtime.pf_ode.VPLinearSchedule(), lambda y, t: y,
                                          torch.zeros(1, 1, 4, 4), 1.5)),),
)
record(
    name="euler_step", module="pf_ode", batched=False,
    plan=st.fixed_dictionaries({"shape": S.array_shapes, "seed": S.seeds,
                                "t": S.continuous_times, "dt": st.floats(-1.0, 1.0)}),
    build=lambda p: Call([FIELD, Arr(_rng_array(p, 0, p["shape"])), p["t"], p["dt"]]),
)
record(
    skip=_bf16_ill_conditioned,
    name="pf_ode_sample_euler", module="pf_ode", plan=_pf_plans(per_sample_time=False),
    build=lambda p: Call([_pf(p), _pf_model(p), p["steps"], Batched(_images(p, 0))]),
    sampler=True, tolerances={"float32": SAMPLER_F32, "bfloat16": SAMPLER_BF16}, max_examples=8,
)
record(
    skip=_pf_skip,
    name="pf_ode_euler_system", module="torchlean", plan=_pf_plans(per_sample_time=False),
    build=lambda p: Call([_pf(p), _pf_model(p), p["t"], p["dt"], Batched(_images(p, 0))]),
    spec_fn=lambda s, m, t, dt, x: spec.torchlean.pf_ode_euler_system(s, m, t, dt).step(x),
    runtime_fn=lambda s, m, t, dt, x: runtime.torchlean.pf_ode_euler_system(s, m, t, dt).step(x),
    tolerances={"bfloat16": MODEL_BF16},
)

# --- spec.dynamics ---------------------------------------------------------------------------

dyn_plans = st.fixed_dictionaries({"shape": S.array_shapes, "seed": S.seeds,
                                   "n": st.integers(0, 6), "extra": st.integers(0, 2)})


def _x(p: Plan) -> Arr:
    return Arr(_rng_array(p, 0, p["shape"]))


def _inputs(p: Plan) -> Seq:
    return Seq(_rng_array(p, 1, (p["n"] + p["extra"], *p["shape"]), 0.3))


record(
    name="DynamicalSystem", module="dynamics", plan=dyn_plans, batched=False,
    build=lambda p: Call([CONTRACTION, _x(p)]),
    spec_fn=lambda f, x: spec.dynamics.DynamicalSystem(f).step(x),
    runtime_fn=lambda f, x: runtime.dynamics.DynamicalSystem(f).step(x),
)
record(
    name="DrivenSystem", module="dynamics", plan=dyn_plans, batched=False,
    build=lambda p: Call([DRIVEN, _x(p), Arr(_rng_array(p, 1, p["shape"]))]),
    spec_fn=lambda f, x, u: (spec.dynamics.DrivenSystem(f).step(x, u),
                             spec.dynamics.DrivenSystem(f).freeze(u).step(x)),
    runtime_fn=lambda f, x, u: (runtime.dynamics.DrivenSystem(f).step(x, u),
                                runtime.dynamics.DrivenSystem(f).freeze(u).step(x)),
)
record(
    name="iterate", module="dynamics", plan=dyn_plans, batched=False,
    build=lambda p: Call([CONTRACTION, p["n"], _x(p)]),
    spec_fn=lambda f, n, x: spec.dynamics.iterate(spec.dynamics.DynamicalSystem(f), n, x),
    runtime_fn=lambda f, n, x: runtime.dynamics.iterate(runtime.dynamics.DynamicalSystem(f), n, x),
)
record(
    name="trajectory", module="dynamics", plan=dyn_plans, batched=False,
    build=lambda p: Call([CONTRACTION, _x(p), p["n"]]),
    spec_fn=lambda f, x, n: spec.dynamics.trajectory(spec.dynamics.DynamicalSystem(f), x, n),
    runtime_fn=lambda f, x, n: runtime.dynamics.trajectory(runtime.dynamics.DynamicalSystem(f), x, n),
)
record(
    name="iterate_with_input", module="dynamics", plan=dyn_plans, batched=False,
    build=lambda p: Call([DRIVEN, _inputs(p), p["n"], _x(p)]),
    spec_fn=lambda f, u, n, x: spec.dynamics.iterate_with_input(
        spec.dynamics.DrivenSystem(f), u, n, x),
    runtime_fn=lambda f, u, n, x: runtime.dynamics.iterate_with_input(
        runtime.dynamics.DrivenSystem(f), u, n, x),
)
record(
    name="driven_trajectory", module="dynamics", plan=dyn_plans, batched=False,
    build=lambda p: Call([DRIVEN, _inputs(p), _x(p), p["n"]]),
    spec_fn=lambda f, u, x, n: spec.dynamics.driven_trajectory(
        spec.dynamics.DrivenSystem(f), u, x, n),
    runtime_fn=lambda f, u, x, n: runtime.dynamics.driven_trajectory(
        runtime.dynamics.DrivenSystem(f), u, x, n),
)

AFFINE_CENTRE = 0.25
AFFINE = Fn(lambda x: AFFINE_CENTRE + 0.5 * (x - AFFINE_CENTRE),
            lambda x: AFFINE_CENTRE + 0.5 * (x - AFFINE_CENTRE), "x↦c+0.5·(x−c)")
record(
    name="is_fixed_point", module="dynamics", batched=False,
    plan=st.fixed_dictionaries({"shape": S.array_shapes, "offset": st.sampled_from([0.0, 0.5]),
                                "atol": st.sampled_from([0.0, 1e-3, 1.0])}),
    build=lambda p: Call([AFFINE, Arr(np.full(p["shape"], AFFINE_CENTRE + p["offset"])), p["atol"]]),
    spec_fn=lambda f, x, atol: spec.dynamics.is_fixed_point(spec.dynamics.DynamicalSystem(f), x, atol),
    runtime_fn=lambda f, x, atol: runtime.dynamics.is_fixed_point(
        runtime.dynamics.DynamicalSystem(f), x, atol),
)

# --- spec.model ------------------------------------------------------------------------------


@st.composite
def _image_plans(draw: Any) -> Plan:
    plan: Plan = {"B": draw(S.batch_sizes), "shape": draw(S.image_shapes), "seed": draw(S.seeds)}
    if draw(st.booleans()):
        plan["t"] = draw(st.lists(S.continuous_times, min_size=plan["B"], max_size=plan["B"]))
    else:
        plan["t"] = draw(S.continuous_times)
    return plan


def _time_arg(p: Plan) -> Any:
    return Times(p["t"]) if isinstance(p["t"], list) else p["t"]


record(
    name="append_time_channel", module="model", plan=_image_plans(),
    build=lambda p: Call([Batched(_images(p, 0)), _time_arg(p)]),
)


@st.composite
def _conv_plans(draw: Any) -> Plan:
    plan = draw(_image_plans())
    plan["out"] = draw(st.integers(1, 4))
    return plan


def _conv_call(p: Plan) -> Call:
    c = p["shape"][0]
    weight = _rng_array(p, 1, (p["out"], c, 3, 3), 1 / np.sqrt(9 * c))
    return Call([Batched(_images(p, 0)), Arr(weight), Arr(_rng_array(p, 2, (p["out"],)))])


record(name="conv2d_same", module="model", plan=_conv_plans(), build=_conv_call)
record(name="relu", module="model", plan=small_arrays, batched=False,
       build=lambda p: Call([Arr(_rng_array(p, 0, p["shape"]))]))
record(name="silu", module="model", plan=small_arrays, batched=False,
       build=lambda p: Call([Arr(_rng_array(p, 0, p["shape"], 20.0))]))  # large |x| too


@st.composite
def _group_norm_plans(draw: Any) -> Plan:
    plan = draw(_image_plans())
    plan["groups"] = draw(st.integers(1, 4))
    plan["per_group"] = draw(st.integers(1, 3))
    return plan


def _group_norm_call(p: Plan) -> Call:
    c = p["groups"] * p["per_group"]
    x = _rng_array(p, 0, (p["B"], c, *p["shape"][1:]), 2.0) + 1.0
    return Call([Batched(x), Arr(_rng_array(p, 1, (c,)) + 1.0), Arr(_rng_array(p, 2, (c,))),
                 p["groups"]])


record(name="group_norm", module="model", plan=_group_norm_plans(), build=_group_norm_call)
record(
    name="linear", module="model",
    plan=st.fixed_dictionaries({"B": S.batch_sizes, "i": st.integers(1, 16), "o": st.integers(1, 16),
                                "seed": S.seeds}),
    build=lambda p: Call([Batched(_rng_array(p, 0, (p["B"], p["i"]))),
                          Arr(_rng_array(p, 1, (p["o"], p["i"]), 1 / np.sqrt(p["i"]))),
                          Arr(_rng_array(p, 2, (p["o"],)))]),
)
record(
    name="sinusoidal_embedding", module="model",
    plan=st.fixed_dictionaries({"t": st.lists(S.continuous_times, min_size=1, max_size=3),
                                "dim": st.integers(1, 16).map(lambda h: 2 * h)}),
    build=lambda p: Call([Times(p["t"]), p["dim"]]),
    tolerances={"float32": Tol(0, 3e-4, reason="args = 1000·t·freqs reach 1000: one float32 "
                               "rounding of the argument (ulp(1000) ≈ 6e-5, a few of them) "
                               "passes straight into sin/cos")},
    errors=(("an odd dim", lambda: spec.model.sinusoidal_embedding(0.5, 3),
             lambda: runtime.model.sinusoidal_embedding(0.5, 3)),),
)


def _config_fields(cfg: Any) -> Any:
    fields = dataclasses.fields(type(cfg))
    return (dataclasses.astuple(cfg), [f.name for f in fields],
            [repr(f.default) for f in fields])


conv_configs = st.fixed_dictionaries({"data_channels": st.integers(1, 3),
                                      "hidden_channels": st.integers(1, 16),
                                      "residual_blocks": st.integers(0, 3)})
film_configs = st.fixed_dictionaries({"data_channels": st.integers(1, 3),
                                      "groups": st.sampled_from([1, 2, 4]),
                                      "per_group": st.integers(1, 4),
                                      "residual_blocks": st.integers(0, 3),
                                      "half_embed": st.integers(1, 8)})


def _film_cfg(p: Plan) -> Cfg:
    return Cfg("EpsFiLMNetConfig", {"data_channels": p["data_channels"],
                                    "hidden_channels": p["groups"] * p["per_group"],
                                    "residual_blocks": p["residual_blocks"],
                                    "embed_dim": 2 * p["half_embed"], "groups": p["groups"]})


record(
    name="EpsConvNetConfig", module="model", plan=conv_configs, batched=False,
    build=lambda p: Call([Cfg("EpsConvNetConfig", p)]), spec_fn=_config_fields,
    runtime_fn=_config_fields, dtypes=("float64",), dtypes_reason="a config: fields compared exactly",
    errors=(("data_channels = 0", lambda: spec.model.EpsConvNetConfig(0, 8),
             lambda: runtime.model.EpsConvNetConfig(0, 8)),),
)
record(
    name="EpsFiLMNetConfig", module="model", plan=film_configs, batched=False,
    build=lambda p: Call([_film_cfg(p)]), spec_fn=_config_fields, runtime_fn=_config_fields,
    dtypes=("float64",), dtypes_reason="a config: fields compared exactly",
    errors=(("groups not dividing hidden_channels",
             lambda: spec.model.EpsFiLMNetConfig(1, 6, 1, 8, 4),
             lambda: runtime.model.EpsFiLMNetConfig(1, 6, 1, 8, 4)),
            ("an odd embed_dim", lambda: spec.model.EpsFiLMNetConfig(1, 8, 1, 7, 4),
             lambda: runtime.model.EpsFiLMNetConfig(1, 8, 1, 7, 4))),
)
record(
    name="init_params", module="model", batched=False,
    plan=st.fixed_dictionaries({"cfg": conv_configs, "seed": S.seeds}),
    build=lambda p: Call([Cfg("EpsConvNetConfig", p["cfg"]), p["seed"]]),
    dtypes=("float64",), dtypes_reason="initial parameters are float64 by contract",
    tolerances={"float64": Tol(0, 0, reason="the same NumPy generator draws the same numbers: "
                               "exact")},
)
record(
    name="init_film_params", module="model", batched=False,
    plan=st.fixed_dictionaries({"cfg": film_configs, "seed": S.seeds}),
    build=lambda p: Call([_film_cfg(p["cfg"]), p["seed"]]),
    dtypes=("float64",), dtypes_reason="initial parameters are float64 by contract",
    tolerances={"float64": Tol(0, 0, reason="the same NumPy generator draws the same numbers: "
                               "exact")},
)


@st.composite
def _net_plans(draw: Any, kind: str) -> Plan:
    plan = draw(_image_plans())
    plan["model"] = draw(S.network_models.map(lambda m: {**m, "kind": kind}))
    return plan


def _net_call(p: Plan, with_cfg: bool = False) -> Call:
    c = p["shape"][0]
    params = Params(S.params_of(p["model"], c))
    head = [Cfg("EpsFiLMNetConfig", dataclasses.asdict(S.config_of(p["model"], c))), params] \
        if with_cfg else [params]
    return Call([*head, Batched(_images(p, 0)), _time_arg(p)])


record(
    name="eps_conv_net", module="model", plan=_net_plans("conv"), build=_net_call,
    spec_fn=lambda params, x, t: spec.model.eps_conv_net(params).eps(x, t),
    runtime_fn=lambda params, x, t: runtime.model.eps_conv_net(params)(x, t),
    tolerances={"bfloat16": MODEL_BF16},
)
record(
    name="eps_residual_conv_net", module="model", plan=_net_plans("residual"), build=_net_call,
    spec_fn=lambda params, x, t: spec.model.eps_residual_conv_net(params).eps(x, t),
    runtime_fn=lambda params, x, t: runtime.model.eps_residual_conv_net(params)(x, t),
    tolerances={"bfloat16": MODEL_BF16},
)
record(
    name="eps_film_net", module="model", plan=_net_plans("film"),
    build=lambda p: _net_call(p, with_cfg=True),
    spec_fn=lambda cfg, params, x, t: spec.model.eps_film_net(cfg, params).eps(x, t),
    runtime_fn=lambda cfg, params, x, t: runtime.model.eps_film_net(cfg, params)(x, t),
    tolerances={"bfloat16": MODEL_BF16},
)

# --- spec.data -------------------------------------------------------------------------------

record(
    name="to_diffusion_range", module="data", plan=small_arrays, batched=False,
    build=lambda p: Call([Arr(S.binned_images(p["seed"], p["shape"], 256) * 0.5 + 0.5)]),
)
record(
    name="from_diffusion_range", module="data", plan=small_arrays, batched=False,
    build=lambda p: Call([Arr(_rng_array(p, 0, p["shape"]))]),
)
record(
    name="noised_sample_from_eps", module="data", plan=batch_plans(),
    build=lambda p: Call([_sched(p), Batched(_images(p, 0)), _t(p["time"]), Batched(_images(p, 1))]),
)

# --- spec.likelihood -------------------------------------------------------------------------

record(
    name="normal_kl", module="likelihood", plan=small_arrays, batched=False,
    build=lambda p: Call([Arr(_rng_array(p, 0, p["shape"])),
                          Arr(np.clip(_rng_array(p, 1, p["shape"], 2.0), -5, 2)),
                          Arr(_rng_array(p, 2, p["shape"])),
                          Arr(np.clip(_rng_array(p, 3, p["shape"], 2.0), -5, 2))]),
)
record(
    name="standard_normal_cdf", module="likelihood", plan=small_arrays, batched=False,
    build=lambda p: Call([Arr(_rng_array(p, 0, p["shape"], 4.0))]),
)


DGLL_TAILS = (
    "p = Φ(b) − Φ(a) with both CDF values near 0 or near 1: a 1-ulp (1e-16) difference between "
    "math.erf (spec) and torch.erf is divided by p before the log, and p goes down to the 1e-12 "
    "floor, so two correct float64 implementations differ by up to ~1e-4 in log p (rarely: "
    "only elements with p in [1e-12, 1e-8])"
)
DGLL_F64 = Tol(rtol=1e-12, atol=1e-4, reason=DGLL_TAILS)


def _not_in_bf16(p: Plan, dtype: str) -> bool:
    return dtype == "bfloat16" and p["bins"] == 256


_not_in_bf16.reason = (  # type: ignore[attr-defined]
    "bfloat16 cannot hold the 256-bin grid 2k/255 − 1 (8 significant bits), so such data is "
    "off the grid by construction; 256 bins are checked in float64 and float32"
)


@st.composite
def _dgll_plans(draw: Any) -> Plan:
    return {"shape": draw(S.array_shapes), "seed": draw(S.seeds), "bins": draw(S.bins_counts),
            "log_scale": draw(st.floats(-6.0, 0.0)), "spread": draw(st.floats(0.0, 0.5))}


record(
    name="discretized_gaussian_log_likelihood", module="likelihood", plan=_dgll_plans(),
    batched=False,
    build=lambda p: Call([Arr(x := S.binned_images(p["seed"], p["shape"], p["bins"])),
                          Arr(x + _rng_array(p, 1, p["shape"], p["spread"])), p["log_scale"],
                          p["bins"]]),
    tolerances={"float64": DGLL_F64, "float32": Tol(2e-5, 1e-4, reason=DGLL_TAILS)},
    skip=_not_in_bf16,
)


def _vlb_skip(p: Plan, dtype: str) -> bool:
    return _not_in_bf16(p, dtype) or _bf16_ill_conditioned(p, dtype)


_vlb_skip.reason = _not_in_bf16.reason + "; " + BF16_CONDITIONING  # type: ignore[attr-defined]


@st.composite
def _vlb_plans(draw: Any) -> Plan:
    plan = draw(batch_plans(max_T=10, min_beta=1e-4, model=True))
    plan["bins"] = draw(S.bins_counts)
    return plan


def _vlb_call(p: Plan) -> Call:
    x0 = S.binned_images(p["seed"], (p["B"], *p["shape"]), p["bins"])
    noise = _images(p, 1, (p["schedule"]["T"],))
    return Call([_sched(p), _model(p), Batched(x0), Batched(noise, axis=1), p["bins"]])


VLB_F32 = Tol(
    rtol=1e-4, atol=1e-3,
    reason="each term is a sum over up to 3·8·8 elements of KLs whose means differ by "
    "float32-rounded x̂0 (amplified by 1/√ᾱ_t) and divided by β̃_t",
)
record(
    name="vlb_terms", module="likelihood", plan=_vlb_plans(), build=_vlb_call, skip=_vlb_skip,
    tolerances={"float64": DGLL_F64, "float32": VLB_F32},
    max_examples=10,
)
record(
    name="bits_per_dim", module="likelihood", plan=_vlb_plans(), build=_vlb_call, skip=_vlb_skip,
    tolerances={"float64": Tol(1e-12, 1e-6, reason=DGLL_TAILS + "; divided by (elements·ln 2)"),
                "float32": VLB_F32},
    max_examples=10,
)

import conformance.records_solvers  # noqa: E402, F401  (EDM, DPM-Solver++, cosine PF ODE)

RECORDS.extend(Record(**kw) for kw in importlib.import_module("conformance.records_train").RECORDS)
from conformance.records_prediction import prediction_records  # noqa: E402

RECORDS += prediction_records()

REGISTRY: dict[str, Record] = {r.name: r for r in RECORDS}
if len(REGISTRY) != len(RECORDS):
    raise RuntimeError("two registry records share a name")
