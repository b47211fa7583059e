"""Totality helpers and the ε-model protocol: the twins of `spec.core`.

`EPS`, `sqrt_nonneg` and `safe_div` are used at exactly the places the spec uses them (see the
spec's docstrings), so that a float64 runtime agrees with the float64 spec to ~1e-12.
Every function works elementwise on tensors of any shape, dtype and device, and on Python floats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

EPS = 1e-12
"""The constant of `safe_div`: x / (y + EPS). Same value as `spec.core.EPS`."""


def sqrt_nonneg(x: Tensor | float) -> Tensor | float:
    """sqrt(max(x, 0)): a square root that is total on rounding noise below zero.
    A tensor gives a tensor; a Python number gives a float."""
    if not isinstance(x, Tensor):
        return math.sqrt(max(float(x), 0.0))
    return torch.sqrt(torch.clamp(x, min=0.0))


def safe_div(x: Tensor | float, y: Tensor | float) -> Tensor | float:
    """x / (y + EPS): a division that is total at y = 0 (for y ≥ 0)."""
    return x / (y + EPS)


def mse(a: Tensor, b: Tensor) -> Tensor:
    """mean((a − b)²) over every element (batch included). Shapes: a, b (...) -> ()."""
    return torch.mean(torch.square(a - b))


class EpsModel(Protocol):
    """An ε-model: `model(x, t_norm)` returns ε̂ with x's shape.

    Shapes: x (B, C, H, W), t_norm a float, a 0-d tensor or a (B,) float tensor (t/T, or the
    continuous time of the PF ODE) -> (B, C, H, W). Every `torch.nn.Module` of `runtime.model`
    satisfies it, and also has `.eps(x, t_norm)` (the spec's spelling).
    """

    def __call__(self, x: Tensor, t_norm: Tensor | float) -> Tensor: ...


def decreasing_grid(
    name: str,
    values: Sequence[float] | Tensor,
    low: float = 0,
    high: float = math.inf,
    end: float | None = None,
    integers: bool = False,
) -> list:
    """A sampler's grid as a list of ints (`integers`) or floats, after checking it holds at least
    2 strictly decreasing values, each >= low, values[0] <= high and values[-1] == end (when end
    is given); else ValueError with the spec's messages (`spec.core.decreasing_grid`).
    Shapes: values (n + 1,)."""
    grid = values.tolist() if isinstance(values, Tensor) else list(values)
    if len(grid) < 2:
        raise ValueError(f"{name} must hold at least 2 values (a start and an end), got {grid}")
    if integers:
        for i, v in enumerate(grid):
            if isinstance(v, bool) or not hasattr(type(v), "__index__"):  # int, NumPy int
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
            raise ValueError(f"{name} must be strictly decreasing, got "
                             f"{name}[{i}] = {grid[i]!r} <= {name}[{i + 1}] = {grid[i + 1]!r}")
    return grid


def check_deterministic(noise: object) -> None:
    """ValueError unless noise is None: a deterministic sampler draws no noise."""
    if noise is not None:
        shape = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
        raise ValueError(f"noise must be None: the sampler is deterministic, got noise of {shape}")


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the step arithmetic runs in: float32 for 16-bit inputs, else the input's dtype.

    Sampler states are kept in the caller's dtype; only the few elementwise operations of a step
    are done in at least float32 (16-bit rounding there would swamp the model's own error).
    """
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


def coef_dtype(device: torch.device) -> torch.dtype:
    """The dtype schedule coefficients are computed in: float64 wherever the device has it."""
    return torch.float32 if device.type == "mps" else torch.float64


__all__ = [
    "EPS",
    "EpsModel",
    "check_deterministic",
    "coef_dtype",
    "decreasing_grid",
    "mse",
    "safe_div",
    "sqrt_nonneg",
    "work_dtype",
]
