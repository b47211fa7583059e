"""Records of `spec.forward`: the forward process q(x_t | x_0) and its posterior."""

from __future__ import annotations

from typing import Any

import numpy as np

from conformance import conditioning
from conformance.markers import Batched, Call, batch_size
from conformance.plans import batch_plans, images, sched_of, time_of
from conformance.record import Records

RECORDS = Records()
record = RECORDS.add


def _variance_per_sample(out: Any, call: Call) -> Any:
    """q_posterior_mean_variance: the runtime's variance (0-d or (B, 1, 1, 1)) as (B,)."""
    mean, variance = out
    return mean, np.broadcast_to(np.reshape(variance, -1), (batch_size(call),)).copy()


record(
    name="q_sample", plan=batch_plans(),
    build=lambda p: Call([sched_of(p), Batched(images(p, 0)), time_of(p["time"]), Batched(images(p, 1))]),
    conditioning=conditioning.q_sample,
)
record(
    name="q_posterior_mean_variance", plan=batch_plans(t_low=1),
    build=lambda p: Call([sched_of(p), Batched(images(p, 0)), Batched(images(p, 1)), time_of(p["time"])]),
    post=_variance_per_sample, conditioning=conditioning.q_posterior_mean_variance,
)
