"""Records of `spec.flow`: flow matching with the rectified-flow path (Lipman et al. 2023; Liu et
al. 2023; Esser et al. 2024, "SD3")."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

import runtime.flow
import runtime.schedule
import spec.flow
import spec.model
import spec.schedule
from conformance import strategies as S
from conformance.markers import Arr, Batched, Call, Fn, Model, Times, Velocity
from conformance.plans import (
    MODEL_BF16,
    SAMPLER_BF16,
    SAMPLER_F32,
    X0_F32,
    batch_plans,
    images,
    model_of,
    rng_array,
    sched_of,
    small_arrays,
    time_of,
)
from conformance.record import Plan, Records
from conformance.records_prediction import denoise_skip

RECORDS = Records()
record = RECORDS.add

TYPE_ONLY = "a type: the runtime has its twin of the same name, there is nothing to compute"
record(name="RectifiedFlow", exempt=TYPE_ONLY)
record(name="VelocityModel", exempt=TYPE_ONLY)

unit_values = st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0))
"""σ (or ᾱ, or u) in [0, 1], ends included."""


@st.composite
def _unit_plans(draw: Any) -> Plan:
    """B, an image shape, a seed and σ ∈ [0, 1]: one for the batch, or one per sample."""
    B = draw(S.batch_sizes)
    plan: Plan = {"B": B, "shape": draw(S.image_shapes), "seed": draw(S.seeds)}
    per_sample = draw(st.booleans())
    plan["sigma"] = (draw(st.lists(unit_values, min_size=B, max_size=B)) if per_sample
                     else draw(unit_values))
    return plan


def _sigma(p: Plan, key: str = "sigma") -> Any:
    return Times(p[key]) if isinstance(p[key], list) else p[key]


def _three(p: Plan) -> Call:
    return Call([Batched(images(p, 0)), _sigma(p), Batched(images(p, 1))])


record(
    name="flow_interpolation", plan=_unit_plans(), build=_three,
    errors=(("sigma > 1", lambda: spec.flow.flow_interpolation(np.zeros(2), 1.5, np.zeros(2)),
             lambda: runtime.flow.flow_interpolation(torch.zeros(1, 2), 1.5, torch.zeros(1, 2))),),
)
record(
    name="flow_velocity_target", plan=_unit_plans(),
    build=lambda p: Call([Batched(images(p, 0)), Batched(images(p, 1))]),
)
for _name in ("x0_from_velocity", "eps_from_velocity"):
    record(name=_name, plan=_unit_plans(), build=_three)


def _unit_array(p: Plan, open_interval: bool = False) -> Arr:
    """Values in [0, 1] (ends included unless open_interval) from the plan's seed."""
    a = 0.5 * (1.0 + np.tanh(rng_array(p, 0, p["shape"], 2.0)))
    if open_interval:
        return Arr(np.clip(a, 1e-6, 0.99))  # 0.99: still below 1 after rounding to bfloat16
    a.flat[0] = 0.0
    a.flat[-1] = 1.0
    return Arr(a)


shift_plans = small_arrays.flatmap(lambda p: st.one_of(st.just(1.0), st.just(3.0),
                                                       st.floats(0.1, 10.0)).map(
    lambda s: {**p, "shift": s}))
record(
    name="time_shift", plan=shift_plans, batched=False,
    build=lambda p: Call([_unit_array(p), p["shift"]]),
    errors=(("shift = 0", lambda: spec.flow.time_shift(0.5, 0.0),
             lambda: runtime.flow.time_shift(0.5, 0.0)),),
)
record(
    name="resolution_shift", batched=False,
    plan=st.fixed_dictionaries({"m": st.floats(1.0, 1e7), "n": st.floats(1.0, 1e7)}),
    build=lambda p: Call([p["m"], p["n"]]),
    dtypes=("float64",), dtypes_reason="two Python numbers in, a Python float out",
    errors=(("n = 0", lambda: spec.flow.resolution_shift(4.0, 0.0),
             lambda: runtime.flow.resolution_shift(4.0, 0.0)),),
)
record(
    name="uniform_sigma", plan=small_arrays, batched=False,
    build=lambda p: Call([_unit_array(p)]),
    errors=(("u < 0", lambda: spec.flow.uniform_sigma(-0.1),
             lambda: runtime.flow.uniform_sigma(-0.1)),),
)
logit_normal_plans = small_arrays.flatmap(lambda p: st.tuples(
    st.one_of(st.just(0.0), st.floats(-2.0, 2.0)),
    st.one_of(st.just(1.0), st.floats(0.2, 3.0))).map(lambda ms: {**p, "m": ms[0], "s": ms[1]}))
