"""Records of `spec.samplers`: the sampler table. The record compares the names, in order;
conformance/test_sampler_table.py ties each entry to its runtime twin (function, grid kind,
cost, noise)."""

from __future__ import annotations

from hypothesis import strategies as st

import runtime.samplers
import spec.samplers
from conformance.markers import Call
from conformance.record import Records

RECORDS = Records()
record = RECORDS.add

record(
    name="SAMPLERS", plan=st.just({}), build=lambda p: Call([]),
    spec_fn=lambda: tuple(spec.samplers.SAMPLERS), runtime_fn=lambda: tuple(runtime.samplers.SAMPLERS),
    batched=False, dtypes=("float64",),
    dtypes_reason="a tuple of names: compared exactly, dtype-free",
)
