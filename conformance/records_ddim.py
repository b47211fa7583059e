"""Records of `spec.ddim`: the deterministic/η step, the strided sampler and its grid."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

import runtime.ddim
import runtime.schedule
import spec.ddim
import spec.model
import spec.schedule
from conformance import conditioning
from conformance import strategies as S
from conformance.markers import Batched, Call, PerSample
from conformance.plans import (
    BF16_ILL_CONDITIONED,
    MODEL_BF16,
    SAMPLER_BF16,
    SAMPLER_F32,
    SAMPLER_SKIP,
    X0_F32,
    X0_SKIP,
    batch_plans,
    images,
    model_of,
    sched_of,
    time_of,
)
from conformance.record import Plan, Records

RECORDS = Records()
record = RECORDS.add

record(
    skip=BF16_ILL_CONDITIONED,
    name="ddim_step", plan=batch_plans(model=True, t_low=1),
    build=lambda p: Call([sched_of(p), model_of(p), time_of(p["time"]), Batched(images(p, 0))]),
    tolerances={"bfloat16": MODEL_BF16},
)
record(
    skip=SAMPLER_SKIP,
    name="ddim_sample", plan=batch_plans(max_T=20, model=True), sampler=True,
    build=lambda p: Call([sched_of(p), model_of(p), Batched(images(p, 0))]),
    tolerances={"float32": SAMPLER_F32, "bfloat16": SAMPLER_BF16}, max_examples=8,
)


@st.composite
def _ddim_prev_plans(draw: Any) -> Plan:
    ab = draw(st.floats(1e-4, 1.0))
    return {"B": draw(S.batch_sizes), "shape": draw(S.image_shapes), "seed": draw(S.seeds),
            "ab": ab, "ab_prev": draw(st.floats(ab, 1.0)), "clip": draw(st.booleans())}


record(
    name="ddim_prev", plan=_ddim_prev_plans(),
    build=lambda p: Call([p["ab_prev"], p["ab"], Batched(images(p, 0)),
                          Batched(images(p, 1)), p["clip"]]),
    conditioning=conditioning.ddim_prev,
)
record(
    name="ddim_timesteps", batched=False,
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
    z = Batched(images(p, 1)) if p["with_z"] else None
    return Call([sched_of(p), model_of(p), time_of(p["time"]), t_prev, Batched(images(p, 0)), p["eta"], z,
                 p["clip"]])


def _eta_without_z(spec_side: bool) -> Any:
    x = np.zeros((1, 4, 4))
    if spec_side:
        return spec.ddim.ddim_step_between(spec.schedule.VPSchedule(np.array([0.1, 0.2])),
                                           spec.model.FunctionEpsModel(lambda y, t: y), 2, 0, x, 0.5)
    return runtime.ddim.ddim_step_between(runtime.schedule.Schedule([0.1, 0.2]),
                                          lambda y, t: y, 2, 0, torch.zeros(1, 1, 4, 4), 0.5)


record(
    skip=X0_SKIP,
    name="ddim_step_between", plan=_ddim_between_plans(), build=_ddim_between_call,
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
    noise = Batched(images(p, 1, (steps,)), axis=1) if p["with_noise"] else None
    return Call([sched_of(p), model_of(p), Batched(images(p, 0)), p["timesteps"], noise],
                {"eta": p["eta"], "clip": p["clip"]})


def _bad_grid(spec_side: bool) -> Any:
    if spec_side:
        return spec.ddim.ddim_sample_strided(spec.schedule.VPSchedule(np.array([0.1, 0.2])),
                                             spec.model.FunctionEpsModel(lambda y, t: y),
                                             np.zeros((1, 4, 4)), [2, 2, 0])
    return runtime.ddim.ddim_sample_strided(runtime.schedule.Schedule([0.1, 0.2]), lambda y, t: y,
                                            torch.zeros(1, 1, 4, 4), [2, 2, 0])


record(
    skip=SAMPLER_SKIP,
    name="ddim_sample_strided", plan=_strided_plans(), build=_strided_call,
    sampler=True, tolerances={"float32": SAMPLER_F32, "bfloat16": SAMPLER_BF16}, max_examples=8,
    errors=(("a grid that is not strictly decreasing", lambda: _bad_grid(True),
             lambda: _bad_grid(False)),),
)
