"""Records of `spec.ddpm`: x̂0, the ancestral step and the sampler."""

from __future__ import annotations

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
from conformance.record import Records

RECORDS = Records()
record = RECORDS.add

record(
    skip=X0_SKIP,
    name="x0_pred", plan=batch_plans(model=True),
    build=lambda p: Call([sched_of(p), model_of(p), Batched(images(p, 0)), time_of(p["time"])]),
    tolerances={"float32": X0_F32, "bfloat16": MODEL_BF16},
)
record(
    skip=BF16_ILL_CONDITIONED,
    name="ddpm_step", plan=batch_plans(model=True, t_low=1),
    build=lambda p: Call([sched_of(p), model_of(p), time_of(p["time"]), Batched(images(p, 0)),
                          Batched(images(p, 1))]),
    tolerances={"bfloat16": MODEL_BF16},
)
record(
    skip=SAMPLER_SKIP,
    name="ddpm_sample", plan=batch_plans(max_T=20, model=True), sampler=True,
    build=lambda p: Call([sched_of(p), model_of(p), Batched(images(p, 0)),
                          list(range(p["schedule"]["T"], -1, -1)),
                          Batched(images(p, 1, (p["schedule"]["T"],)), axis=1)]),
    tolerances={"float32": SAMPLER_F32, "bfloat16": SAMPLER_BF16}, max_examples=8,
)
