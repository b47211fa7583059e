"""A fixed case the random draws reach only sometimes: the probability-flow ODE at small t in
float32. There 1 − ᾱ(t) ≈ β_min·t cancels, so coefficients computed from a float32 t lose
~6e-8/(β_min·t) of their precision (6e-3 at t = 1e-4); the runtime computes them in float64 from
the same t and rounds once, so its result is the float64 one up to float32 rounding."""

from __future__ import annotations

import numpy as np
import torch

import runtime.pf_ode
import spec.model
import spec.pf_ode


def test_float32_rhs_at_small_t_keeps_float64_coefficients():
    t32 = torch.tensor([1e-4, 3e-4, 2e-3], dtype=torch.float32)
    x32 = torch.linspace(-1.0, 1.0, 3 * 1 * 2 * 2, dtype=torch.float32).reshape(3, 1, 2, 2)

    def eps(x, t_norm):  # a smooth ε-model, the same function on both sides
        return 0.5 * x + 0.1 * t_norm

    def eps_batched(x, t_norm):  # the runtime's model gets per-sample t: shape (B,)
        return eps(x, t_norm.reshape(-1, 1, 1, 1))

    got = runtime.pf_ode.pf_ode_rhs(runtime.pf_ode.VPLinearSchedule(), eps_batched, x32, t32)
    assert got.dtype == torch.float32
    sch, model = spec.pf_ode.VPLinearSchedule(), spec.model.FunctionEpsModel(eps)
    for i in range(3):
        want = spec.pf_ode.pf_ode_rhs(sch, model, x32[i].double().numpy(), float(t32[i]))
        # float32 rounding of the float64 result (and of ½·β/√(1 − ᾱ)·ε̂, up to ~70·|ε̂|)
        np.testing.assert_allclose(got[i].double().numpy(), want, rtol=1e-5, atol=1e-5)
