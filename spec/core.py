"""Totality helpers, the mean squared error, and the ε-model interface.

The spec is total: no formula divides by zero or takes the square root of a negative number.
Two helpers make that so, and they are used exactly where the formulas of the other modules
say (see the list in `spec/__init__.py`), nowhere else:

    sqrt_nonneg(x) = sqrt(max(x, 0))
    safe_div(x, y) = x / (y + EPS),   EPS = 1e-12

EPS is there for the exact zeros (1 − ᾱ_0 = 0, √(1 − ᾱ(0)) = 0). Elsewhere it changes x / y by a relative
EPS / y: ≤ 1e-12 for denominators of order 1, and at most 2.4e-8 on the default schedules
(1 − ᾱ_1 = 4.1e-5 and √ᾱ_T = 4.9e-5 of the cosine schedule, T = 1000). Divisions whose
denominators go lower (zero terminal SNR's ᾱ'_{t−1}, σ_η's ᾱ_prev, down to 4.2e-9) do not use
it: they divide exactly and handle their zero case explicitly. See spec/__init__.py.

This module also holds the small shared vocabulary of types used in annotations:
`Scalar` (a Python or NumPy real number, or a 0-d array) and `Index` (a Python or NumPy int),
and the entry check of every spec function: `check(...)`, one call made of rules
(`in_range`, `same_shape`, `holds`, `decreasing_grid`), so that the math stands on its own lines
after it. A rule is a lambda or a `functools.partial` of a module-level function, never a nested
`def`: the test suite's shape checker wraps every `def` it finds, and a nested one would be
wrapped anew (a code generation) on every call of the function that defines it.
"""

import functools
import math
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from jaxtyping import Float, Real

__all__ = ["EPS", "sqrt_nonneg", "safe_div", "mse", "EpsModel"]

EPS: float = 1e-12
"""The one totality constant: `safe_div(x, y) = x / (y + EPS)`."""

Scalar = int | float | np.integer | np.floating | Real[np.ndarray, ""]
"""A real number: Python int/float, NumPy scalar or 0-d array."""

Index = int | np.integer
"""An integer index: a time t, a count of steps, a size."""

ArrayOrScalar = Float[np.ndarray, "*shape"] | Scalar


def sqrt_nonneg(x: ArrayOrScalar) -> ArrayOrScalar:
    """Square root clamped at zero.

    Formula: sqrt_nonneg(x) = sqrt(max(x, 0)).
    Used for every square root of a variance-like quantity (ᾱ, 1 − ᾱ, α, β̃, σ²), which can
    round to a tiny negative number.
    Shapes: x (*shape) or scalar -> same.
    """
    return np.sqrt(np.maximum(x, 0))


def safe_div(x: ArrayOrScalar, y: ArrayOrScalar) -> ArrayOrScalar:
    """Division with the denominator shifted by EPS.

    Formula: safe_div(x, y) = x / (y + EPS), EPS = 1e-12. Every denominator it guards is
    non-negative (√ᾱ, √(1 − ᾱ), 1 − ᾱ, √α, √(1 − ᾱ(t))), so y + EPS > 0.
    Shapes: x, y broadcastable (or scalars) -> broadcast shape.
    """
    return x / (y + EPS)


def mse(a: Float[np.ndarray, "*shape"], b: Float[np.ndarray, "..."]) -> Scalar:
    """Mean squared error.

    Formula: mse(a, b) = (1/n) Σ_i (a_i − b_i)², the mean over all n elements.
    Shapes: a (*shape), b (*shape) -> scalar. Different shapes are a ValueError (no broadcasting).
    """
    if a.shape != b.shape:
        raise ValueError(f"mse: a and b must have the same shape, got a {a.shape} and b {b.shape}")
    return np.mean((a - b) ** 2)


@runtime_checkable
class EpsModel(Protocol):
    """A noise predictor ε_θ(x, t_norm) (DDPM Eq. 11–14).

    `eps(x, t_norm)` returns an array of x's shape: the predicted noise of x = x_t, where
    t_norm = time_of_index(t, T) = t / T ∈ [0, 1] (or the continuous t of the PF ODE).
    Shapes: x (*shape), t_norm scalar -> (*shape).
    """

    def eps(self, x: Float[np.ndarray, "*shape"], t_norm: Scalar) -> Float[np.ndarray, "*shape"]:
        """Predicted noise ε̂ for x at normalized time t_norm. Shapes: (*shape) -> (*shape)."""
        ...


