"""Records of `spec.prediction`: the ε/x0/v conversions, the denoiser, SNR and min-SNR-γ weights."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

import runtime.prediction
import runtime.schedule
import spec.prediction
import spec.schedule
from conformance import strategies as S
from conformance.markers import Batched, Call, PerSample, Times, batch_size
from conformance.plans import (
    BF16_ILL_CONDITIONED,
    MODEL_BF16,
    PREDICTION_NAMES,
    X0_F32,
    X0_MIN_ALPHA_BAR,
    X0_SKIP,
    batch_plans,
    images,
    model_of,
    sched_of,
    time_of,
)
from conformance.record import Plan, Records
from conformance.tolerances import Skip

RECORDS = Records()
record = RECORDS.add


def _per_sample(out: Any, call: Call) -> Any:
    """A runtime value that is 0-d for an int t, as (B,) like the spec's per-sample stack."""
    return np.broadcast_to(np.reshape(out, -1), (batch_size(call),)).copy()


def _times(p: Plan) -> Any:
    """The plan's time as one per sample (a record whose only batched argument is t)."""
    t = p["time"]["t"]
    return PerSample(t if p["time"]["per_sample"] else [t] * p["B"])


def _not_eps_at_zero_snr(plan: Plan, prediction: str) -> str:
    """ε cannot give x̂0 at ᾱ_T = 0: zero-terminal-SNR plans use v instead (the ε case is an
    error case of its own)."""
    if plan["schedule"]["kind"] == "zero_snr" and prediction == "eps":
        return "v"
    return prediction


def _ill_conditioned(ab: np.ndarray, prediction: str, dtype: str) -> bool:
    """A conversion that divides: ε → x̂0 by √ᾱ, x0 → ε̂ by √(1 − ᾱ) (v never divides)."""
    floor = X0_MIN_ALPHA_BAR[dtype]
    if prediction == "eps":
        return bool(ab.min() < floor)
    if prediction == "x0":
        return bool((1.0 - ab).min() < floor)
    return False


record(
    name="PREDICTIONS", plan=st.just({}), build=lambda p: Call([]),
    spec_fn=lambda: spec.prediction.PREDICTIONS,
    runtime_fn=lambda: runtime.prediction.PREDICTIONS, batched=False,
    dtypes=("float64",), dtypes_reason="a tuple of names: compared exactly, dtype-free",
)
record(
    name="Denoiser",
    exempt="a typing.Protocol (an interface: `prediction` and `output`); runtime.prediction."
    "Denoiser is its twin, and every model-taking record draws ε-, x0- and v-models",
)


# --- conversions at a given ᾱ ------------------------------------------------------------

@st.composite
def output_plans(draw: Any) -> Plan:
    plan: Plan = {"B": draw(S.batch_sizes), "shape": draw(S.image_shapes),
                  "seed": draw(S.seeds), "prediction": draw(st.sampled_from(PREDICTION_NAMES))}
    low = 1e-3 if plan["prediction"] == "eps" else 0.0
    ab = st.one_of(st.just(1.0), st.just(low), st.floats(low, 1.0), st.floats(0.1, 0.9))
    plan["ab"] = draw(st.lists(ab, min_size=plan["B"], max_size=plan["B"]))
    return plan


def output_call(p: Plan) -> Call:
    return Call([Times(p["ab"]), Batched(images(p, 0)), Batched(images(p, 1)),
                 p["prediction"]])


def output_ill_conditioned(p: Plan, dtype: str) -> bool:
    # dividing by √ᾱ (ε → x̂0) or √(1 − ᾱ) (x0 → ε̂) amplifies rounding like x0_pred
    if dtype == "float64":
        return False
    return _ill_conditioned(np.asarray(p["ab"], dtype=np.float64), p["prediction"], dtype)


output_skip = Skip(
    output_ill_conditioned,
    "a conversion that divides by √ᾱ (x̂0 of ε) or √(1 − ᾱ) (ε̂ of x0) is checked in "
    "float64 only where that ᾱ or 1 − ᾱ is below 1e-4 (float32) or 0.1 (bfloat16): the "
    "difference it divides cancels, so the dtype's rounding of the output is amplified "
    "beyond any useful tolerance (see x0_pred)",
)

record(
    name="x0_from_output", plan=output_plans(), build=output_call,
    skip=output_skip,
    errors=(("an eps-prediction at alpha_bar = 0",
             lambda: spec.prediction.x0_from_output(0.0, np.zeros((1, 2, 2)),
                                                    np.zeros((1, 2, 2)), "eps"),
             lambda: runtime.prediction.x0_from_output(0.0, torch.zeros(1, 1, 2, 2),
                                                       torch.zeros(1, 1, 2, 2), "eps")),
            ("an unknown prediction",
             lambda: spec.prediction.x0_from_output(0.5, np.zeros((1, 2, 2)),
                                                    np.zeros((1, 2, 2)), "score"),
             lambda: runtime.prediction.x0_from_output(0.5, torch.zeros(1, 1, 2, 2),
                                                       torch.zeros(1, 1, 2, 2), "score"))),
)
record(
    name="eps_from_output", plan=output_plans(), build=output_call,
    skip=output_skip,
)

# --- conversions on a schedule -----------------------------------------------------------

