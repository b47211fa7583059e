"""Meta-tests: each strategy in spec_strategies draws what its name promises."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from spec_strategies import (
    betas_vectors,
    bin_counts,
    binned_samples,
    image_shapes,
    sample_pairs,
    schedules,
    schedules_with_time,
)

import spec


@given(betas_vectors())
def test_betas_vectors_are_valid_betas(betas):
    assert betas.ndim == 1 and betas.size >= 1
    assert np.all((betas >= 0) & (betas < 1))
    spec.VPSchedule(betas)


@given(schedules())
def test_schedules_have_positive_alpha_bars(sched):
    assert np.all(sched.alpha_bar > 0)


@given(schedules_with_time(min_t=1))
def test_schedules_with_time_respect_the_range(sched_t):
    sched, t = sched_t
    assert 1 <= t <= sched.T


@given(sample_pairs(image_shapes()))
def test_sample_pairs_share_an_image_shape(pair):
    x, y = pair
    assert x.shape == y.shape and x.ndim in (3, 4)


@given(bin_counts().flatmap(lambda b: st.tuples(st.just(b), binned_samples((5,), b))))
def test_binned_samples_lie_on_the_grid(bins_x):
    bins, x = bins_x
    k = (x + 1) * (bins - 1) / 2
    assert np.allclose(k, np.round(k), atol=1e-9) and np.all((x >= -1) & (x <= 1))
