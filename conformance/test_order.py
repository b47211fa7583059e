"""The runtime's ODE samplers have the order of accuracy their papers claim (float64, on the
CPU; the set-up is in `conformance/order.py`): the same measurement as tests/test_sampler_order.py
makes on the spec, run here on the runtime twins so that `make mutants` can also be killed by it
(a Heun whose corrector is dropped, or a DPM-Solver++ that reuses the current x̂_0 as the previous
one, keeps only first order)."""

from __future__ import annotations

import pytest

from conformance.order import SAMPLERS, errors, fitted_order, has_order, runtime_runner


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.name)
def test_runtime_order_of_accuracy(sampler) -> None:
    points = errors(runtime_runner(sampler.name), sampler.steps)
    assert has_order(points, sampler.order), (
        f"{sampler.paper}: fitted order {fitted_order(points):.3f}, claimed {sampler.order}; "
        f"(NFE, error) = {points}")
