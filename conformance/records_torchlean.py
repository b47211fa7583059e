"""Records of `spec.torchlean`: the dynamical-system adapters of TorchLean's design (one DDIM
step and one Euler step of the probability-flow ODE as a `DynamicalSystem`). TorchLean's aliases
(k-indexed names) are not in `spec.__all__`; tests/test_spec_laws.py checks them against the
functions they alias.
"""

from __future__ import annotations

import runtime.torchlean
import spec.torchlean
from conformance.markers import Batched, Call
from conformance.plans import (
    BF16_ILL_CONDITIONED,
    MODEL_BF16,
    batch_plans,
    images,
    model_of,
    sched_of,
)
from conformance.record import Records
from conformance.records_pf_ode import PF_SKIP, _pf, _pf_model, _pf_plans

RECORDS = Records()
record = RECORDS.add

record(
    skip=BF16_ILL_CONDITIONED,
    name="ddim_step_system", plan=batch_plans(model=True, t_low=1),
    build=lambda p: Call([sched_of(p), model_of(p), p["time"]["t"] if not p["time"]["per_sample"]
                          else p["time"]["t"][0], Batched(images(p, 0))]),
    spec_fn=lambda s, m, t, x: spec.torchlean.ddim_step_system(s, m, t).step(x),
    runtime_fn=lambda s, m, t, x: runtime.torchlean.ddim_step_system(s, m, t).step(x),
    tolerances={"bfloat16": MODEL_BF16},
)
record(
    skip=PF_SKIP,
    name="pf_ode_euler_system", plan=_pf_plans(per_sample_time=False),
    build=lambda p: Call([_pf(p), _pf_model(p), p["t"], p["dt"], Batched(images(p, 0))]),
    spec_fn=lambda s, m, t, dt, x: spec.torchlean.pf_ode_euler_system(s, m, t, dt).step(x),
    runtime_fn=lambda s, m, t, dt, x: runtime.torchlean.pf_ode_euler_system(s, m, t, dt).step(x),
    tolerances={"bfloat16": MODEL_BF16},
)
