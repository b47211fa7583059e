"""Records of `spec.ddpm`: x̂0, the ancestral step and the sampler (each reverse variance of
`spec.ddpm.VARIANCES` drawn)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

import runtime.ddpm
import runtime.schedule
import spec.ddpm
import spec.model
import spec.schedule
from conformance.markers import Batched, Call
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
    skip=X0_SKIP,
    name="x0_pred", plan=batch_plans(model=True),
    build=lambda p: Call([sched_of(p), model_of(p), Batched(images(p, 0)), time_of(p["time"])]),
    tolerances={"float32": X0_F32, "bfloat16": MODEL_BF16},
)

@st.composite
def _variance_plans(draw: Any, **kw: Any) -> Plan:
    """batch_plans(**kw) plus the reverse variance, one name of spec.ddpm.VARIANCES."""
    plan = draw(batch_plans(**kw))
    plan["variance"] = draw(st.sampled_from(sorted(spec.ddpm.VARIANCES)))
    return plan


def _unknown_variance(spec_side: bool) -> Any:
    if spec_side:
        return spec.ddpm.ddpm_step(spec.schedule.VPSchedule(np.array([0.1, 0.2])),
                                   spec.model.FunctionEpsModel(lambda y, t: y), 2, np.zeros(3),
                                   np.zeros(3), variance="learned")
    return runtime.ddpm.ddpm_step(runtime.schedule.Schedule([0.1, 0.2]), lambda y, t: y, 2,
                                  torch.zeros(1, 3), torch.zeros(1, 3), variance="learned")


record(
    skip=BF16_ILL_CONDITIONED,
    name="ddpm_step", plan=_variance_plans(model=True, t_low=1),
    build=lambda p: Call([sched_of(p), model_of(p), time_of(p["time"]), Batched(images(p, 0)),
                          Batched(images(p, 1))], {"variance": p["variance"]}),
    tolerances={"bfloat16": MODEL_BF16},
    errors=(("unknown variance", lambda: _unknown_variance(True), lambda: _unknown_variance(False)),),
)
record(
    skip=SAMPLER_SKIP,
    name="ddpm_sample", plan=_variance_plans(max_T=20, model=True), sampler=True,
    build=lambda p: Call([sched_of(p), model_of(p), Batched(images(p, 0)),
                          list(range(p["schedule"]["T"], -1, -1)),
                          Batched(images(p, 1, (p["schedule"]["T"],)), axis=1)],
                         {"variance": p["variance"]}),
    tolerances={"float32": SAMPLER_F32, "bfloat16": SAMPLER_BF16}, max_examples=8,
)
