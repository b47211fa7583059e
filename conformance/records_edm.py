"""Records of `spec.edm`: Euler and Heun in EDM form (Karras et al. 2022) on both continuous VP
schedules.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

import runtime.edm
import runtime.pf_ode
import spec.edm
import spec.model
import spec.pf_ode
from conformance import strategies as S
from conformance.markers import Batched, Call, Fn, PFSched, Times
from conformance.plans import (
    MODEL_BF16,
    SAMPLER_BF16,
    SAMPLER_F32,
    X0_F32,
    cosine_s,
    images,
    model_of,
)
from conformance.record import Plan, Records
from conformance.tolerances import Skip

RECORDS = Records()
record = RECORDS.add

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
    return model_of(p, kind)


@st.composite
def _vp_edm_plans(draw: Any) -> Plan:
    B = draw(S.batch_sizes)
    return {"B": B, "shape": draw(S.image_shapes), "seed": draw(S.seeds),
            "ab": draw(st.lists(st.one_of(st.just(1.0), st.floats(1e-4, 1.0)), min_size=B,
                                max_size=B)),
            "sigma": draw(st.lists(st.one_of(st.just(0.0), st.floats(0.0, 100.0)), min_size=B,
                                   max_size=B))}


record(
    name="vp_to_edm", plan=_vp_edm_plans(),
    build=lambda p: Call([Times(p["ab"]), Batched(images(p, 0))]),
    errors=(("alpha_bar = 0", lambda: spec.edm.vp_to_edm(0.0, np.zeros((1, 2, 2))),
             lambda: runtime.edm.vp_to_edm(0.0, torch.zeros(1, 1, 2, 2))),),
)
record(
    name="edm_to_vp", plan=_vp_edm_plans(),
    build=lambda p: Call([Times(p["sigma"]), Batched(images(p, 0))]),
    errors=(("sigma < 0", lambda: spec.edm.edm_to_vp(-1.0, np.zeros((1, 2, 2))),
             lambda: runtime.edm.edm_to_vp(-1.0, torch.zeros(1, 1, 2, 2))),),
)


@st.composite
def _edm_sigmas_plans(draw: Any) -> Plan:
    lo = draw(st.floats(1e-3, 1.0))
    return {"n": draw(st.integers(1, 60)), "lo": lo, "hi": lo * draw(st.floats(1.5, 1e4)),
            "rho": draw(st.one_of(st.just(7.0), st.floats(1.0, 10.0)))}


record(
    name="edm_sigmas", plan=_edm_sigmas_plans(), batched=False,
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


def _edm_sigma_too_large(p: Plan, dtype: str) -> bool:
    if dtype not in EDM_SIGMA_MAX:
        return False
    sigmas = [*_as_list(p.get("sigma", [])), *_as_list(p.get("sigma_next", [])),
              *p.get("sigmas", [])]
    return max(sigmas, default=0.0) > EDM_SIGMA_MAX[dtype]


def _as_list(v: Any) -> list[float]:
    return list(v) if isinstance(v, list) else [v]


_edm_skip = Skip(_edm_sigma_too_large, EDM_X0)

HEUN_RATIO = {"float32": 100.0, "bfloat16": 5.0}
HEUN_PRECISION = (
    "Heun is checked where every corrected step has σ/σ_next ≤ 100 (float32) or ≤ 5 "
    "(bfloat16): the Euler predictor x̃' is rounded to the working dtype before the model reads "
    "it at σ_next, and the corrector's slope (x̃' − D)/σ_next turns that rounding (ulp(x̃')) into "
    "an error (σ − σ_next)/σ_next times larger (bfloat16: 0.2 seen at σ = 2 → 0.0625; float32: "
    "4e-4 at σ = 1 → 1e-4); the spec keeps x̃' in float64"
)


def _heun_ratio_too_large(p: Plan, dtype: str) -> bool:
    if dtype not in HEUN_RATIO:
        return False
    if "sigmas" in p:
        pairs = list(zip(p["sigmas"][:-1], p["sigmas"][1:], strict=True))
    else:
        pairs = list(zip(_as_list(p["sigma"]), _as_list(p["sigma_next"]), strict=True))
    return any(n > 0 and s / n > HEUN_RATIO[dtype] for s, n in pairs)


_heun_skip = _edm_skip | Skip(_heun_ratio_too_large, HEUN_PRECISION)

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
    return Batched(images(p, 0) * np.sqrt(1.0 + sigma_max**2))


def _edm_step_call(p: Plan) -> Call:
    sig_max = max(_as_list(p["sigma"]))
    return Call([_cont_sched(p), _cont_model(p), _x_tilde(p, sig_max), _sig(p["sigma"]),
                 _sig(p["sigma_next"])])


record(
    name="edm_denoise", plan=_edm_step_plans(), skip=_edm_skip,
    build=lambda p: Call([_cont_sched(p), _cont_model(p), _x_tilde(p, max(_as_list(p["sigma"]))),
                          _sig(p["sigma"])]),
    tolerances={"float32": X0_F32, "bfloat16": MODEL_BF16},
)
record(
    name="edm_euler_step", plan=_edm_step_plans(), skip=_edm_skip,
    build=_edm_step_call, tolerances={"float32": X0_F32, "bfloat16": MODEL_BF16},
    errors=(("sigma_next = sigma", lambda: spec.edm.edm_euler_step(
        spec.pf_ode.VPLinearSchedule(), spec.model.FunctionEpsModel(lambda y, t: y),
        np.zeros((1, 2, 2)), 1.0, 1.0),
        lambda: runtime.edm.edm_euler_step(runtime.pf_ode.VPLinearSchedule(), lambda y, t: y,
                                           torch.zeros(1, 1, 2, 2), 1.0, 1.0)),),
)
record(
    name="edm_heun_step", plan=_edm_step_plans(), skip=_heun_skip,
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
        name=_name, plan=_edm_sample_plans(), skip=_skip, sampler=True,
        build=lambda p: Call([_cont_sched(p), _cont_model(p), _x_tilde(p, p["sigmas"][0]),
                              p["sigmas"]]),
        tolerances={"float32": SAMPLER_F32, "bfloat16": SAMPLER_BF16}, max_examples=8,
        errors=(("a grid that is not strictly decreasing", lambda: _bad_sigmas(True),
                 lambda: _bad_sigmas(False)),),
    )


# --- ancestral Euler (k-diffusion's sample_euler_ancestral, η = 1) ---------------------------

record(
    name="edm_ancestral_sigmas", batched=False,
    plan=st.tuples(edm_sigma_values, st.one_of(st.just(0.0), st.floats(0.0, 0.999))).map(
        lambda sf: {"sigma": sf[0], "sigma_next": sf[0] * sf[1]}),
    build=lambda p: Call([p["sigma"], p["sigma_next"]]),
    dtypes=("float64",), dtypes_reason="two Python floats in, two Python floats out",
    errors=(("sigma_next = sigma", lambda: spec.edm.edm_ancestral_sigmas(1.0, 1.0),
             lambda: runtime.edm.edm_ancestral_sigmas(1.0, 1.0)),),
)
record(
    name="edm_euler_ancestral_step", plan=_edm_step_plans(), skip=_edm_skip,
    build=lambda p: Call([*_edm_step_call(p).args, Batched(images(p, 1))]),
    tolerances={"float32": X0_F32, "bfloat16": MODEL_BF16},
    errors=(("z of another shape", lambda: spec.edm.edm_euler_ancestral_step(
        spec.pf_ode.VPLinearSchedule(), spec.model.FunctionEpsModel(lambda y, t: y),
        np.zeros((1, 2, 2)), 1.0, 0.5, np.zeros((1, 2, 3))),
        lambda: runtime.edm.edm_euler_ancestral_step(
            runtime.pf_ode.VPLinearSchedule(), lambda y, t: y, torch.zeros(1, 1, 2, 2), 1.0, 0.5,
            torch.zeros(1, 1, 2, 3))),),
)


def _missing_noise(spec_side: bool) -> Any:
    if spec_side:
        return spec.edm.edm_euler_ancestral_sample(
            spec.pf_ode.VPLinearSchedule(), spec.model.FunctionEpsModel(lambda y, t: y),
            np.zeros((1, 2, 2)), [2.0, 1.0, 0.0], np.zeros((1, 1, 2, 2)))
    return runtime.edm.edm_euler_ancestral_sample(
        runtime.pf_ode.VPLinearSchedule(), lambda y, t: y, torch.zeros(1, 1, 2, 2),
        [2.0, 1.0, 0.0], torch.zeros(1, 1, 1, 2, 2))


record(
    name="edm_euler_ancestral_sample", plan=_edm_sample_plans(), skip=_edm_skip, sampler=True,
    build=lambda p: Call([_cont_sched(p), _cont_model(p), _x_tilde(p, p["sigmas"][0]),
                          p["sigmas"],
                          Batched(images(p, 1, (len(p["sigmas"]) - 1,)), axis=1)]),
    tolerances={"float32": SAMPLER_F32, "bfloat16": SAMPLER_BF16}, max_examples=8,
    errors=(("noise of the wrong number of steps", lambda: _missing_noise(True),
             lambda: _missing_noise(False)),),
)
