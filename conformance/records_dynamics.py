"""Records of `spec.dynamics`: the dynamical-system adapters."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

import runtime.dynamics
import spec.dynamics
from conformance import strategies as S
from conformance.markers import Arr, Call, Fn, Seq
from conformance.plans import rng_array
from conformance.record import Plan, Records

RECORDS = Records()
record = RECORDS.add


def _np_tanh_map(x: Any) -> Any:
    return 0.5 * np.tanh(x) + 0.1


def _torch_tanh_map(x: Any) -> Any:
    return 0.5 * torch.tanh(x) + 0.1


CONTRACTION = Fn(_np_tanh_map, _torch_tanh_map, "x↦0.5·tanh(x)+0.1")
DRIVEN = Fn(lambda x, u: 0.5 * np.tanh(x) + u, lambda x, u: 0.5 * torch.tanh(x) + u,
            "(x,u)↦0.5·tanh(x)+u")

dyn_plans = st.fixed_dictionaries({"shape": S.array_shapes, "seed": S.seeds,
                                   "n": st.integers(0, 6), "extra": st.integers(0, 2)})


def _x(p: Plan) -> Arr:
    return Arr(rng_array(p, 0, p["shape"]))


def _inputs(p: Plan) -> Seq:
    return Seq(rng_array(p, 1, (p["n"] + p["extra"], *p["shape"]), 0.3))


record(
    name="DynamicalSystem", plan=dyn_plans, batched=False,
    build=lambda p: Call([CONTRACTION, _x(p)]),
    spec_fn=lambda f, x: spec.dynamics.DynamicalSystem(f).step(x),
    runtime_fn=lambda f, x: runtime.dynamics.DynamicalSystem(f).step(x),
)
record(
    name="DrivenSystem", plan=dyn_plans, batched=False,
    build=lambda p: Call([DRIVEN, _x(p), Arr(rng_array(p, 1, p["shape"]))]),
    spec_fn=lambda f, x, u: (spec.dynamics.DrivenSystem(f).step(x, u),
                             spec.dynamics.DrivenSystem(f).freeze(u).step(x)),
    runtime_fn=lambda f, x, u: (runtime.dynamics.DrivenSystem(f).step(x, u),
                                runtime.dynamics.DrivenSystem(f).freeze(u).step(x)),
)
record(
    name="iterate", plan=dyn_plans, batched=False,
    build=lambda p: Call([CONTRACTION, p["n"], _x(p)]),
    spec_fn=lambda f, n, x: spec.dynamics.iterate(spec.dynamics.DynamicalSystem(f), n, x),
    runtime_fn=lambda f, n, x: runtime.dynamics.iterate(runtime.dynamics.DynamicalSystem(f), n, x),
)
record(
    name="trajectory", plan=dyn_plans, batched=False,
    build=lambda p: Call([CONTRACTION, _x(p), p["n"]]),
    spec_fn=lambda f, x, n: spec.dynamics.trajectory(spec.dynamics.DynamicalSystem(f), x, n),
    runtime_fn=lambda f, x, n: runtime.dynamics.trajectory(runtime.dynamics.DynamicalSystem(f), x, n),
)
record(
    name="iterate_with_input", plan=dyn_plans, batched=False,
    build=lambda p: Call([DRIVEN, _inputs(p), p["n"], _x(p)]),
    spec_fn=lambda f, u, n, x: spec.dynamics.iterate_with_input(
        spec.dynamics.DrivenSystem(f), u, n, x),
    runtime_fn=lambda f, u, n, x: runtime.dynamics.iterate_with_input(
        runtime.dynamics.DrivenSystem(f), u, n, x),
)
record(
    name="driven_trajectory", plan=dyn_plans, batched=False,
    build=lambda p: Call([DRIVEN, _inputs(p), _x(p), p["n"]]),
    spec_fn=lambda f, u, x, n: spec.dynamics.driven_trajectory(
        spec.dynamics.DrivenSystem(f), u, x, n),
    runtime_fn=lambda f, u, x, n: runtime.dynamics.driven_trajectory(
        runtime.dynamics.DrivenSystem(f), u, x, n),
)

AFFINE_CENTRE = 0.25
AFFINE = Fn(lambda x: AFFINE_CENTRE + 0.5 * (x - AFFINE_CENTRE),
            lambda x: AFFINE_CENTRE + 0.5 * (x - AFFINE_CENTRE), "x↦c+0.5·(x−c)")
record(
    name="is_fixed_point", batched=False,
    plan=st.fixed_dictionaries({"shape": S.array_shapes, "offset": st.sampled_from([0.0, 0.5]),
                                "atol": st.sampled_from([0.0, 1e-3, 1.0])}),
    build=lambda p: Call([AFFINE, Arr(np.full(p["shape"], AFFINE_CENTRE + p["offset"])), p["atol"]]),
    spec_fn=lambda f, x, atol: spec.dynamics.is_fixed_point(spec.dynamics.DynamicalSystem(f), x, atol),
    runtime_fn=lambda f, x, atol: runtime.dynamics.is_fixed_point(
        runtime.dynamics.DynamicalSystem(f), x, atol),
)
