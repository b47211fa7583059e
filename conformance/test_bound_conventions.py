"""Fixed cases of the bound: every convention of `spec.likelihood.VLB_CONVENTIONS` in every
dtype and on every device, for `vlb_terms` and `bits_per_dim`. The records draw the convention
with the rest of the plan, so a few draws per dtype may miss one of them; here each is run on one
plan that every dtype can hold (17 bins, a schedule far from ᾱ = 0), so a runtime convention
whose σ_t², σ_1² or clipping departs from the spec's cannot pass."""

from __future__ import annotations

import pytest

from conformance.harness import run_case
from conformance.records_likelihood import VLB_CONVENTIONS
from conformance.registry import REGISTRY
from conformance.tolerances import devices

PLAN = {"B": 2, "shape": [1, 4, 4], "schedule": {"kind": "linear", "T": 6, "beta_start": 0.001,
                                                 "beta_end": 0.1},
        "seed": 7, "time": {"per_sample": False, "t": 3}, "bins": 17,
        "model": {"kind": "conv", "seed": 2, "blocks": 1, "groups": 1, "prediction": "eps"}}


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", REGISTRY["vlb_terms"].dtypes)
@pytest.mark.parametrize("convention", VLB_CONVENTIONS)
@pytest.mark.parametrize("name", ["vlb_terms", "bits_per_dim"])
def test_every_convention_matches_the_spec(name, convention, dtype, device):
    record = REGISTRY[name]
    plan = {**PLAN, "convention": convention}
    assert record.skip is None or not record.skip(plan, dtype)  # the plan is meant for every dtype
    run_case(record, plan, dtype, device)
