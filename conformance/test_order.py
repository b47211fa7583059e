"""The runtime's ODE samplers have the order of accuracy the sampler table states (float64, on
the CPU; the set-up is in `conformance/order.py`), for every `Order` of every entry: the default
options and each variant (UniPC's orders, with and without the corrector, bh1 and bh2). The
spec side (tests/test_sampler_order.py) measures the default options and ties every variant to
its runtime twin, so these fits stand for the spec too; run on the runtime they also let
`make mutants` be killed by them (a Heun whose corrector is dropped, or a DPM-Solver++ that
reuses the current x̂_0 as the previous one, keeps only first order)."""

from __future__ import annotations

import pytest

from conformance.order import CASES, errors, fitted_order, has_order, runtime_runner


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_runtime_order_of_accuracy(case) -> None:
    points = errors(runtime_runner(case.name, case.options, case.sigma_min), case.steps)
    assert has_order(points, case.order), (
        f"{case.sampler.paper}, {case.options or 'default options'}: fitted order "
        f"{fitted_order(points):.3f}, claimed {case.order}; (NFE, error) = {points}")
