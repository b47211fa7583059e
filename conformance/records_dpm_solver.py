"""Records of `spec.dpm_solver`: DPM-Solver++(2M) (Lu et al. 2022)."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

import runtime.dpm_solver
import runtime.schedule
import spec.dpm_solver
import spec.model
import spec.schedule
from conformance import conditioning
from conformance import strategies as S
from conformance.markers import Arr, Batched, Call, PerSample
from conformance.plans import (
    BF16_ILL_CONDITIONED,
    SAMPLER_BF16,
    SAMPLER_F32,
    SAMPLER_SKIP,
    X0_F32,
    X0_FLOAT32,
    X0_MIN_ALPHA_BAR,
    batch_plans,
    images,
    model_of,
    rng_array,
    sched_of,
    small_arrays,
)
from conformance.record import Plan, Records
from conformance.tolerances import Skip

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
    build=_dpm_step_call, conditioning=conditioning.dpm_solver_pp_2m_step,
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


# --- DPM-Solver++(2S) and (3M) --------------------------------------------------------------

def _noisy(name: str, spec_side: bool) -> Any:
    """`name` (a deterministic sampler) given noise: a ValueError on both sides."""
    if spec_side:
        return getattr(spec.dpm_solver, name)(
            spec.schedule.VPSchedule(np.array([0.1, 0.2])),
            spec.model.FunctionEpsModel(lambda y, t: y), np.zeros((1, 4, 4)), [2, 1, 0],
            np.zeros((2, 1, 4, 4)))
    return getattr(runtime.dpm_solver, name)(
        runtime.schedule.Schedule([0.1, 0.2]), lambda y, t: y, torch.zeros(1, 1, 4, 4), [2, 1, 0],
        torch.zeros(2, 1, 1, 4, 4))


def _alpha_bars(p: Plan) -> np.ndarray:
    return np.cumprod(np.concatenate([[1.0], 1.0 - S.betas_of(p["schedule"])]))


def _lams(p: Plan, *times: int) -> np.ndarray:
    return spec.dpm_solver.half_log_snr(_alpha_bars(p)[list(times)])


def _amp_2s(lam: float, lam_mid: float, lam_next: float) -> float:
    """|1/(2r)|, the factor on x̂0(u, s) − x̂0(x, t) in D (0 into ᾱ = 1 or from ᾱ = 0)."""
    if lam_next == np.inf or lam == -np.inf:
        return 0.0
    return abs((lam_next - lam) / (2 * (lam_mid - lam)))


def _amp_3m(lam2: float, lam1: float, lam0: float, lam_n: float) -> float:
    """The largest weight of an x̂0 in the (3M) correction, relative to the DDIM part's
    √ᾱ_n·(1 − e^{−h}) (0 into ᾱ = 1)."""
    if lam_n == np.inf:
        return 0.0
    h = lam_n - lam0
    hE = h + np.expm1(-h)
    c1, c2 = hE, h**2 - 2 * hE
    a01, a12, a02 = 1 / (lam0 - lam1), 1 / (lam1 - lam2), 1 / (lam0 - lam2)
    K = (c1 / a01 + c2) * a02
    w = [(c1 + K) * a01, (c1 + K) * a01 + K * a12, K * a12]
    return float(max(abs(v) for v in w) / -np.expm1(-h))


def _per_sample(p: Plan, key: str) -> list[int]:
    return p[key] if p["time"]["per_sample"] else [p[key]]


@st.composite
def _chain_plans(draw: Any, before: int, after: int) -> Plan:
    """A step plan with `before` earlier grid times (t_prev, t_prev2 …, each above the last) and
    `after` later ones (t_mid, t_next …, each below), per sample or shared: keys t1.. above,
    n1.. below."""
    plan = draw(batch_plans(model=True, max_T=40))
    T = max(plan["schedule"]["T"], before + after + 1)
    plan["schedule"]["T"] = T  # every schedule kind is built from its "T"
    B = plan["B"]
    n = B if plan["time"]["per_sample"] else 1
    chains = []
    for _ in range(n):
        pts = sorted(draw(st.sets(st.integers(0, T), min_size=before + after + 1,
                                  max_size=before + after + 1)), reverse=True)
        if after and pts[-1] != 0 and draw(st.booleans()):
            pts[-1] = 0
        chains.append(pts)
    keys = [f"up{k}" for k in range(before, 0, -1)] + ["t"] + [f"dn{k}" for k in range(1, after + 1)]
    for j, key in enumerate(keys):
        vals = [c[j] for c in chains]
        if key == "t":
            plan["time"] = {"per_sample": plan["time"]["per_sample"],
                            "t": vals if plan["time"]["per_sample"] else vals[0]}
        else:
            plan[key] = vals if plan["time"]["per_sample"] else vals[0]
    return plan


def _lower_skip(amp: Any) -> Skip:
    def ill(p: Plan, dtype: str) -> bool:
        if dtype == "float64":
            return False
        ab = _alpha_bars(p)
        times = _per_sample({**p, "t0": p["time"]["t"]}, "t0")
        if ab[times].min() < X0_MIN_ALPHA_BAR[dtype]:
            return True
        return amp(p) > DPM_C_MAX
    return Skip(ill, DPM_CONDITIONING + "; " + X0_FLOAT32)


def _amp_2s_plan(p: Plan) -> float:
    ts = _per_sample({**p, "t0": p["time"]["t"]}, "t0")
    return max(_amp_2s(*_lams(p, t, m, n)) for t, m, n in
               zip(ts, _per_sample(p, "dn1"), _per_sample(p, "dn2"), strict=True))


record(
    name="dpm_solver_pp_2s_step", plan=_chain_plans(0, 2),
    build=lambda p: Call([sched_of(p), model_of(p), Batched(images(p, 0)),
                          _idx(p, p["time"]["t"]), _idx(p, p["dn1"]), _idx(p, p["dn2"])]),
    skip=_lower_skip(_amp_2s_plan) | BF16_ILL_CONDITIONED,
    tolerances={"float32": X0_F32, "bfloat16": SAMPLER_BF16},
    errors=(("t_mid = t", lambda: spec.dpm_solver.dpm_solver_pp_2s_step(
        spec.schedule.VPSchedule(np.array([0.1, 0.2])),
        spec.model.FunctionEpsModel(lambda y, t: y), np.zeros((1, 2, 2)), 2, 2, 0),
        lambda: runtime.dpm_solver.dpm_solver_pp_2s_step(
            runtime.schedule.Schedule([0.1, 0.2]), lambda y, t: y, torch.zeros(1, 1, 2, 2),
            2, 2, 0)),),
)
record(
    name="dpm_solver_pp_3m_step", plan=_chain_plans(2, 1),
    build=lambda p: Call([sched_of(p), Batched(images(p, 0)), Batched(images(p, 1)),
                          _idx(p, p["time"]["t"]), _idx(p, p["dn1"]), Batched(images(p, 2)),
                          _idx(p, p["up1"]), Batched(images(p, 3)), _idx(p, p["up2"])]),
    conditioning=conditioning.dpm_solver_pp_3m_step,
    errors=(("t_prev2 = t_prev", lambda: spec.dpm_solver.dpm_solver_pp_3m_step(
        spec.schedule.VPSchedule(np.array([0.1, 0.2, 0.3])), np.zeros((1, 2, 2)),
        np.zeros((1, 2, 2)), 1, 0, np.zeros((1, 2, 2)), 2, np.zeros((1, 2, 2)), 2),
        lambda: runtime.dpm_solver.dpm_solver_pp_3m_step(
            runtime.schedule.Schedule([0.1, 0.2, 0.3]), torch.zeros(1, 1, 2, 2),
            torch.zeros(1, 1, 2, 2), 1, 0, torch.zeros(1, 1, 2, 2), 2, torch.zeros(1, 1, 2, 2),
            2)),),
)


def _grid_amp(p: Plan) -> float:
    lam = spec.dpm_solver.half_log_snr(_alpha_bars(p)[p["timesteps"]])
    amps = [_amp_2s(lam[i], lam[i + 1], lam[i + 2]) for i in range(0, len(lam) - 2, 2)]
    amps += [_amp_3m(*lam[i - 2:i + 2]) for i in range(2, len(lam) - 1)]
    return max(amps, default=0.0)


_higher_sample_skip = Skip(
    lambda p, dtype: dtype != "float64" and (_dpm_grid_ill_conditioned(p, dtype)
                                             or _grid_amp(p) > DPM_C_MAX),
    DPM_CONDITIONING) | SAMPLER_SKIP

for _name in ("dpm_solver_pp_2s_sample", "dpm_solver_pp_3m_sample"):
    record(
        name=_name, plan=_dpm_sample_plans(),
        build=lambda p: Call([sched_of(p), model_of(p), Batched(images(p, 0)), p["timesteps"]]),
        skip=_higher_sample_skip, sampler=True, max_examples=8,
        tolerances={"float32": SAMPLER_F32, "bfloat16": SAMPLER_BF16},
        errors=(("noise given to a deterministic sampler", partial(_noisy, _name, True),
                 partial(_noisy, _name, False)),),
    )
