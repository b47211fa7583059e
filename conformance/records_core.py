"""Records of `spec.core`: EPS, the total square root and division, the MSE, and the ε-model
interface.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import runtime.core
import spec.core
from conformance.markers import Arr, Call
from conformance.plans import rng_array, small_arrays
from conformance.record import Plan, Records

RECORDS = Records()
record = RECORDS.add

record(
    name="EPS", plan=st.just({}), build=lambda p: Call([]),
    spec_fn=lambda: spec.core.EPS, runtime_fn=lambda: runtime.core.EPS, batched=False,
    dtypes=("float64",), dtypes_reason="a Python constant: compared exactly, dtype-free",
)
record(
    name="sqrt_nonneg", plan=small_arrays, batched=False,
    build=lambda p: Call([Arr(rng_array(p, 0, p["shape"]))]),  # half the values negative
)


def _safe_div_call(p: Plan) -> Call:
    y = np.abs(rng_array(p, 1, p["shape"]))
    y[rng_array(p, 2, p["shape"]) > 0.5] = 0.0  # exact zeros: the case EPS is there for
    return Call([Arr(rng_array(p, 0, p["shape"])), Arr(y)])


record(name="safe_div", plan=small_arrays, build=_safe_div_call, batched=False)
record(
    name="mse", plan=small_arrays, batched=False,
    build=lambda p: Call([Arr(rng_array(p, 0, p["shape"])), Arr(rng_array(p, 1, p["shape"]))]),
)
record(
    name="EpsModel",
    exempt="a typing.Protocol (an interface with no behaviour); runtime.core.EpsModel is its "
    "twin and every model-taking record runs runtime models through it",
)
