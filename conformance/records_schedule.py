"""Records of `spec.schedule`: the discrete VP schedule, its β tables, zero terminal SNR, the time
the model sees and the timestep grids.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

import runtime.schedule
import spec.schedule
from conformance import strategies as S
from conformance.markers import Arr, Call, PerSample
from conformance.plans import sched_of
from conformance.record import Plan, Records

RECORDS = Records()
record = RECORDS.add


@st.composite
def _schedule_plans(draw: Any) -> Plan:
    sched = draw(S.beta_schedules())
    T = sched["T"]
    return {"schedule": sched, "t": draw(st.integers(0, T))}


record(
    name="VPSchedule", plan=_schedule_plans(), batched=False,
    build=lambda p: Call([sched_of(p), p["t"]]),
    spec_fn=lambda s, t: (s.T, s.beta, s.alpha, s.alpha_bar, s.alpha_bar[t]),
    runtime_fn=lambda s, t: (s.T, s.beta[:], s.alpha[:], s.alpha_bar[:], s.alpha_bar[t]),
    errors=(
        ("a beta above 1", lambda: spec.schedule.VPSchedule(np.array([0.1, 1.5])),
         lambda: runtime.schedule.Schedule([0.1, 1.5])),
        ("a negative beta", lambda: spec.schedule.VPSchedule(np.array([-0.1, 0.2])),
         lambda: runtime.schedule.Schedule([-0.1, 0.2])),
        ("a NaN beta", lambda: spec.schedule.VPSchedule(np.array([np.nan])),
         lambda: runtime.schedule.Schedule([float("nan")])),
    ),
)
record(
    name="linear_betas", batched=False,
    plan=st.fixed_dictionaries({"T": st.integers(1, 1000), "a": st.floats(0, 0.02),
                                "b": st.floats(0, 0.5)}),
    build=lambda p: Call([p["T"], p["a"], p["b"]]),
    dtypes=("float64",), dtypes_reason="returns float64 by contract, whatever the caller uses",
    errors=(("T = 0", lambda: spec.schedule.linear_betas(0, 1e-4, 0.02),
             lambda: runtime.schedule.linear_betas(0, 1e-4, 0.02)),),
)
record(
    name="cosine_betas", batched=False,
    plan=st.fixed_dictionaries({"T": st.integers(1, 1000), "s": st.floats(0.0, 0.05),
                                "max_beta": st.floats(0.1, 0.999)}),
    build=lambda p: Call([p["T"], p["s"], p["max_beta"]]),
    dtypes=("float64",), dtypes_reason="returns float64 by contract, whatever the caller uses",
    errors=(("T = 0", lambda: spec.schedule.cosine_betas(0), lambda: runtime.schedule.cosine_betas(0)),),
)


@st.composite
def _time_of_index_plans(draw: Any) -> Plan:
    T = draw(st.integers(0, 1000))
    return {"T": T, "t": draw(st.lists(st.integers(0, T), min_size=1, max_size=4))}


record(
    name="time_of_index", plan=_time_of_index_plans(),
    build=lambda p: Call([PerSample(p["t"]), p["T"]]),
    dtypes=("float64",), dtypes_reason="integer input; the output dtype is the caller's "
    "choice (dtype=, float64 by default)",
    errors=(("t = T + 1", lambda: spec.schedule.time_of_index(5, 4),
             lambda: runtime.schedule.time_of_index(5, 4)),),
)


record(
    name="SPACINGS", plan=st.just({}), build=lambda p: Call([]),
    spec_fn=lambda: spec.schedule.SPACINGS, runtime_fn=lambda: runtime.schedule.SPACINGS,
    batched=False, dtypes=("float64",),
    dtypes_reason="a tuple of names: compared exactly, dtype-free",
)
record(
    name="rescale_zero_terminal_snr", batched=False,
    plan=st.fixed_dictionaries({"T": st.integers(2, 1000), "a": st.floats(1e-4, 0.02),
                                "b": st.floats(0.02, 0.5),
                                "kind": st.sampled_from(["linear", "cosine"])}),
    build=lambda p: Call([Arr(
        spec.schedule.linear_betas(p["T"], p["a"], p["b"]) if p["kind"] == "linear"
        else spec.schedule.cosine_betas(p["T"]))]),
    dtypes=("float64",), dtypes_reason="returns float64 by contract, whatever the caller uses",
    errors=(("T = 1", lambda: spec.schedule.rescale_zero_terminal_snr(np.array([0.1])),
             lambda: runtime.schedule.rescale_zero_terminal_snr(torch.tensor([0.1]))),),
)
record(
    name="timestep_grid", batched=False,
    plan=st.integers(1, 1000).flatmap(lambda T: st.fixed_dictionaries(
        {"T": st.just(T), "n": st.integers(1, T),
         "spacing": st.sampled_from(list(spec.schedule.SPACINGS))})),
    build=lambda p: Call([p["T"], p["n"], p["spacing"]]),
    dtypes=("float64",), dtypes_reason="integer-valued: compared exactly",
    errors=(("n = 0", lambda: spec.schedule.timestep_grid(10, 0, "trailing"),
             lambda: runtime.schedule.timestep_grid(10, 0, "trailing")),
            ("n > T", lambda: spec.schedule.timestep_grid(10, 11, "leading"),
             lambda: runtime.schedule.timestep_grid(10, 11, "leading")),
            ("an unknown spacing", lambda: spec.schedule.timestep_grid(10, 2, "uniform"),
             lambda: runtime.schedule.timestep_grid(10, 2, "uniform"))),
)
