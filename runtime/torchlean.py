"""The dynamical-system adapters of TorchLean's design that no sampler uses: the twins of
`spec.torchlean` (see it for TorchLean's names, its step index k and the errata of its spec).

Shapes: x (B, C, H, W); t an int or a (B,) LongTensor (DDIM), a float or tensor (PF ODE).
"""

from __future__ import annotations

from torch import Tensor

from runtime.core import EpsModel
from runtime.ddim import ddim_step
from runtime.dynamics import DynamicalSystem
from runtime.pf_ode import Time, VPContinuousSchedule, euler_step, pf_ode_rhs
from runtime.schedule import Schedule, TimeIndex, check_step_time


def ddim_step_system(sched: Schedule, model: EpsModel, t: TimeIndex) -> DynamicalSystem:
    """x ↦ ddim_step(sched, model, t, x) as a DynamicalSystem, t ∈ {1..T}."""
    check_step_time(t, sched.T)
    return DynamicalSystem(lambda x: ddim_step(sched, model, t, x))


def pf_ode_euler_system(
    sch: VPContinuousSchedule, model: EpsModel, t: Time, dt: Time
) -> DynamicalSystem:
    """x ↦ euler_step(pf_ode_rhs, x, t, dt) as a DynamicalSystem."""

    def rhs(y: Tensor, s: Time) -> Tensor:
        return pf_ode_rhs(sch, model, y, s)

    return DynamicalSystem(lambda x: euler_step(rhs, x, t, dt))


__all__ = ["ddim_step_system", "pf_ode_euler_system"]
