"""Registry records of the higher-order samplers: the cosine PF-ODE schedule (`spec.pf_ode`),
Euler and Heun in EDM form (`spec.edm`) and DPM-Solver++(2M) (`spec.dpm_solver`).

Imported by `conformance.registry` (one line), which it extends through `record(...)`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

import runtime.dpm_solver
import runtime.edm
import runtime.pf_ode
import runtime.schedule
import spec.dpm_solver
import spec.edm
import spec.model
import spec.pf_ode
import spec.schedule
from conformance import strategies as S
from conformance.harness import Arr, Batched, Call, Fn, PerSample, PFSched, Times
from conformance.registry import (
    BF16_CONDITIONING,
    MODEL_BF16,
    SAMPLER_BF16,
    SAMPLER_F32,
    X0_F32,
    Plan,
    _bf16_ill_conditioned,
    _images,
    _model,
    _rng_array,
    _sampler_skip,
    _sched,
    batch_plans,
    record,
    small_arrays,
)
from conformance.tolerances import Tol

# ---------------------------------------------------------------------------------------------
# Continuous schedules (both kinds) and their Gaussian denoiser

cosine_s = st.floats(0.001, 0.02)
continuous_schedules = st.one_of(
    S.pf_schedules.map(lambda d: {"kind": "linear", **d}),
    cosine_s.map(lambda s: {"kind": "cosine", "s": s}),
)
"""A continuous VP schedule: linear (β0, β1) or cosine (s)."""


def _cont_sched(p: Plan) -> Any:
    c = p["cont"]
    if c["kind"] == "linear":
        return PFSched(c["beta0"], c["beta1"])
    return Fn(spec.pf_ode.VPCosineSchedule(c["s"]), runtime.pf_ode.VPCosineSchedule(c["s"]),
              f"VPCosine({c['s']:g})")


def _cont_model(p: Plan) -> Any:
    c = p["cont"]
    kind = ("continuous", c["beta0"], c["beta1"]) if c["kind"] == "linear" else ("cosine", c["s"])
    return _model(p, kind)


# --- spec.pf_ode: VPCosineSchedule -----------------------------------------------------------


@st.composite
def _cosine_plans(draw: Any) -> Plan:
    B = draw(S.batch_sizes)
    return {"s": draw(cosine_s),
            "t": draw(st.lists(S.continuous_times, min_size=B, max_size=B)),
            "sigma": draw(st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 1e3)), min_size=B,
                                   max_size=B))}


record(
    name="VPCosineSchedule", module="pf_ode", plan=_cosine_plans(),
    build=lambda p: Call([Fn(spec.pf_ode.VPCosineSchedule(p["s"]),
                             runtime.pf_ode.VPCosineSchedule(p["s"]), f"VPCosine({p['s']:g})"),
                          Times(p["t"]), Times(p["sigma"])]),
    spec_fn=lambda s, t, sig: (s.beta(t), s.alpha_bar(t), s.sqrt_one_minus_alpha_bar(t),
                               s.time_of_edm_sigma(sig)),
    runtime_fn=lambda s, t, sig: (s.beta(t), s.alpha_bar(t), s.sqrt_one_minus_alpha_bar(t),
                                  s.time_of_edm_sigma(sig)),
)

# --- spec.edm --------------------------------------------------------------------------------


@st.composite
def _vp_edm_plans(draw: Any) -> Plan:
    B = draw(S.batch_sizes)
    return {"B": B, "shape": draw(S.image_shapes), "seed": draw(S.seeds),
            "ab": draw(st.lists(st.one_of(st.just(1.0), st.floats(1e-4, 1.0)), min_size=B,
                                max_size=B)),
            "sigma": draw(st.lists(st.one_of(st.just(0.0), st.floats(0.0, 100.0)), min_size=B,
                                   max_size=B))}


record(
    name="vp_to_edm", module="edm", plan=_vp_edm_plans(),
    build=lambda p: Call([Times(p["ab"]), Batched(_images(p, 0))]),
    errors=(("alpha_bar = 0", lambda: spec.edm.vp_to_edm(0.0, np.zeros((1, 2, 2))),
             lambda: runtime.edm.vp_to_edm(0.0, torch.zeros(1, 1, 2, 2))),),
)
record(
    name="edm_to_vp", module="edm", plan=_vp_edm_plans(),
    build=lambda p: Call([Times(p["sigma"]), Batched(_images(p, 0))]),
    errors=(("sigma < 0", lambda: spec.edm.edm_to_vp(-1.0, np.zeros((1, 2, 2))),
             lambda: runtime.edm.edm_to_vp(-1.0, torch.zeros(1, 1, 2, 2))),),
)


@st.composite
def _edm_sigmas_plans(draw: Any) -> Plan:
    lo = draw(st.floats(1e-3, 1.0))
    return {"n": draw(st.integers(1, 60)), "lo": lo, "hi": lo * draw(st.floats(1.5, 1e4)),
            "rho": draw(st.one_of(st.just(7.0), st.floats(1.0, 10.0)))}


record(
    name="edm_sigmas", module="edm", plan=_edm_sigmas_plans(), batched=False,
    build=lambda p: Call([p["n"], p["lo"], p["hi"], p["rho"]]),
    dtypes=("float64",), dtypes_reason="returns float64 by contract, whatever the caller uses",
    errors=(("n = 0", lambda: spec.edm.edm_sigmas(0, 0.1, 1.0),
             lambda: runtime.edm.edm_sigmas(0, 0.1, 1.0)),
            ("sigma_min >= sigma_max", lambda: spec.edm.edm_sigmas(4, 1.0, 1.0),
             lambda: runtime.edm.edm_sigmas(4, 1.0, 1.0))),
)

EDM_SIGMA_MAX = {"float32": 10.0, "bfloat16": 3.0}
EDM_X0 = (
    "D(x̃; σ) is checked for σ ≤ 10 in float32 and σ ≤ 3 in bfloat16 (ᾱ = 1/(1 + σ²) ≥ 0.01 "
    "and ≥ 0.1); larger σ in float64 only: x̃ − σ·ε̂ cancels to x̂0 while x̃ grows like σ, so "
    "the network's own float32 error (~3e-6 after 8 layers) is multiplied by σ (2.6e-4 seen at "
    "σ = 80, beyond the 1e-4 tolerance)"
)


def _edm_skip(p: Plan, dtype: str) -> bool:
    if dtype not in EDM_SIGMA_MAX:
        return False
    sigmas = [*_as_list(p.get("sigma", [])), *_as_list(p.get("sigma_next", [])),
              *p.get("sigmas", [])]
    return max(sigmas, default=0.0) > EDM_SIGMA_MAX[dtype]


def _as_list(v: Any) -> list[float]:
    return list(v) if isinstance(v, list) else [v]


_edm_skip.reason = EDM_X0  # type: ignore[attr-defined]

HEUN_RATIO = {"float32": 100.0, "bfloat16": 5.0}
HEUN_PRECISION = (
    "Heun is checked where every corrected step has σ/σ_next ≤ 100 (float32) or ≤ 5 "
    "(bfloat16): the Euler predictor x̃' is rounded to the working dtype before the model reads "
    "it at σ_next, and the corrector's slope (x̃' − D)/σ_next turns that rounding (ulp(x̃')) into "
    "an error (σ − σ_next)/σ_next times larger (bfloat16: 0.2 seen at σ = 2 → 0.0625; float32: "
    "4e-4 at σ = 1 → 1e-4); the spec keeps x̃' in float64"
)


def _heun_skip(p: Plan, dtype: str) -> bool:
    if _edm_skip(p, dtype):
        return True
    if dtype not in HEUN_RATIO:
        return False
    if "sigmas" in p:
        pairs = list(zip(p["sigmas"][:-1], p["sigmas"][1:], strict=True))
    else:
        pairs = list(zip(_as_list(p["sigma"]), _as_list(p["sigma_next"]), strict=True))
    return any(n > 0 and s / n > HEUN_RATIO[dtype] for s, n in pairs)


_heun_skip.reason = EDM_X0 + "; " + HEUN_PRECISION  # type: ignore[attr-defined]

edm_sigma_values = st.one_of(st.just(0.002), st.just(80.0), st.floats(0.002, 80.0),
                             st.floats(0.002, 3.0))


@st.composite
def _edm_step_plans(draw: Any, allow_zero: bool = True) -> Plan:
    B = draw(S.batch_sizes)
    plan: Plan = {"B": B, "shape": draw(S.image_shapes), "seed": draw(S.seeds),
                  "cont": draw(continuous_schedules), "model": draw(S.eps_models)}
    per_sample = draw(st.booleans())
    n = B if per_sample else 1
    sig = draw(st.lists(edm_sigma_values, min_size=n, max_size=n))
    frac = draw(st.lists(st.one_of(st.just(0.0), st.floats(0.01, 0.99), st.floats(0.3, 0.99)),
                         min_size=n, max_size=n))
    nxt = [s * f if allow_zero else s * max(f, 0.01) for s, f in zip(sig, frac, strict=True)]
    plan["sigma"], plan["sigma_next"] = (sig, nxt) if per_sample else (sig[0], nxt[0])
    return plan


def _sig(v: Any) -> Any:
    return Times(v) if isinstance(v, list) else v


def _x_tilde(p: Plan, sigma_max: float) -> Batched:
    """x̃ = x0-like + σ·z at the largest σ of the plan: the EDM scale the samplers see."""
    return Batched(_images(p, 0) * np.sqrt(1.0 + sigma_max**2))


def _edm_step_call(p: Plan) -> Call:
    sig_max = max(_as_list(p["sigma"]))
    return Call([_cont_sched(p), _cont_model(p), _x_tilde(p, sig_max), _sig(p["sigma"]),
                 _sig(p["sigma_next"])])


record(
    name="edm_denoise", module="edm", plan=_edm_step_plans(), skip=_edm_skip,
    build=lambda p: Call([_cont_sched(p), _cont_model(p), _x_tilde(p, max(_as_list(p["sigma"]))),
                          _sig(p["sigma"])]),
    tolerances={"float32": X0_F32, "bfloat16": MODEL_BF16},
)
record(
    name="edm_euler_step", module="edm", plan=_edm_step_plans(), skip=_edm_skip,
    build=_edm_step_call, tolerances={"float32": X0_F32, "bfloat16": MODEL_BF16},
    errors=(("sigma_next = sigma", lambda: spec.edm.edm_euler_step(
        spec.pf_ode.VPLinearSchedule(), spec.model.FunctionEpsModel(lambda y, t: y),
        np.zeros((1, 2, 2)), 1.0, 1.0),
        lambda: runtime.edm.edm_euler_step(runtime.pf_ode.VPLinearSchedule(), lambda y, t: y,
                                           torch.zeros(1, 1, 2, 2), 1.0, 1.0)),),
)
record(
    name="edm_heun_step", module="edm", plan=_edm_step_plans(), skip=_heun_skip,
    build=_edm_step_call, tolerances={"float32": X0_F32, "bfloat16": MODEL_BF16},
    errors=(("sigma_next > sigma", lambda: spec.edm.edm_heun_step(
        spec.pf_ode.VPLinearSchedule(), spec.model.FunctionEpsModel(lambda y, t: y),
        np.zeros((1, 2, 2)), 1.0, 2.0),
        lambda: runtime.edm.edm_heun_step(runtime.pf_ode.VPLinearSchedule(), lambda y, t: y,
                                          torch.zeros(1, 1, 2, 2), 1.0, 2.0)),),
)


@st.composite
def _edm_sample_plans(draw: Any) -> Plan:
    plan: Plan = {"B": draw(S.batch_sizes), "shape": draw(S.image_shapes), "seed": draw(S.seeds),
                  "cont": draw(continuous_schedules), "model": draw(S.eps_models)}
    hi = draw(st.one_of(st.just(80.0), st.floats(0.5, 80.0), st.floats(0.5, 3.0)))
    if draw(st.booleans()):  # any grid
        lo, n = hi * draw(st.floats(1e-4, 0.5)), draw(st.integers(1, 8))
    else:  # a mild one (consecutive ratios ≤ 3), checked in bfloat16 too
        lo, n = hi * draw(st.floats(0.35, 0.5)), draw(st.integers(1, 3))
    sigmas = spec.edm.edm_sigmas(n, lo, hi, draw(st.sampled_from([7.0, 1.0, 3.0]))).tolist()
    if draw(st.booleans()):  # a grid that stops short of σ = 0 (Heun corrects every step)
        sigmas = sigmas[:-1] if len(sigmas) > 2 else [sigmas[0], sigmas[0] / 2]
    plan["sigmas"] = sigmas
    return plan


def _bad_sigmas(spec_side: bool) -> Any:
    if spec_side:
        return spec.edm.edm_sample_heun(spec.pf_ode.VPLinearSchedule(),
                                        spec.model.FunctionEpsModel(lambda y, t: y),
                                        np.zeros((1, 2, 2)), [2.0, 2.0, 0.0])
    return runtime.edm.edm_sample_heun(runtime.pf_ode.VPLinearSchedule(), lambda y, t: y,
                                       torch.zeros(1, 1, 2, 2), [2.0, 2.0, 0.0])


for _name, _skip in (("edm_sample_euler", _edm_skip), ("edm_sample_heun", _heun_skip)):
    record(
        name=_name, module="edm", plan=_edm_sample_plans(), skip=_skip, sampler=True,
        build=lambda p: Call([_cont_sched(p), _cont_model(p), _x_tilde(p, p["sigmas"][0]),
                              p["sigmas"]]),
        tolerances={"float32": SAMPLER_F32, "bfloat16": SAMPLER_BF16}, max_examples=8,
        errors=(("a grid that is not strictly decreasing", lambda: _bad_sigmas(True),
                 lambda: _bad_sigmas(False)),),
    )

# --- spec.dpm_solver -------------------------------------------------------------------------


def _alpha_bar_array(p: Plan) -> Arr:
    """ᾱ in (0, 1): |tanh| of N(0, 2²), so values near both ends (λ = ±∞ at the ends themselves
    is checked in tests/test_sampler_order.py: inf − inf has no error to compare)."""
    a = np.abs(np.tanh(_rng_array(p, 0, p["shape"], 2.0)))
    return Arr(np.clip(a, 1e-6, 0.99))  # 0.99: still below 1 after rounding to bfloat16


record(
    name="half_log_snr", module="dpm_solver", plan=small_arrays, batched=False,
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


def _dpm_step_skip(p: Plan, dtype: str) -> bool:
    if dtype != "float64" and _dpm_c(p) > DPM_C_MAX:
        return True
    return _bf16_ill_conditioned(p, dtype)


_dpm_step_skip.reason = DPM_CONDITIONING + "; " + BF16_CONDITIONING  # type: ignore[attr-defined]


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
    prev = Batched(_images(p, 2)) if p["with_prev"] else None
    return Call([_sched(p), Batched(_images(p, 0)), Batched(_images(p, 1)),
                 _idx(p, p["time"]["t"]), _idx(p, p["t_next"]), prev,
                 _idx(p, p["t_prev"]) if p["with_prev"] else None])


record(
    name="dpm_solver_pp_2m_step", module="dpm_solver", plan=_dpm_step_plans(),
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


def _dpm_sample_skip(p: Plan, dtype: str) -> bool:
    if dtype != "float64":
        ab = np.cumprod(np.concatenate([[1.0], 1.0 - S.betas_of(p["schedule"])]))
        lam = spec.dpm_solver.half_log_snr(ab[p["timesteps"]])
        for i in range(1, len(lam) - 2):
            if (lam[i + 1] - lam[i]) / (2 * (lam[i] - lam[i - 1])) > DPM_C_MAX:
                return True
    return _sampler_skip(p, dtype)


_dpm_sample_skip.reason = DPM_CONDITIONING + "; " + _sampler_skip.reason  # type: ignore[attr-defined]


def _bad_dpm_grid(spec_side: bool) -> Any:
    if spec_side:
        return spec.dpm_solver.dpm_solver_pp_2m_sample(
            spec.schedule.VPSchedule(np.array([0.1, 0.2])),
            spec.model.FunctionEpsModel(lambda y, t: y), np.zeros((1, 4, 4)), [2, 1])
    return runtime.dpm_solver.dpm_solver_pp_2m_sample(
        runtime.schedule.Schedule([0.1, 0.2]), lambda y, t: y, torch.zeros(1, 1, 4, 4), [2, 1])


record(
    name="dpm_solver_pp_2m_sample", module="dpm_solver", plan=_dpm_sample_plans(),
    build=lambda p: Call([_sched(p), _model(p), Batched(_images(p, 0)), p["timesteps"]]),
    skip=_dpm_sample_skip, sampler=True, max_examples=8,
    tolerances={"float32": SAMPLER_F32, "bfloat16": SAMPLER_BF16},
    errors=(("a grid that does not end at 0", lambda: _bad_dpm_grid(True),
             lambda: _bad_dpm_grid(False)),),
)
