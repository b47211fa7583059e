"""Discrete dynamical systems: the twins of `spec.dynamics` (identical behaviour on tensors).

A sampler step is a map x ↦ step(x); a step that also reads an input (noise) is a driven system
x ↦ step(x, u). These wrappers let the spec's laws about iteration be stated once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class DynamicalSystem:
    """x ↦ step(x)."""

    step: Callable[[Any], Any]

    def __call__(self, x: Any) -> Any:
        return self.step(x)


@dataclass(frozen=True)
class DrivenSystem:
    """(x, u) ↦ step(x, u); `.freeze(u)` fixes the input and gives a DynamicalSystem."""

    step: Callable[[Any, Any], Any]

    def __call__(self, x: Any, u: Any) -> Any:
        return self.step(x, u)

    def freeze(self, u: Any) -> DynamicalSystem:
        """x ↦ step(x, u) for this fixed u."""
        step = self.step
        return DynamicalSystem(lambda x: step(x, u))


def iterate(sys: DynamicalSystem, n: int, x: Any) -> Any:
    """step applied n times to x (n = 0 gives x)."""
    for _ in range(n):
        x = sys.step(x)
    return x


def trajectory(sys: DynamicalSystem, x0: Any, n: int) -> list[Any]:
    """[x0, step(x0), …, stepⁿ(x0)]: n + 1 states."""
    states = [x0]
    for _ in range(n):
        states.append(sys.step(states[-1]))
    return states


def iterate_with_input(sys: DrivenSystem, inputs: Sequence[Any], n: int, x: Any) -> Any:
    """x_{i+1} = step(x_i, inputs[i]) for i = 0..n−1 (inputs used in order)."""
    if n > len(inputs):
        raise ValueError(f"n = {n} steps need n inputs, got {len(inputs)}")
    for i in range(n):
        x = sys.step(x, inputs[i])
    return x


def driven_trajectory(sys: DrivenSystem, inputs: Sequence[Any], x0: Any, n: int) -> list[Any]:
    """[x0, x1, …, xn] with x_{i+1} = step(x_i, inputs[i]): n + 1 states."""
    if n > len(inputs):
        raise ValueError(f"n = {n} steps need n inputs, got {len(inputs)}")
    states = [x0]
    for i in range(n):
        states.append(sys.step(states[-1], inputs[i]))
    return states


def is_fixed_point(sys: DynamicalSystem, x: Tensor, atol: float = 0.0) -> bool:
    """max |step(x) − x| ≤ atol (exact equality for atol = 0). Synchronises (returns a bool)."""
    y = sys.step(x)
    return bool(torch.all(torch.abs(torch.as_tensor(y) - torch.as_tensor(x)) <= atol))


__all__ = [
    "DrivenSystem",
    "DynamicalSystem",
    "driven_trajectory",
    "is_fixed_point",
    "iterate",
    "iterate_with_input",
    "trajectory",
]
