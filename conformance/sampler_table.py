"""The spec side of the sampler table (`runtime.samplers.SAMPLERS`, which names each spec
function by its dotted path, the runtime never importing spec): `spec_function` resolves an
entry's path, `spec_samplers` lists the spec functions that are samplers. Used by
conformance/order.py and conformance/test_sampler_table.py."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

import spec
from runtime.samplers import SAMPLERS, Sampler

SAMPLER_PARAMETERS = ("model", "x_T", "grid", "noise")
"""A spec sampler's parameters after the first (the schedule or process it walks)."""


def spec_function(entry: Sampler) -> Callable:
    """The spec function an entry's `spec` path names ("spec.ddim.ddim_sample_strided")."""
    module, _, name = entry.spec.rpartition(".")
    return getattr(importlib.import_module(module), name)


def is_sampler(obj: object) -> bool:
    """A spec sampler: a function whose parameters after the first are model, x_T, grid, noise
    (the sampler calling convention of runtime/samplers.py; `ddim_sample`, which walks every
    time and takes no grid, and `q_sample`, the forward process, are not)."""
    if not inspect.isfunction(obj):
        return False
    return tuple(inspect.signature(obj).parameters)[1:5] == SAMPLER_PARAMETERS


def spec_samplers() -> list[str]:
    """The public spec names (`spec.__all__`) that are samplers, in the spec's order."""
    return [name for name in spec.__all__ if is_sampler(getattr(spec, name))]


def table_entry(spec_name: str) -> str | None:
    """The `--sampler` name of the entry whose spec function is `spec_name`, or None."""
    return next((n for n, e in SAMPLERS.items() if e.spec.rpartition(".")[2] == spec_name),
                None)
