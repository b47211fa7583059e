"""Records of `spec.guidance`: classifier-free guidance."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st

import runtime.guidance
import runtime.model
import spec.guidance
import spec.model
from conformance import strategies as S
from conformance.markers import Arr, Batched, Call, PerSample
from conformance.plans import MODEL_BF16, cond_parts, cond_plans, images, rng_array, time_arg
from conformance.record import Plan, Records
from conformance.tolerances import Tol

RECORDS = Records()
record = RECORDS.add


def guided_call(p: Plan) -> Call:
    cfg, params = cond_parts(p)
    return Call([cfg, params, PerSample(p["labels"]), p["scale"], p["prediction"],
                 Batched(images(p, 0)), time_arg(p)])


record(
    name="guided_output", batched=False,
    plan=st.fixed_dictionaries({"shape": S.array_shapes, "seed": S.seeds,
                                "scale": st.one_of(st.just(1.0), st.floats(-2.0, 8.0))}),
    build=lambda p: Call([Arr(rng_array(p, 0, p["shape"])),
                          Arr(rng_array(p, 1, p["shape"])), p["scale"]]),
    errors=(("different shapes",
             lambda: spec.guidance.guided_output(np.zeros(2), np.zeros(3), 2.0),
             lambda: runtime.guidance.guided_output(torch.zeros(2), torch.zeros(3), 2.0)),),
)
record(
    name="GuidedModel", plan=cond_plans(), build=guided_call,
    spec_fn=lambda cfg, params, y, s, pred, x, t: spec.guidance.GuidedModel(
        spec.model.cond_film_net(cfg, params), y, s, pred).output(x, t),
    runtime_fn=lambda cfg, params, y, s, pred, x, t: runtime.guidance.GuidedModel(
        runtime.model.cond_film_net(cfg, params), y, s, pred)(x, t),
    tolerances={"bfloat16": Tol(1.5e-1, 1.5e-1, reason=MODEL_BF16.reason + "; the guided "
                                  "mix multiplies the difference of two such outputs by s "
                                  "up to 5")},
)
