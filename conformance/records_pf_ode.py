"""Records of `spec.pf_ode`: the continuous VP schedules, the probability-flow ODE and its Euler
sampler.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

import runtime.pf_ode
import spec.model
import spec.pf_ode
from conformance import strategies as S
from conformance.markers import Arr, Batched, Call, Fn, Model, PFSched, Times
from conformance.plans import (
    BF16_ILL_CONDITIONED,
    MODEL_BF16,
    SAMPLER_BF16,
    SAMPLER_F32,
    cosine_s,
    images,
    model_of,
    rng_array,
)
from conformance.record import Plan, Records
from conformance.tolerances import Skip

RECORDS = Records()
record = RECORDS.add

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


def _pf_min_t(plan: Plan) -> float:
    return min(plan["t"]) if isinstance(plan["t"], list) else plan["t"]


def _pf_at_zero(plan: Plan, dtype: str) -> bool:
    exact_at_zero = plan["model"]["kind"] == "gauss" and plan["model"]["prediction"] != "x0"
    return _pf_min_t(plan) == 0.0 and not exact_at_zero


def _pf_x0_low(plan: Plan, dtype: str) -> bool:
    below = {"float32": 0.01, "bfloat16": 0.05}.get(dtype, 0.0)
    return plan["model"].get("prediction", "eps") != "eps" and _pf_min_t(plan) < below


PF_SKIP = (Skip(_pf_at_zero, PF_AT_ZERO)
           | Skip(lambda p, dtype: dtype == "float64" and 0.0 < _pf_min_t(p) < 0.01, PF_SMALL_T_F64)
           | Skip(_pf_x0_low, PF_X0_LOW)
           | BF16_ILL_CONDITIONED)


FIELD = Fn(lambda x, t: np.sin(x) - t * x, lambda x, t: torch.sin(x) - t * x, "(x,t)↦sin(x)−t·x")


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
    return model_of(p, ("continuous", p["pf"]["beta0"], p["pf"]["beta1"]))


def _pf_t(p: Plan) -> Any:
    return Times(p["t"]) if isinstance(p["t"], list) else p["t"]


PF_SMALL_T = Skip(
    lambda p, dtype: 0.0 < _pf_min_t(p) < 0.01,
    "the schedule's own methods compute in the dtype of the t they are given (float32 for a "
    "float32 tensor t: its contract; the samplers call them with float64 t), so for t in "
    "(0, 0.01) σ(t) carries float32 cancellation by design; " + PF_SMALL_T_F64,
)

record(
    skip=PF_SMALL_T,
    name="VPLinearSchedule", plan=_pf_plans(), batched=True,
    build=lambda p: Call([_pf(p), Times(p["t"] if isinstance(p["t"], list) else [p["t"]])]),
    spec_fn=lambda s, t: (s.beta(t), s.alpha_bar(t), s.sqrt_one_minus_alpha_bar(t)),
    runtime_fn=lambda s, t: (s.beta(t), s.alpha_bar(t), s.sqrt_one_minus_alpha_bar(t)),
)
record(
    skip=PF_SKIP,
    name="pf_ode_rhs", plan=_pf_plans(),
    build=lambda p: Call([_pf(p), _pf_model(p), Batched(images(p, 0)), _pf_t(p)]),
    tolerances={"bfloat16": MODEL_BF16},
    errors=(("t = 1.5", lambda: spec.pf_ode.pf_ode_rhs(
        spec.pf_ode.VPLinearSchedule(), spec.model.FunctionEpsModel(lambda y, t: y),
        np.zeros((1, 4, 4)), 1.5),
        lambda: runtime.pf_ode.pf_ode_rhs(runtime.pf_ode.VPLinearSchedule(), lambda y, t: y,
                                          torch.zeros(1, 1, 4, 4), 1.5)),),
)
record(
    name="euler_step", batched=False,
    plan=st.fixed_dictionaries({"shape": S.array_shapes, "seed": S.seeds,
                                "t": S.continuous_times, "dt": st.floats(-1.0, 1.0)}),
    build=lambda p: Call([FIELD, Arr(rng_array(p, 0, p["shape"])), p["t"], p["dt"]]),
)
record(
    name="pf_ode_uniform_grid", batched=False,
    plan=st.fixed_dictionaries({"steps": st.integers(1, 1000),
                                "t_start": st.one_of(st.just(1.0), st.floats(1e-3, 1.0))}),
    build=lambda p: Call([p["steps"], p["t_start"]]),
    dtypes=("float64",), dtypes_reason="a list of Python floats: compared in float64",
    errors=(("steps = 0", lambda: spec.pf_ode.pf_ode_uniform_grid(0),
             lambda: runtime.pf_ode.pf_ode_uniform_grid(0)),
            ("t_start = 0", lambda: spec.pf_ode.pf_ode_uniform_grid(4, 0.0),
             lambda: runtime.pf_ode.pf_ode_uniform_grid(4, 0.0))),
)


def _bad_t_grid(spec_side: bool) -> Any:
    if spec_side:
        return spec.pf_ode.pf_ode_sample_euler(spec.pf_ode.VPLinearSchedule(),
                                               spec.model.FunctionEpsModel(lambda y, t: y),
                                               np.zeros((1, 2, 2)), [1.0, 0.5, 0.5, 0.0])
    return runtime.pf_ode.pf_ode_sample_euler(runtime.pf_ode.VPLinearSchedule(), lambda y, t: y,
                                              torch.zeros(1, 1, 2, 2), [1.0, 0.5, 0.5, 0.0])


record(
    skip=BF16_ILL_CONDITIONED,
    name="pf_ode_sample_euler", plan=_pf_plans(per_sample_time=False),
    build=lambda p: Call([_pf(p), _pf_model(p), Batched(images(p, 0)),
                          spec.pf_ode.pf_ode_uniform_grid(p["steps"])]),
    errors=(("a grid that is not strictly decreasing", lambda: _bad_t_grid(True),
             lambda: _bad_t_grid(False)),),
    sampler=True, tolerances={"float32": SAMPLER_F32, "bfloat16": SAMPLER_BF16}, max_examples=8,
)


@st.composite
def _cosine_plans(draw: Any) -> Plan:
    B = draw(S.batch_sizes)
    return {"s": draw(cosine_s),
            "t": draw(st.lists(S.continuous_times, min_size=B, max_size=B)),
            "sigma": draw(st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 1e3)), min_size=B,
                                   max_size=B))}


record(
    name="VPCosineSchedule", plan=_cosine_plans(),
    build=lambda p: Call([Fn(spec.pf_ode.VPCosineSchedule(p["s"]),
                             runtime.pf_ode.VPCosineSchedule(p["s"]), f"VPCosine({p['s']:g})"),
                          Times(p["t"]), Times(p["sigma"])]),
    spec_fn=lambda s, t, sig: (s.beta(t), s.alpha_bar(t), s.sqrt_one_minus_alpha_bar(t),
                               s.time_of_edm_sigma(sig)),
    runtime_fn=lambda s, t, sig: (s.beta(t), s.alpha_bar(t), s.sqrt_one_minus_alpha_bar(t),
                                  s.time_of_edm_sigma(sig)),
)
