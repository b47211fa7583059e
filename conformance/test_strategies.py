"""Meta-tests: each strategy noun draws what its docstring promises, and every record's plan
builds a call (so a broken strategy fails here, by name, not deep inside a conformance test)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spec.model
from conformance import strategies as S
from conformance.markers import batch_size
from conformance.registry import RECORDS


@given(S.beta_schedules(), st.sampled_from([0.0, 1e-4]))
def test_beta_schedules_are_valid(plan: dict, _min: float) -> None:
    betas = S.betas_of(plan)
    assert betas.shape == (plan["T"],) and betas.dtype == np.float64
    if plan["kind"] == "zero_snr":  # Lin et al. 2023: β_T = 1 exactly, the rest in (0, 1)
        assert betas[-1] == 1.0 and np.all((betas[:-1] > 0) & (betas[:-1] < 1))
    else:
        assert np.all((betas >= 0) & (betas < 1))
    json.dumps(plan)


@given(S.beta_schedules(min_beta=1e-4))
def test_beta_schedules_respect_min_beta(plan: dict) -> None:
    assert S.betas_of(plan).min() >= 1e-4 - 1e-18


@given(st.data(), st.integers(1, 50), S.batch_sizes, st.integers(0, 1))
def test_time_indices_are_in_range(data: st.DataObject, T: int, B: int, low: int) -> None:
    plan = data.draw(S.time_indices(T, B, low))
    ts = plan["t"] if plan["per_sample"] else [plan["t"]]
    assert all(low <= t <= T for t in ts)
    assert not plan["per_sample"] or len(ts) == B


@given(st.data(), st.integers(1, 60))
def test_timestep_grids_are_strictly_decreasing_to_zero(data: st.DataObject, T: int) -> None:
    grid = data.draw(S.timestep_grids(T))
    assert 1 <= grid[0] <= T and grid[-1] == 0
    assert all(a > b for a, b in zip(grid, grid[1:], strict=False))


@given(S.image_shapes, S.seeds)
def test_gaussian_arrays_have_the_shape(shape: list[int], seed: int) -> None:
    a = S.gaussian_array(seed, shape)
    assert a.shape == tuple(shape) and np.all(np.isfinite(a))
    assert np.array_equal(a, S.gaussian_array(seed, shape))  # deterministic


@given(S.array_shapes, S.seeds, S.bins_counts)
def test_binned_images_lie_on_the_grid(shape: list[int], seed: int, bins: int) -> None:
    x = S.binned_images(seed, shape, bins)
    k = (x + 1) * (bins - 1) / 2
    assert np.allclose(k, np.round(k)) and x.min() >= -1 and x.max() <= 1


@given(S.continuous_times)
def test_continuous_times_avoid_the_cancellation_band(t: float) -> None:
    assert t == 0.0 or 0.01 <= t <= 1.0


@settings(max_examples=10)
@given(S.eps_models, st.integers(1, 3))
def test_eps_models_build_on_the_spec_side(plan: dict, channels: int) -> None:
    if plan["kind"] == "gauss":
        data = S.gaussian_data_of(plan, channels, ("continuous", 0.1, 20.0))
        assert data.mu.shape == data.var.shape == (channels, 1, 1) and data.var.min() > 0
        return
    cfg = S.config_of(plan, channels)
    params = S.params_of(plan, channels)
    x = np.zeros((channels, 4, 4))
    model = (spec.model.eps_film_net(cfg, params) if plan["kind"] == "film" else
             spec.model.eps_residual_conv_net(params) if plan["kind"] == "residual" else
             spec.model.eps_conv_net(params))
    assert model.eps(x, 0.5).shape == x.shape


@given(S.etas)
def test_etas_are_in_unit_interval(eta: float) -> None:
    assert 0.0 <= eta <= 1.0


@pytest.mark.parametrize("record", [r for r in RECORDS if not r.exempt], ids=lambda r: r.name)
def test_every_plan_builds_and_round_trips_through_json(record: object) -> None:
    @settings(max_examples=5)
    @given(plan=record.plan)  # type: ignore[attr-defined]
    def check(plan: object) -> None:
        assert json.loads(json.dumps(plan)) == plan  # the REPRO line reproduces it
        call = record.build(plan)  # type: ignore[attr-defined]
        if record.batched:  # type: ignore[attr-defined]
            assert batch_size(call) >= 1

    check()
