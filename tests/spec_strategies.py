"""Hypothesis strategies for the spec's laws: named nouns, one per kind of argument.

Each strategy draws a valid argument of the spec (the meta-tests in test_spec_strategies.py
check that). Models are cheap closed-form functions, so the laws test the diffusion code and
not a network.
"""

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import spec

finite_floats = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False, width=64)


def betas_vectors(min_T: int = 1, max_T: int = 30) -> st.SearchStrategy[np.ndarray]:
    """A float64 vector of betas in [0, 0.999], length T ∈ [min_T, max_T]."""
    return st.integers(min_T, max_T).flatmap(
        lambda T: arrays(np.float64, (T,), elements=st.floats(0.0, 0.999, width=64))
    )


def positive_betas_vectors(min_T: int = 1, max_T: int = 30) -> st.SearchStrategy[np.ndarray]:
    """Betas in [1e-4, 0.5]: every ᾱ_t > 0 and every β̃_t well defined (t ≥ 2)."""
    return st.integers(min_T, max_T).flatmap(
        lambda T: arrays(np.float64, (T,), elements=st.floats(1e-4, 0.5, width=64))
    )


def schedules(
    min_T: int = 1, max_T: int = 30, positive: bool = True
) -> st.SearchStrategy[spec.VPSchedule]:
    """A VPSchedule; with positive=True its betas lie in [1e-4, 0.5]."""
    betas = positive_betas_vectors(min_T, max_T) if positive else betas_vectors(min_T, max_T)
    return betas.map(spec.VPSchedule)


def shapes() -> st.SearchStrategy[tuple[int, ...]]:
    """A small array shape: 1 to 3 axes of 1..4 elements."""
    return st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


def image_shapes() -> st.SearchStrategy[tuple[int, ...]]:
    """An NCHW or CHW image shape with 1..3 channels and 1..5 pixels a side."""
    chw = st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5))
    return st.one_of(chw, st.tuples(st.integers(1, 2)).flatmap(lambda n: chw.map(lambda s: n + s)))


def samples(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """A float64 array of the given shape with values in [-3, 3]."""
    return arrays(np.float64, shape, elements=finite_floats)


def sample_pairs(shape_strategy=None) -> st.SearchStrategy[tuple[np.ndarray, np.ndarray]]:
    """Two arrays of one shape (e.g. x0 and its noise ε)."""
    shape_strategy = shapes() if shape_strategy is None else shape_strategy
    return shape_strategy.flatmap(lambda s: st.tuples(samples(s), samples(s)))


def schedules_with_time(min_t: int = 0, min_T: int = 1, max_T: int = 30):
    """(sched, t) with t ∈ {min_t..T}."""
    return schedules(max(min_T, min_t, 1), max_T).flatmap(
        lambda s: st.tuples(st.just(s), st.integers(min_t, s.T))
    )


@dataclass(frozen=True)
class OracleModel:
    """The oracle ε-model: returns the true noise whatever it is asked."""

    noise: np.ndarray

    def eps(self, x, t_norm):
        return self.noise


@dataclass(frozen=True)
class TanhModel:
    """A smooth nonlinear ε-model: ε(x, t) = tanh(a·x + b·t + c)."""

    a: float
    b: float
    c: float

    def eps(self, x, t_norm):
        return np.tanh(self.a * x + self.b * t_norm + self.c)


def tanh_models() -> st.SearchStrategy[TanhModel]:
    """A TanhModel with coefficients in [-2, 2]."""
    c = st.floats(-2.0, 2.0, width=64)
    return st.builds(TanhModel, c, c, c)


def conv_configs(max_blocks: int = 2) -> st.SearchStrategy[spec.EpsConvNetConfig]:
    """A small EpsConvNetConfig (1..2 data channels, 1..4 hidden, 0..max_blocks blocks)."""
    return st.builds(
        spec.EpsConvNetConfig, st.integers(1, 2), st.integers(1, 4), st.integers(0, max_blocks)
    )


def seeds() -> st.SearchStrategy[int]:
    """A seed for np.random.default_rng."""
    return st.integers(0, 2**32 - 1)


def bin_counts() -> st.SearchStrategy[int]:
    """A number of data bins: 2..256 (17 for the digits, 256 for 8-bit images)."""
    return st.sampled_from([2, 3, 17, 256]) | st.integers(2, 300)


def binned_samples(shape: tuple[int, ...], bins: int) -> st.SearchStrategy[np.ndarray]:
    """An array on the data grid 2k/(bins − 1) − 1."""
    k = arrays(np.int64, shape, elements=st.integers(0, bins - 1))
    return k.map(lambda k: 2 * k / (bins - 1) - 1.0)