record(
    name="logit_normal_sigma", plan=logit_normal_plans, batched=False,
    build=lambda p: Call([Arr(rng_array(p, 0, p["shape"], 2.0)), p["m"], p["s"]]),
    errors=(("s = 0", lambda: spec.flow.logit_normal_sigma(0.3, 0.0, 0.0),
             lambda: runtime.flow.logit_normal_sigma(0.3, 0.0, 0.0)),),
)
record(
    name="logit_normal_density", plan=logit_normal_plans, batched=False,
    build=lambda p: Call([_unit_array(p, open_interval=True), p["m"], p["s"]]),
    errors=(("sigma = 1", lambda: spec.flow.logit_normal_density(1.0),
             lambda: runtime.flow.logit_normal_density(1.0)),),
)


@st.composite
def _flow_sigmas_plans(draw: Any) -> Plan:
    n = draw(st.integers(1, 60))
    term = draw(st.one_of(st.none(), st.floats(0.01, 0.9)))
    return {"n": n, "shift": draw(st.one_of(st.just(1.0), st.just(3.0), st.floats(0.2, 8.0))),
            "terminal": term}


record(
    name="flow_sigmas", plan=_flow_sigmas_plans(), batched=False,
    build=lambda p: Call([p["n"], p["shift"], p["terminal"]]),
    dtypes=("float64",), dtypes_reason="returns float64 by contract, whatever the caller uses",
    errors=(("n = 0", lambda: spec.flow.flow_sigmas(0), lambda: runtime.flow.flow_sigmas(0)),
            ("shift_terminal = 1", lambda: spec.flow.flow_sigmas(2, 1.0, 1.0),
             lambda: runtime.flow.flow_sigmas(2, 1.0, 1.0))),
)


def _velocity_model(p: Plan) -> Velocity:
    """The plan's network, read as a velocity model."""
    m, channels = p["model"], p["shape"][0]
    return Velocity(Model(m["kind"], S.config_of(m, channels), S.params_of(m, channels)))


@st.composite
def _flow_step_plans(draw: Any) -> Plan:
    B = draw(S.batch_sizes)
    plan: Plan = {"B": B, "shape": draw(S.image_shapes), "seed": draw(S.seeds),
                  "model": draw(S.network_models)}
    per_sample = draw(st.booleans())
    n = B if per_sample else 1
    sig = draw(st.lists(st.one_of(st.just(1.0), st.floats(0.01, 1.0)), min_size=n, max_size=n))
    frac = draw(st.lists(st.one_of(st.just(0.0), st.floats(0.0, 0.99)), min_size=n, max_size=n))
    nxt = [s * f for s, f in zip(sig, frac, strict=True)]
    plan["sigma"], plan["sigma_next"] = (sig, nxt) if per_sample else (sig[0], nxt[0])
    return plan


class _Identity:
    """v̂(x, σ) = x, a spec velocity model for the error cases."""

    def velocity(self, x: np.ndarray, sigma: float) -> np.ndarray:
        return x


def _bad_step(spec_side: bool) -> Any:
    if spec_side:
        return spec.flow.flow_euler_step(spec.flow.RectifiedFlow(), _Identity(), np.zeros((1, 2, 2)),
                                         0.5, 0.5)
    return runtime.flow.flow_euler_step(runtime.flow.RectifiedFlow(), lambda x, s: x,
                                        torch.zeros(1, 1, 2, 2), 0.5, 0.5)


FLOW = Fn(spec.flow.RectifiedFlow(), runtime.flow.RectifiedFlow(), "RectifiedFlow()")
"""The process argument of the flow samplers, each side's own (it holds nothing)."""

for _name in ("flow_euler_step", "flow_heun_step"):
    record(
        name=_name, plan=_flow_step_plans(),
        build=lambda p: Call([FLOW, _velocity_model(p),
                              Batched(images(p, 0)), _sigma(p), _sigma(p, "sigma_next")]),
        tolerances={"bfloat16": MODEL_BF16},
        errors=(("sigma_next = sigma", lambda: _bad_step(True), lambda: _bad_step(False)),),
    )


