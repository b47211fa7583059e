"""Records of `spec.loss`: the ε-loss and the prediction-target loss with min-SNR-γ weights."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from conformance.markers import Batched, Call
from conformance.plans import (
    BF16_ILL_CONDITIONED,
    MODEL_BF16,
    batch_plans,
    eps_model_of,
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
    name="eps_pred_loss", plan=batch_plans(model=True), reduce="mean",
    build=lambda p: Call([sched_of(p), eps_model_of(p), Batched(images(p, 0)), time_of(p["time"]),
                          Batched(images(p, 1))]),
    tolerances={"bfloat16": MODEL_BF16},
)


@st.composite
def loss_plans(draw: Any) -> Plan:
    plan = draw(batch_plans(model=True))
    plan["gamma"] = draw(st.one_of(st.none(), st.just(5.0), st.just(math.inf),
                                   st.floats(0.1, 20.0)))
    return plan


record(
    skip=BF16_ILL_CONDITIONED,
    name="prediction_loss", plan=loss_plans(), reduce="mean",
    build=lambda p: Call([sched_of(p), model_of(p), Batched(images(p, 0)),
                          time_of(p["time"]), Batched(images(p, 1)), p["gamma"]]),
    tolerances={"bfloat16": MODEL_BF16},
)