@st.composite
def sched_plans(draw: Any, model: bool = False) -> Plan:
    plan = draw(batch_plans(model=model))
    plan["prediction"] = _not_eps_at_zero_snr(plan, draw(st.sampled_from(PREDICTION_NAMES)))
    plan["gamma"] = draw(st.one_of(st.none(), st.just(5.0), st.just(math.inf),
                                   st.floats(0.1, 20.0)))
    return plan


def sched_call(p: Plan) -> Call:
    return Call([sched_of(p), Batched(images(p, 0)), Batched(images(p, 1)),
                 time_of(p["time"]), p["prediction"]])


def sched_ill_conditioned(p: Plan, dtype: str) -> bool:
    if dtype == "float64":
        return False
    ab = spec.schedule.VPSchedule(S.betas_of(p["schedule"])).alpha_bar
    times = p["time"]["t"] if p["time"]["per_sample"] else [p["time"]["t"]]
    return _ill_conditioned(ab[list(times)], p["prediction"], dtype)


sched_skip = Skip(sched_ill_conditioned, output_skip.reason) | BF16_ILL_CONDITIONED


def zero_snr_eps(spec_side: bool, per_sample: bool) -> Any:
    betas = spec.schedule.rescale_zero_terminal_snr(spec.schedule.linear_betas(4, 0.1, 0.2))
    if spec_side:
        s = spec.schedule.VPSchedule(betas)
        return spec.prediction.predict_x0(s, np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), 4)
    s = runtime.schedule.Schedule(torch.from_numpy(betas))
    t = torch.tensor([2, 4]) if per_sample else 4
    return runtime.prediction.predict_x0(s, torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 2),
                                         t, "eps")


record(
    name="predict_x0", plan=sched_plans(), build=sched_call,
    skip=sched_skip, tolerances={"float32": X0_F32},
    errors=(("eps at t = T of a zero-terminal-SNR schedule (int t)",
             lambda: zero_snr_eps(True, False), lambda: zero_snr_eps(False, False)),
            ("eps at t = T of a zero-terminal-SNR schedule (per-sample t)",
             lambda: zero_snr_eps(True, False), lambda: zero_snr_eps(False, True))),
)
record(
    name="predict_eps", plan=sched_plans(), build=sched_call,
    skip=sched_skip, tolerances={"float32": X0_F32},
)
record(
    name="v_target", plan=batch_plans(),
    build=lambda p: Call([sched_of(p), Batched(images(p, 0)), time_of(p["time"]),
                          Batched(images(p, 1))]),
)
record(
    name="prediction_target", plan=sched_plans(),
    build=lambda p: Call([sched_of(p), Batched(images(p, 0)), time_of(p["time"]),
                          Batched(images(p, 1)), p["prediction"]]),
)


def x0_model_at_zero(p: Plan, dtype: str) -> bool:
    prediction = _not_eps_at_zero_snr(p, p["model"]["prediction"])
    times = p["time"]["t"] if p["time"]["per_sample"] else [p["time"]["t"]]
    return prediction == "x0" and min(times) == 0


def x0_model_small_noise_bf16(p: Plan, dtype: str) -> bool:
    if dtype != "bfloat16" or p["model"]["prediction"] != "x0":
        return False
    ab = spec.schedule.VPSchedule(S.betas_of(p["schedule"])).alpha_bar
    times = p["time"]["t"] if p["time"]["per_sample"] else [p["time"]["t"]]
    return bool((1.0 - ab[list(times)]).min() < 0.1)


denoise_skip = Skip(
    x0_model_small_noise_bf16,
    "ε̂ of an x0-model divides x_t − √ᾱ_t·x̂0 by √(1 − ᾱ_t): bfloat16's 2^-9 rounding of x̂0 "
    "becomes 2^-9·|x̂0|/√(1 − ᾱ_t), beyond the model tolerance once 1 − ᾱ_t < 0.1 (checked in "
    "float64 and float32 there)",
) | Skip(
    x0_model_at_zero,
    "ε̂ of an x0-model at t = 0 divides x_t − x̂0 by √(1 − ᾱ_0) + EPS = 1e-12 (safe_div's "
    "guard; no sampler asks for it): a 1-ulp difference between the two sides' x̂0 becomes "
    "~1e-4",
) | X0_SKIP

record(
    skip=denoise_skip,
    name="denoise", plan=batch_plans(model=True),
    build=lambda p: Call([sched_of(p), model_of(p), Batched(images(p, 0)),
                          time_of(p["time"])]),
    tolerances={"float32": X0_F32, "bfloat16": MODEL_BF16},
)

# --- SNR and min-SNR-γ ---------------------------------------------------------------------
record(
    name="snr", plan=batch_plans(), post=_per_sample,
    build=lambda p: Call([sched_of(p), _times(p)]),
    dtypes=("float64",),
    dtypes_reason="read from the schedule's float64 table whatever the data dtype",
)
record(
    name="min_snr_weight",
    plan=sched_plans().filter(lambda p: p["gamma"] is not None), post=_per_sample,
    build=lambda p: Call([sched_of(p), _times(p), p["gamma"], p["prediction"]]),
    dtypes=("float64",),
    dtypes_reason="computed from the schedule's float64 SNR table whatever the data dtype",
    errors=(("gamma = 0",
             lambda: spec.prediction.min_snr_weight(
                 spec.schedule.VPSchedule(np.array([0.1, 0.2])), 1, 0.0, "v"),
             lambda: runtime.prediction.min_snr_weight(
                 runtime.schedule.Schedule([0.1, 0.2]), 1, 0.0, "v")),),
)
