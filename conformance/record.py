"""A `Record`: how one spec name is checked against its runtime twin.

A record names the runtime twin (by default the same name in the runtime module of the same
name), a hypothesis strategy for a *plan*, a builder turning the plan into a `Call` (see
`markers`), and per-dtype tolerance overrides and skips, each with its reason. Types and
constants may be exempted, with a reason.

Batched records call the runtime once on a batch and the spec once per sample, so
"per-sample t on a batch equals the spec per sample" is part of every such test; `reduce="mean"`
(the loss) compares the runtime with the mean of the per-sample spec values; `sampler=True`
also runs the batch-size independence test.

Records are written in `conformance/records_<module>.py`, one file per spec module:

    RECORDS = Records()
    record = RECORDS.add

    record(name="q_sample", plan=batch_plans(),
           build=lambda p: Call([sched_of(p), Batched(images(p, 0)), time_of(p["time"]),
                                 Batched(images(p, 1))]))

`module` is not written: the registry sets it from the records file the record is in, and
`test_coverage` checks that this is the spec module whose `__all__` lists the name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from conformance.markers import Call
from conformance.tolerances import Skip, Tol

ALL_DTYPES = ("float64", "float32", "bfloat16")
Plan = dict[str, Any]


@dataclass(frozen=True)
class Record:
    """How one spec name is checked against its runtime twin."""

    name: str
    module: str = ""  # spec.<module> and runtime.<module>; set by the registry from the file
    plan: st.SearchStrategy[Any] | None = None
    build: Callable[[Plan], Call] | None = None
    spec_fn: Callable[..., Any] | None = None  # default: spec.<module>.<name>
    runtime_fn: Callable[..., Any] | None = None  # default: runtime.<module>.<name>
    batched: bool = True
    reduce: str = "stack"  # or "mean": runtime == mean of the per-sample spec values
    post: Callable[[Any, Call], Any] | None = None  # runtime output -> the spec's layout
    tolerances: dict[str, Tol] = field(default_factory=dict)  # overrides, each with a reason
    dtypes: tuple[str, ...] = ALL_DTYPES
    dtypes_reason: str = ""  # why a dtype is left out
    sampler: bool = False  # also check batch-size independence
    max_examples: int | None = None  # cap (cost), below the profile's count
    errors: tuple[tuple[str, Callable[[], Any], Callable[[], Any]], ...] = ()
    exempt: str = ""  # reason the name has no comparison (types and constants only)
    skip: Skip | None = None  # plans left out for a dtype, with the reason
    # the formula's conditioning (conformance.conditioning): called like the spec function, it
    # gives the scale of every output; float32 and bfloat16 are then held to
    # conditioned(dtype, scale) instead of their flat row (float64 keeps its row)
    conditioning: Callable[..., Any] | None = None

    def spec_callable(self) -> Callable[..., Any]:
        return self.spec_fn or getattr(importlib.import_module(f"spec.{self.module}"), self.name)

    def runtime_callable(self) -> Callable[..., Any]:
        return self.runtime_fn or getattr(
            importlib.import_module(f"runtime.{self.module}"), self.name
        )


class Records(list[Record]):
    """The records of one records file, in the order they are written."""

    def add(self, **fields: Any) -> Record:
        """Append `Record(**fields)` and return it."""
        r = Record(**fields)
        self.append(r)
        return r
