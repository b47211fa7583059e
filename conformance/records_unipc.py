"""Records of `spec.unipc`: UniPC (Zhao et al. 2023), data prediction, on the table-time grid."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

import runtime.schedule
import runtime.unipc
import spec.model
import spec.schedule
import spec.unipc
from conformance import conditioning
from conformance import strategies as S
from conformance.markers import Batched, Call
from conformance.plans import (
    SAMPLER_BF16,
    SAMPLER_F32,
    SAMPLER_SKIP,
    batch_plans,
    images,
    model_of,
    sched_of,
)
from conformance.record import Plan, Records
from conformance.records_dpm_solver import DPM_C_MAX, DPM_CONDITIONING, _dpm_sample_plans
from conformance.tolerances import Skip

RECORDS = Records()
record = RECORDS.add

record(name="UNIPC_VARIANTS", exempt="a constant: the names of B(h), the same tuple on both sides")


@st.composite
def _unipc_step_plans(draw: Any) -> Plan:
    """A schedule, p ∈ {1, 2, 3} history times (oldest first) above t_next, a variant."""
    plan = draw(batch_plans(model=False, max_T=40))
    p = draw(st.integers(1, 3))
    T = max(plan["schedule"]["T"], p + 1)
    plan["schedule"]["T"] = T  # every schedule kind is built from its "T"
    pts = sorted(draw(st.sets(st.integers(0, T), min_size=p + 1, max_size=p + 1)), reverse=True)
    if pts[-1] != 0 and draw(st.booleans()):
        pts[-1] = 0
    plan["times"], plan["t_next"] = pts[:-1], pts[-1]
    plan["variant"] = draw(st.sampled_from(spec.unipc.UNIPC_VARIANTS))
    return plan


def _alpha_bars(p: Plan) -> np.ndarray:
    return np.cumprod(np.concatenate([[1.0], 1.0 - S.betas_of(p["schedule"])]))


def _amplification(p: Plan, corrector: bool) -> float:
    """The largest factor on an x̂0 in the correction relative to the DDIM part: max_k
    |B(h)·ρ_k/r_k|/(1 − e^{−h}) (0 where the step is first order)."""
    ab = _alpha_bars(p)
    ts, n = p["times"], p["t_next"]
    if ab[n] == 1 or ab[ts[-1]] == 0 or (len(ts) == 1 and not corrector):
        return 0.0
    sched = spec.schedule.VPSchedule(S.betas_of(p["schedule"]))
    B, r, b = spec.unipc._coefficients(sched, ts, n, p["variant"])
    if corrector:
        r = [*r, 1.0]
    else:
        b = b[:-1]
    rho = [0.5] if len(r) == 1 else np.linalg.solve(np.vander(r, increasing=True).T, b)
    h = spec.dpm_solver.half_log_snr(ab[n]) - spec.dpm_solver.half_log_snr(ab[ts[-1]])
    return float(max(abs(B * rho[k] / r[k]) for k in range(len(r))) / -np.expm1(-h))


def _history(p: Plan) -> Batched:
    return Batched(images(p, 1, (len(p["times"]),)), axis=1)


def _bad_times(step: str, spec_side: bool) -> Any:
    """Times not strictly decreasing: a ValueError on both sides."""
    if spec_side:
        sched, x = spec.schedule.VPSchedule(np.array([0.1, 0.2, 0.3])), np.zeros((1, 2, 2))
        extra = [x] if step == "unic_step" else []
        return getattr(spec.unipc, step)(sched, x, [x, x], [2, 2], 1, *extra)
    sched, x = runtime.schedule.Schedule([0.1, 0.2, 0.3]), torch.zeros(1, 1, 2, 2)
    extra = [x] if step == "unic_step" else []
    return getattr(runtime.unipc, step)(sched, x, [x, x], [2, 2], 1, *extra)


record(
    name="unip_step", plan=_unipc_step_plans(),
    build=lambda p: Call([sched_of(p), Batched(images(p, 0)), _history(p), p["times"],
                          p["t_next"], p["variant"]]),
    conditioning=conditioning.unip_step,
    errors=(("times not decreasing", partial(_bad_times, "unip_step", True),
             partial(_bad_times, "unip_step", False)),),
)
record(
    name="unic_step", plan=_unipc_step_plans(),
    build=lambda p: Call([sched_of(p), Batched(images(p, 0)), _history(p), p["times"],
                          p["t_next"], Batched(images(p, 2)), p["variant"]]),
    conditioning=conditioning.unic_step,
    errors=(("times not decreasing", partial(_bad_times, "unic_step", True),
             partial(_bad_times, "unic_step", False)),),
)


@st.composite
def _unipc_sample_plans(draw: Any) -> Plan:
    plan = draw(_dpm_sample_plans())
    plan["order"] = draw(st.integers(1, 3))
    plan["variant"] = draw(st.sampled_from(spec.unipc.UNIPC_VARIANTS))
    plan["corrector"] = draw(st.booleans())
    return plan


def _grid_ill_conditioned(p: Plan, dtype: str) -> bool:
    if dtype == "float64":
        return False
    g, M = p["timesteps"], len(p["timesteps"]) - 1
    for i in range(1, M + 1):
        q = min(p["order"], i, M + 1 - i)
        step = {**p, "times": g[i - q:i], "t_next": g[i]}
        if _amplification(step, p["corrector"] and i < M) > DPM_C_MAX:
            return True
    return False


def _noisy(spec_side: bool) -> Any:
    if spec_side:
        return spec.unipc.unipc_sample(
            spec.schedule.VPSchedule(np.array([0.1, 0.2])),
            spec.model.FunctionEpsModel(lambda y, t: y), np.zeros((1, 4, 4)), [2, 1, 0],
            np.zeros((2, 1, 4, 4)))
    return runtime.unipc.unipc_sample(runtime.schedule.Schedule([0.1, 0.2]), lambda y, t: y,
                                      torch.zeros(1, 1, 4, 4), [2, 1, 0], torch.zeros(2, 1, 1, 4, 4))


record(
    name="unipc_sample", plan=_unipc_sample_plans(),
    build=lambda p: Call([sched_of(p), model_of(p), Batched(images(p, 0)), p["timesteps"]],
                         {"order": p["order"], "variant": p["variant"],
                          "corrector": p["corrector"]}),
    skip=Skip(_grid_ill_conditioned, DPM_CONDITIONING) | SAMPLER_SKIP, sampler=True,
    max_examples=8, tolerances={"float32": SAMPLER_F32, "bfloat16": SAMPLER_BF16},
    errors=(("noise given to a deterministic sampler", partial(_noisy, True),
             partial(_noisy, False)),),
)
