"""Discrete-time dynamical systems: the shape of every sampler (TorchLean's `DynamicalSystem`).

A sampler is a composition of steps. Writing each step as a `DynamicalSystem` (x ↦ step(x)) or
a `DrivenSystem` ((x, u) ↦ step(x, u), e.g. u = the step's noise) lets the laws
iterate(m + n) = iterate(m) ∘ iterate(n), "a fixed point stays fixed" and
"freeze(u) = the driven system fed the constant input u" be stated and tested once.
States are arrays (the spec's samples); `iterate(sys, 0, x)` is x itself.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from jaxtyping import Float

from spec.core import Index, Scalar, check, in_range

__all__ = [
    "DynamicalSystem",
    "DrivenSystem",
    "iterate",
    "trajectory",
    "iterate_with_input",
    "driven_trajectory",
    "is_fixed_point",
]


@dataclass(frozen=True)
class DynamicalSystem:
    """An autonomous discrete system x_{n+1} = step(x_n).

    Shapes: step: state (*shape) -> state (*shape).
    """

    step: Callable[[Any], Any]


@dataclass(frozen=True)
class DrivenSystem:
    """A system driven by an input sequence: x_{n+1} = step(x_n, u_n).

    Shapes: step: (state (*shape), input) -> state (*shape).
    """

    step: Callable[[Any, Any], Any]

    def freeze(self, u: Any) -> DynamicalSystem:
        """The autonomous system with the input held at u: x ↦ step(x, u).

        Shapes: u any input -> DynamicalSystem.
        """
        return DynamicalSystem(lambda x: self.step(x, u))


def iterate(
    sys: DynamicalSystem, n: Index, x: Float[np.ndarray, "*shape"]
) -> Float[np.ndarray, "*shape"]:
    """Apply the step n times: iterate(sys, n, x) = step^n(x), n ≥ 0.

    Law: iterate(m + n, x) = iterate(m, iterate(n, x)).
    Shapes: x (*shape) -> (*shape).
    """
    n = check(in_range("n", n, 0, 2**62))
    for _ in range(n):
        x = sys.step(x)
    return x


def trajectory(
    sys: DynamicalSystem, x0: Float[np.ndarray, "*shape"], n: Index
) -> list[Float[np.ndarray, "*shape"]]:
    """The states x_0, x_1 = step(x_0), …, x_n: a list of n + 1 states, n ≥ 0.

    Shapes: x0 (*shape) -> list of n + 1 arrays (*shape).
    """
    n = check(in_range("n", n, 0, 2**62))
    states = [x0]
    for _ in range(n):
        states.append(sys.step(states[-1]))
    return states


def iterate_with_input(
    sys: DrivenSystem, inputs: Sequence[Any] | np.ndarray, n: Index, x: Float[np.ndarray, "*shape"]
) -> Float[np.ndarray, "*shape"]:
    """Run the driven system n steps: x ← step(x, inputs[i]) for i = 0..n−1, in order.

    Requires len(inputs) ≥ n.
    Shapes: x (*shape), inputs a sequence (e.g. an array (≥n, …)) -> (*shape).
    """
    n = check(in_range("n", n, 0, len(inputs)))
    for i in range(n):
        x = sys.step(x, inputs[i])
    return x


def driven_trajectory(
    sys: DrivenSystem, inputs: Sequence[Any] | np.ndarray, x0: Float[np.ndarray, "*shape"], n: Index
) -> list[Float[np.ndarray, "*shape"]]:
    """The states x_0, …, x_n of the driven system, x_{i+1} = step(x_i, inputs[i]).

    Requires len(inputs) ≥ n.
    Shapes: x0 (*shape) -> list of n + 1 arrays (*shape).
    """
    n = check(in_range("n", n, 0, len(inputs)))
    states = [x0]
    for i in range(n):
        states.append(sys.step(states[-1], inputs[i]))
    return states


def is_fixed_point(
    sys: DynamicalSystem, x: Float[np.ndarray, "*shape"], atol: Scalar = 0.0
) -> bool:
    """Whether step(x) = x up to atol: max_i |step(x)_i − x_i| ≤ atol (atol = 0: exactly).

    A NaN anywhere means "not a fixed point".
    Shapes: x (*shape) -> bool.
    """
    return bool(np.all(np.abs(sys.step(x) - x) <= atol))
