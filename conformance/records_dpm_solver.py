"""Records of `spec.dpm_solver`: DPM-Solver++(2M) (Lu et al. 2022)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

import runtime.dpm_solver
import runtime.schedule
import spec.dpm_solver
import spec.model
import spec.schedule
from conformance import strategies as S
from conformance.markers import Arr, Batched, Call, PerSample
from conformance.plans import (
    BF16_ILL_CONDITIONED,
    SAMPLER_BF16,
    SAMPLER_F32,
    SAMPLER_SKIP,
    batch_plans,
    images,
    model_of,
    rng_array,
    sched_of,
    small_arrays,
)
from conformance.record import Plan, Records
from conformance.tolerances import Skip, Tol

RECORDS = Records()
record = RECORDS.add


def _alpha_bar_array(p: Plan) -> Arr:
    """ᾱ in (0, 1): |tanh| of N(0, 2²), so values near both ends (λ = ±∞ at the ends themselves
    is checked in tests/test_sampler_order.py: inf − inf has no error to compare)."""
    a = np.abs(np.tanh(rng_array(p, 0, p["shape"], 2.0)))
    return Arr(np.clip(a, 1e-6, 0.99))  # 0.99: still below 1 after rounding to bfloat16


record(
    name="half_log_snr", plan=small_arrays, batched=False,
    build=lambda p: Call([_alpha_bar_array(p)]),
    errors=(("alpha_bar > 1", lambda: spec.dpm_solver.half_log_snr(np.array([1.5])),
             lambda: runtime.dpm_solver.half_log_snr(1.5)),),
)

DPM_C_MAX = 50.0
DPM_CONDITIONING = (
    f"float32/bfloat16 steps are checked where c = 1/(2r) ≤ {DPM_C_MAX:g}: D = (1 + c)·x̂0 − "
    "c·x̂0_prev amplifies the dtype's rounding of the two x̂0 by c, and random grids reach "
    "c ~ 1e4 (a long step after a tiny one); such steps are checked in float64"
)


def _dpm_c(p: Plan) -> float:
    """The largest c = (λ_next − λ_t)/(2(λ_t − λ_prev)) of a step plan (0 without history)."""
    if not p["with_prev"]:
        return 0.0
    ab = np.cumprod(np.concatenate([[1.0], 1.0 - S.betas_of(p["schedule"])]))
    ts = p["time"]["t"] if p["time"]["per_sample"] else [p["time"]["t"]]
    nx = p["t_next"] if p["time"]["per_sample"] else [p["t_next"]]
    pv = p["t_prev"] if p["time"]["per_sample"] else [p["t_prev"]]
    worst = 0.0
    for t, n, v in zip(ts, nx, pv, strict=True):
        if ab[n] < 1.0:
            lam = spec.dpm_solver.half_log_snr(ab[[v, t, n]])
            worst = max(worst, float((lam[2] - lam[1]) / (2 * (lam[1] - lam[0]))))
    return worst


_dpm_step_skip = (Skip(lambda p, dtype: dtype != "float64" and _dpm_c(p) > DPM_C_MAX,
                       DPM_CONDITIONING)
                  | BF16_ILL_CONDITIONED)


@st.composite
def _dpm_step_plans(draw: Any) -> Plan:
    plan = draw(batch_plans(model=False, t_low=1))
    T = plan["schedule"]["T"]
    plan["with_prev"] = T >= 2 and draw(st.booleans())
    times = plan["time"]["t"] if plan["time"]["per_sample"] else [plan["time"]["t"]]
    if plan["with_prev"]:
        times = [min(t, T - 1) for t in times]
    nxt = [draw(st.integers(0, t - 1)) for t in times]
    prev = [draw(st.integers(t + 1, T)) for t in times] if plan["with_prev"] else [None] * len(times)
    if plan["time"]["per_sample"]:
        plan["time"]["t"], plan["t_next"], plan["t_prev"] = times, nxt, prev
    else:
        plan["time"]["t"], plan["t_next"], plan["t_prev"] = times[0], nxt[0], prev[0]
    return plan


def _idx(p: Plan, v: Any) -> Any:
    return PerSample(v) if p["time"]["per_sample"] else v


def _dpm_step_call(p: Plan) -> Call:
    prev = Batched(images(p, 2)) if p["with_prev"] else None
    return Call([sched_of(p), Batched(images(p, 0)), Batched(images(p, 1)),
                 _idx(p, p["time"]["t"]), _idx(p, p["t_next"]), prev,
                 _idx(p, p["t_prev"]) if p["with_prev"] else None])


record(
    name="dpm_solver_pp_2m_step", plan=_dpm_step_plans(),
    build=_dpm_step_call, skip=_dpm_step_skip,
    tolerances={"bfloat16": Tol(5e-2, 5e-2, reason="x̂0, x̂0_prev and x_t are bfloat16 and c "
                                "up to 50 multiplies the rounding of x̂0 − x̂0_prev")},
    errors=(("x0_hat_prev without t_prev", lambda: spec.dpm_solver.dpm_solver_pp_2m_step(
        spec.schedule.VPSchedule(np.array([0.1, 0.2])), np.zeros((1, 2, 2)), np.zeros((1, 2, 2)),
        2, 1, np.zeros((1, 2, 2))),
        lambda: runtime.dpm_solver.dpm_solver_pp_2m_step(
            runtime.schedule.Schedule([0.1, 0.2]), torch.zeros(1, 1, 2, 2),
            torch.zeros(1, 1, 2, 2), 2, 1, torch.zeros(1, 1, 2, 2))),),
)


@st.composite
def _dpm_sample_plans(draw: Any) -> Plan:
    plan = draw(batch_plans(max_T=30, model=True))
    plan["timesteps"] = draw(S.timestep_grids(plan["schedule"]["T"]))
    return plan


def _dpm_grid_ill_conditioned(p: Plan, dtype: str) -> bool:
    if dtype != "float64":
        ab = np.cumprod(np.concatenate([[1.0], 1.0 - S.betas_of(p["schedule"])]))
        lam = spec.dpm_solver.half_log_snr(ab[p["timesteps"]])
        for i in range(1, len(lam) - 2):
            if (lam[i + 1] - lam[i]) / (2 * (lam[i] - lam[i - 1])) > DPM_C_MAX:
                return True
    return False


_dpm_sample_skip = Skip(_dpm_grid_ill_conditioned, DPM_CONDITIONING) | SAMPLER_SKIP


def _bad_dpm_grid(spec_side: bool) -> Any:
    if spec_side:
        return spec.dpm_solver.dpm_solver_pp_2m_sample(
            spec.schedule.VPSchedule(np.array([0.1, 0.2])),
            spec.model.FunctionEpsModel(lambda y, t: y), np.zeros((1, 4, 4)), [2, 1])
    return runtime.dpm_solver.dpm_solver_pp_2m_sample(
        runtime.schedule.Schedule([0.1, 0.2]), lambda y, t: y, torch.zeros(1, 1, 4, 4), [2, 1])


record(
    name="dpm_solver_pp_2m_sample", plan=_dpm_sample_plans(),
    build=lambda p: Call([sched_of(p), model_of(p), Batched(images(p, 0)), p["timesteps"]]),
    skip=_dpm_sample_skip, sampler=True, max_examples=8,
    tolerances={"float32": SAMPLER_F32, "bfloat16": SAMPLER_BF16},
    errors=(("a grid that does not end at 0", lambda: _bad_dpm_grid(True),
             lambda: _bad_dpm_grid(False)),),
)