@st.composite
def _flow_sample_plans(draw: Any) -> Plan:
    """A network, and a grid: `flow_sigmas(n, shift, terminal)` (plan["grid"] None) or any
    strictly decreasing grid in [0, 1], not necessarily from 1 or to 0."""
    plan: Plan = {"B": draw(S.batch_sizes), "shape": draw(S.image_shapes), "seed": draw(S.seeds),
                  "model": draw(S.network_models), "n": draw(st.integers(1, 8)),
                  "shift": draw(st.sampled_from([1.0, 3.0])), "grid": None}
    plan["terminal"] = draw(st.one_of(st.none(), st.floats(0.05, 0.5))) if plan["n"] >= 2 else None
    if draw(st.booleans()):
        grid = sorted(set(draw(st.lists(unit_values, min_size=2, max_size=plan["n"] + 1))),
                      reverse=True)
        plan["grid"] = grid if len(grid) >= 2 else [1.0, 0.0]
    return plan


def _grid(p: Plan) -> list[float]:
    if p["grid"] is not None:
        return p["grid"]
    return spec.flow.flow_sigmas(p["n"], p["shift"], p["terminal"]).tolist()


def _bad_grid(spec_side: bool) -> Any:
    if spec_side:
        return spec.flow.flow_euler_sample(spec.flow.RectifiedFlow(), _Identity(), np.zeros((1, 2, 2)),
                                           [1.0, 1.0, 0.0])
    return runtime.flow.flow_euler_sample(runtime.flow.RectifiedFlow(), lambda x, s: x,
                                          torch.zeros(1, 1, 2, 2), [1.0, 1.0, 0.0])


def _noise_given(spec_side: bool) -> Any:
    if spec_side:
        return spec.flow.flow_heun_sample(spec.flow.RectifiedFlow(), _Identity(), np.zeros((1, 2, 2)),
                                          [1.0, 0.0], np.zeros((1, 1, 2, 2)))
    return runtime.flow.flow_heun_sample(runtime.flow.RectifiedFlow(), lambda x, s: x,
                                         torch.zeros(1, 1, 2, 2), [1.0, 0.0],
                                         torch.zeros(1, 1, 1, 2, 2))


for _name in ("flow_euler_sample", "flow_heun_sample"):
    record(
        name=_name, plan=_flow_sample_plans(), sampler=True, max_examples=8,
        build=lambda p: Call([FLOW, _velocity_model(p),
                              Batched(images(p, 0)), _grid(p)]),
        tolerances={"float32": SAMPLER_F32, "bfloat16": SAMPLER_BF16},
        errors=(("a grid that is not strictly decreasing", lambda: _bad_grid(True),
                 lambda: _bad_grid(False)),
                ("noise given to a deterministic sampler", lambda: _noise_given(True),
                 lambda: _noise_given(False))),
    )


@st.composite
def _vp_flow_plans(draw: Any) -> Plan:
    B = draw(S.batch_sizes)
    return {"B": B, "shape": draw(S.image_shapes), "seed": draw(S.seeds),
            "value": draw(st.lists(unit_values, min_size=B, max_size=B))}


record(
    name="vp_to_flow", plan=_vp_flow_plans(),
    build=lambda p: Call([Times(p["value"]), Batched(images(p, 0))]),
    errors=(("alpha_bar > 1", lambda: spec.flow.vp_to_flow(1.5, np.zeros((1, 2, 2))),
             lambda: runtime.flow.vp_to_flow(1.5, torch.zeros(1, 1, 2, 2))),),
)
record(
    name="flow_to_vp", plan=_vp_flow_plans(),
    build=lambda p: Call([Times(p["value"]), Batched(images(p, 0))]),
    errors=(("sigma < 0", lambda: spec.flow.flow_to_vp(-0.5, np.zeros((1, 2, 2))),
             lambda: runtime.flow.flow_to_vp(-0.5, torch.zeros(1, 1, 2, 2))),),
)
record(
    name="velocity_from_vp", plan=batch_plans(model=True), skip=denoise_skip,
    build=lambda p: Call([sched_of(p), model_of(p), Batched(images(p, 0)), time_of(p["time"])]),
    tolerances={"float32": X0_F32, "bfloat16": MODEL_BF16},
    errors=(("t > T", lambda: spec.flow.velocity_from_vp(
        spec.schedule.VPSchedule(np.array([0.1, 0.2])),
        spec.model.FunctionEpsModel(lambda y, t: y), np.zeros((1, 2, 2)), 3),
        lambda: runtime.flow.velocity_from_vp(runtime.schedule.Schedule([0.1, 0.2]),
                                              lambda y, t: y, torch.zeros(1, 1, 2, 2), 3)),),
)