def check_index(name: str, value: Index, low: int, high: int) -> int:
    """Return `value` as an int after checking it is an integer in {low..high} (else ValueError).

    Shapes: scalars only.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer in {{{low}..{high}}}, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {{{low}..{high}}}, got {name} = {int(value)}")
    return int(value)


def check_same_shape(name: str, value: np.ndarray, other_name: str, shape: tuple) -> None:
    """Raise a ValueError unless value.shape == shape (the shape of `other_name`).

    Shapes: any.
    """
    if value.shape != tuple(shape):
        raise ValueError(
            f"{name} must have shape {tuple(shape)} (the shape of {other_name}), got {value.shape}"
        )


Rule = Callable[[], "int | list | None"]
"""One entry check: raises ValueError, or returns the checked index (an int), the checked grid
(a list) or None."""


def in_range(name: str, value: Index | None, low: int, high: int) -> Rule:
    """Rule: `value` is an integer in {low..high}; `check` returns it as an int. An optional
    argument left at None is not checked (and not returned). Shapes: scalars."""
    return lambda: None if value is None else check_index(name, value, low, high)


def same_shape(name: str, value: np.ndarray | None, other_name: str, shape: tuple) -> Rule:
    """Rule: value.shape == shape (skipped when value is None). Shapes: any."""
    return lambda: None if value is None else check_same_shape(name, value, other_name, shape)


def holds(condition: object, message: str) -> Rule:
    """Rule: `condition` is true, else ValueError(message). A callable condition is called only
    when the rule runs (after the rules before it passed). Shapes: scalars."""
    return functools.partial(_holds, condition, message)


def _holds(condition: object, message: str) -> None:
    if not (condition() if callable(condition) else condition):
        raise ValueError(message)


def decreasing_grid(
    name: str,
    values: "Sequence[Scalar] | np.ndarray",
    low: Scalar = 0,
    high: Scalar = math.inf,
    end: Scalar | None = None,
    integers: bool = False,
) -> Rule:
    """Rule: `values` is a sampler's grid, at least 2 strictly decreasing values, each >= low,
    values[0] <= high, values[-1] == end (when end is given), integers when `integers`;
    `check` returns it as a list of ints (integers) or floats. The one grid check of every
    sampler (times, σ's, continuous t's). Shapes: values (n + 1,).
    """
    return functools.partial(_decreasing_grid, name, values, low, high, end, integers)


def _decreasing_grid(name: str, values: "Sequence[Scalar] | np.ndarray", low: Scalar,
                     high: Scalar, end: Scalar | None, integers: bool) -> list:
    grid = list(values)
    if len(grid) < 2:
        raise ValueError(f"{name} must hold at least 2 values (a start and an end), got {grid}")
    if integers:
        for i, v in enumerate(grid):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"{name} must be integers, got {name}[{i}] = {v!r}")
    grid = [int(v) for v in grid] if integers else [float(v) for v in grid]
    if not grid[0] <= high:
        span = f"{{{int(low) + 1}..{high}}}" if integers else f"({low}, {high}]"
        raise ValueError(f"{name}[0] must be in {span}, got {name}[0] = {grid[0]!r}")
    if end is not None and grid[-1] != end:
        raise ValueError(f"{name} must end at {end}, got {name}[-1] = {grid[-1]!r}")
    if not grid[-1] >= low:
        raise ValueError(f"{name} must be >= {low}, got {name}[-1] = {grid[-1]!r}")
    for i in range(len(grid) - 1):
        if not grid[i] > grid[i + 1]:
            raise ValueError(
                f"{name} must be strictly decreasing, got "
                f"{name}[{i}] = {grid[i]!r} <= {name}[{i + 1}] = {grid[i + 1]!r}"
            )
    return grid


def deterministic(noise: object) -> Rule:
    """Rule: a deterministic sampler was given no noise (noise is None). Shapes: any."""
    return holds(noise is None, "noise must be None: the sampler is deterministic, got noise of "
                 f"shape {np.shape(noise)}")


def check(*rules: Rule) -> "int | list | tuple | None":
    """The entry check of a spec function, in one call: run the rules in order (the first that
    fails raises its ValueError) and return what `in_range` and `decreasing_grid` checked (an
    int, a grid as a list): None, one value, or a tuple in the order given. Shapes: scalars and
    grids.
    """
    out = tuple(v for v in (rule() for rule in rules) if v is not None)
    return None if not out else out[0] if len(out) == 1 else out
