"""Records of `spec.prediction`: the prediction table, the ε/x0/v conversions, the denoiser, SNR and
min-SNR-γ weights."""

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
from conformance import conditioning
from conformance import strategies as S
from conformance.harness import to_numpy
from conformance.markers import Batched, Call, PerSample, Times, batch_size
from conformance.plans import (
    MODEL_BF16,
    PREDICTION_NAMES,
    X0_F32,
    X0_SKIP,
    batch_plans,
    images,
    model_of,
    prediction_at,
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


def _divisors(prediction: str, ab: np.ndarray) -> dict[str, np.ndarray]:
    """The divisors d of the prediction's x̂0 and ε̂ (its table row) at each ᾱ of ab: ε → x̂0
    divides by √ᾱ, x0 → ε̂ by √(1 − ᾱ), v by the literal 1."""
    row = spec.prediction.PREDICTION_TABLE[prediction]
    roots = (np.sqrt(ab), np.sqrt(1.0 - ab))
    return {k: np.broadcast_to(np.asarray(conv(*roots)[2], dtype=np.float64), np.shape(ab))
            for k, conv in (("x0", row.x0), ("eps", row.eps))}


def _table_columns(rows: dict, sqrt_ab: Any, sqrt_1m: Any, s: Any, gamma: float,
                   min_snr: Any) -> dict[str, dict[str, Any]]:
    """Every coefficient of every row at the schedule's t = 0..T (each (T + 1,), float64) and
    its min-SNR-γ weight (`min_snr(row, s, γ)`)."""
    n = len(to_numpy(sqrt_ab))

    def column(c: Any) -> np.ndarray:
        return np.broadcast_to(np.asarray(to_numpy(c), dtype=np.float64), (n,))

    return {name: {**{k: tuple(column(c) for c in conv(sqrt_ab, sqrt_1m))
                      for k, conv in (("x0", row.x0), ("eps", row.eps), ("target", row.target))},
                   "min_snr": column(min_snr(row, s, gamma))}
            for name, row in rows.items()}


def spec_table(sched: spec.schedule.VPSchedule, gamma: float) -> dict[str, dict[str, Any]]:
    ab = sched.alpha_bar
    s = [spec.prediction.snr(sched, t) for t in range(sched.T + 1)]
    return _table_columns(spec.prediction.PREDICTION_TABLE, np.sqrt(ab), np.sqrt(1.0 - ab), s,
                          gamma, lambda row, s, g: [row.min_snr(v, g) for v in s])


def runtime_table(sched: runtime.schedule.Schedule, gamma: float) -> dict[str, dict[str, Any]]:
    s = sched.snr.float64
    return _table_columns(runtime.prediction.PREDICTION_TABLE, sched.sqrt_alpha_bar.float64,
                          sched.sqrt_one_minus_alpha_bar.float64, s, gamma,
                          lambda row, s, g: row.min_snr(s, torch.full_like(s, float(g))))


@st.composite
def table_plans(draw: Any) -> Plan:
    plan = draw(batch_plans())
    plan["gamma"] = draw(st.one_of(st.just(5.0), st.just(math.inf), st.floats(0.1, 20.0)))
    return plan


record(
    name="PREDICTION_TABLE", plan=table_plans(),
    build=lambda p: Call([sched_of(p), p["gamma"]]),
    spec_fn=spec_table, runtime_fn=runtime_table, batched=False,
    dtypes=("float64",), dtypes_reason="the coefficients are computed from the schedule's "
    "float64 tables whatever the data dtype",
    errors=(("an unknown prediction",
             lambda: spec.prediction.check_prediction("score"),
             lambda: runtime.prediction.check_prediction("score")),),
)
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
    # ᾱ = 0 only for a prediction whose x̂0 exists there (ε's is an error case of x0_from_output)
    low = 0.0 if spec.prediction.PREDICTION_TABLE[plan["prediction"]].x0_at_zero_snr else 1e-3
    ab = st.one_of(st.just(1.0), st.just(low), st.floats(low, 1.0), st.floats(0.1, 0.9))
    plan["ab"] = draw(st.lists(ab, min_size=plan["B"], max_size=plan["B"]))
    return plan


def output_call(p: Plan) -> Call:
    return Call([Times(p["ab"]), Batched(images(p, 0)), Batched(images(p, 1)),
                 p["prediction"]])


record(
    name="x0_from_output", plan=output_plans(), build=output_call,
    conditioning=conditioning.x0_from_output,
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
    conditioning=conditioning.eps_from_output,
)

# --- conversions on a schedule -----------------------------------------------------------

@st.composite
def sched_plans(draw: Any, model: bool = False) -> Plan:
    plan = draw(batch_plans(model=model))
    plan["prediction"] = prediction_at(plan, draw(st.sampled_from(PREDICTION_NAMES)))
    plan["gamma"] = draw(st.one_of(st.none(), st.just(5.0), st.just(math.inf),
                                   st.floats(0.1, 20.0)))
    return plan


def sched_call(p: Plan) -> Call:
    return Call([sched_of(p), Batched(images(p, 0)), Batched(images(p, 1)),
                 time_of(p["time"]), p["prediction"]])


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
    conditioning=conditioning.predict_x0,
    errors=(("eps at t = T of a zero-terminal-SNR schedule (int t)",
             lambda: zero_snr_eps(True, False), lambda: zero_snr_eps(False, False)),
            ("eps at t = T of a zero-terminal-SNR schedule (per-sample t)",
             lambda: zero_snr_eps(True, False), lambda: zero_snr_eps(False, True))),
)
record(
    name="predict_eps", plan=sched_plans(), build=sched_call,
    conditioning=conditioning.predict_eps,
)
record(
    name="v_target", plan=batch_plans(),
    build=lambda p: Call([sched_of(p), Batched(images(p, 0)), time_of(p["time"]),
                          Batched(images(p, 1))]),
    conditioning=conditioning.v_target,
)
record(
    name="prediction_target", plan=sched_plans(),
    build=lambda p: Call([sched_of(p), Batched(images(p, 0)), time_of(p["time"]),
                          Batched(images(p, 1)), p["prediction"]]),
    conditioning=conditioning.prediction_target,
)


def _eps_divisor(p: Plan) -> np.ndarray:
    """The divisor of the plan model's ε̂ at the plan's times: √(1 − ᾱ_t) for an x0-model."""
    ab = spec.schedule.VPSchedule(S.betas_of(p["schedule"])).alpha_bar
    times = p["time"]["t"] if p["time"]["per_sample"] else [p["time"]["t"]]
    return _divisors(prediction_at(p, p["model"]["prediction"]), ab[list(times)])["eps"]


def x0_model_at_zero(p: Plan, dtype: str) -> bool:
    return bool((_eps_divisor(p) == 0).any())


def x0_model_small_noise_bf16(p: Plan, dtype: str) -> bool:
    return dtype == "bfloat16" and bool((_eps_divisor(p) ** 2).min() < 0.1)


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
