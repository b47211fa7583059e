"""What several records files share: plan strategies and builders, and the tolerance overrides
and skips of more than one record (each with its reason).

A plan is a JSON-able dict drawn by hypothesis (it is printed in the REPRO line); a builder turns
it into a `Call` of markers. The arrays of a plan come from its seed: `rng_array(plan, stream,
shape)`, one stream per array.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from hypothesis import strategies as st

import spec.model
import spec.prediction
from conformance import strategies as S
from conformance.markers import Cfg, Model, Params, PerSample, Sched, Times
from conformance.record import Plan
from conformance.tolerances import Skip, Tol

PREDICTION_NAMES = list(spec.prediction.PREDICTIONS)

# ---------------------------------------------------------------------------------------------
# Plans and builders


def rng_array(plan: Plan, stream: int, shape: Any, scale: float = 1.0) -> np.ndarray:
    """An N(0, scale²) array from the plan's seed; `stream` separates the arrays of one plan."""
    return S.gaussian_array(plan["seed"] * 64 + stream, shape, scale)


def time_of(time_plan: Plan) -> Any:
    """A `time_indices` draw as the argument t: one int, or `PerSample` (one per sample)."""
    return PerSample(time_plan["t"]) if time_plan["per_sample"] else time_plan["t"]


@st.composite
def batch_plans(
    draw: Any,
    max_T: int = 50,
    min_beta: float = 0.0,
    t_low: int = 0,
    t_high: int = 0,
    model: bool = False,
) -> Plan:
    """B, an image shape, a discrete schedule, a time index in t_low..T + t_high, a seed and
    (optionally) an ε-model."""
    plan: Plan = {
        "B": draw(S.batch_sizes),
        "shape": draw(S.image_shapes),
        "schedule": draw(S.beta_schedules(max_T, min_beta)),
        "seed": draw(S.seeds),
    }
    T = plan["schedule"]["T"]
    plan["time"] = draw(S.time_indices(T, plan["B"], t_low, T + t_high))
    if model:
        plan["model"] = draw(S.eps_models)
    return plan


def images(plan: Plan, stream: int, lead: tuple[int, ...] = ()) -> np.ndarray:
    """An N(0, 1) batch of the plan's images, (*lead, B, C, H, W)."""
    return rng_array(plan, stream, (*lead, plan["B"], *plan["shape"]))


def sched_of(plan: Plan) -> Sched:
    """The plan's discrete schedule."""
    return Sched(S.betas_of(plan["schedule"]))


def prediction_at(plan: Plan, prediction: str) -> str:
    """`prediction`, or v where the plan's schedule has ᾱ_T = 0 and the prediction's x̂0 does not
    exist there (ε: a ValueError on both sides, checked by test_same_errors)."""
    if "schedule" in plan and plan["schedule"]["kind"] == "zero_snr" and \
            not spec.prediction.PREDICTION_TABLE[prediction].x0_at_zero_snr:
        return "v"
    return prediction


def model_of(plan: Plan, schedule: tuple | None = None) -> Model:
    """The plan's model: a network (ε, x0 or v) or the Gaussian denoiser of `schedule` (default:
    the plan's discrete schedule)."""
    m, channels = plan["model"], plan["shape"][0]
    m = {**m, "prediction": prediction_at(plan, m.get("prediction", "eps"))}
    if m["kind"] == "gauss":
        if schedule is None:
            schedule = ("discrete", S.betas_of(plan["schedule"]).tolist())
        return Model("gauss", data=S.gaussian_data_of(m, channels, schedule))
    return Model(m["kind"], S.config_of(m, channels), S.params_of(m, channels),
                 prediction=m.get("prediction", "eps"))


def eps_model_of(plan: Plan) -> Model:
    """The plan's model as an ε-model (for the ε-only TorchLean loss, total at ᾱ_T = 0 too)."""
    m, channels = {**plan["model"], "prediction": "eps"}, plan["shape"][0]
    if m["kind"] == "gauss":
        return Model("gauss", data=S.gaussian_data_of(
            m, channels, ("discrete", S.betas_of(plan["schedule"]).tolist())))
    return Model(m["kind"], S.config_of(m, channels), S.params_of(m, channels))


cosine_s = st.floats(0.001, 0.02)  # the offset s of the cosine schedule (Nichol & Dhariwal 2021)
small_arrays = st.fixed_dictionaries({"shape": S.array_shapes, "seed": S.seeds})


@st.composite
def image_plans(draw: Any) -> Plan:
    """B, an image shape, a seed and a continuous time t ∈ [0, 1] (one, or one per sample)."""
    plan: Plan = {"B": draw(S.batch_sizes), "shape": draw(S.image_shapes), "seed": draw(S.seeds)}
    if draw(st.booleans()):
        plan["t"] = draw(st.lists(S.continuous_times, min_size=plan["B"], max_size=plan["B"]))
    else:
        plan["t"] = draw(S.continuous_times)
    return plan


def time_arg(p: Plan) -> Any:
    """An `image_plans` time as the argument t: one float, or `Times` (one per sample)."""
    return Times(p["t"]) if isinstance(p["t"], list) else p["t"]


def config_fields(cfg: Any) -> Any:
    """A config dataclass as (values, field names, defaults): what its two twins must share."""
    fields = dataclasses.fields(type(cfg))
    return (dataclasses.astuple(cfg), [f.name for f in fields],
            [repr(f.default) for f in fields])


film_configs = st.fixed_dictionaries({"data_channels": st.integers(1, 3),
                                      "groups": st.sampled_from([1, 2, 4]),
                                      "per_group": st.integers(1, 4),
                                      "residual_blocks": st.integers(0, 3),
                                      "half_embed": st.integers(1, 8),
                                      "down_blocks": st.integers(0, 2)})


# ---------------------------------------------------------------------------------------------
# Tolerance overrides and skips shared by several records (each with its reason)

MODEL_BF16 = Tol(
    rtol=5e-2, atol=5e-2,
    reason="the network itself runs in bfloat16: every layer's output is rounded to 8 bits and "
    "the next layer amplifies it (depth 3-8 layers)",
)
SAMPLER_BF16 = Tol(
    rtol=1e-1, atol=1e-1,
    reason="the sampler state is stored in bfloat16 between steps (the caller's dtype), so a "
    "rounding of ~2^-9 per step accumulates over up to 50 steps of a bfloat16 network",
)
BF16_CONDITIONING = (
    "bfloat16 is checked on well-conditioned schedules only (every β_t ≤ 0.5 and ᾱ_T ≥ 0.01; "
    "for the PF ODE ᾱ(1) ≥ 0.01): elsewhere a step divides ε̂ or x̂0 by √α_t or √ᾱ_t down to "
    "0.03, so bfloat16's 2^-9 rounding of ε̂ alone exceeds any tolerance that still catches "
    "bugs; those schedules are checked in float64 and float32"
)


def _bf16_ill_conditioned(plan: Plan, dtype: str) -> bool:
    if dtype != "bfloat16":
        return False
    if "schedule" in plan:
        betas = S.betas_of(plan["schedule"])
        return bool(betas.max() > 0.5 or np.prod(1.0 - betas) < 0.01)
    if "pf" in plan:
        b0, b1 = plan["pf"]["beta0"], plan["pf"]["beta1"]
        return bool(np.exp(-(b0 + 0.5 * (b1 - b0))) < 0.01)
    return False


BF16_ILL_CONDITIONED = Skip(_bf16_ill_conditioned, BF16_CONDITIONING)

X0_FLOAT32 = (
    "x̂0 read at a time with ᾱ_t < 1e-4 (float32) or < 0.1 (bfloat16) is checked in float64 "
    "only: x_t − √(1−ᾱ_t)·ε̂ cancels to √ᾱ_t·x0, so the relative error of x̂0 is the dtype's "
    "rounding (6e-8, 4e-3) times |x_t|/√ᾱ_t, more than any useful tolerance"
)


SAMPLER_FLOAT32 = (
    "float32 DDPM/DDIM chains are checked where ᾱ_{T−1} ≥ 1e-4: an error made at step t is "
    "divided by √α_s at every later step, i.e. amplified by up to 1/√ᾱ_{T−1}; random schedules "
    "with β up to 0.9 reach 1e5 and are checked in float64 only"
)


def _sampler_f32_ill_conditioned(plan: Plan, dtype: str) -> bool:
    if dtype == "float32":
        betas = S.betas_of(plan["schedule"])
        return bool(np.prod(1.0 - betas[:-1]) < 1e-4)
    return False


SAMPLER_SKIP = Skip(_sampler_f32_ill_conditioned, SAMPLER_FLOAT32) | BF16_ILL_CONDITIONED


X0_MIN_ALPHA_BAR = {"float32": 1e-4, "bfloat16": 0.1}


def _x0_ill_conditioned(plan: Plan, dtype: str) -> bool:
    if dtype in X0_MIN_ALPHA_BAR:
        ab = np.cumprod(np.concatenate([[1.0], 1.0 - S.betas_of(plan["schedule"])]))
        times = plan["time"]["t"] if plan["time"]["per_sample"] else [plan["time"]["t"]]
        return bool(ab[list(times)].min() < X0_MIN_ALPHA_BAR[dtype])
    return False


X0_SKIP = Skip(_x0_ill_conditioned, X0_FLOAT32) | BF16_ILL_CONDITIONED


SAMPLER_F32 = Tol(
    rtol=1e-4, atol=1e-4,
    reason="float32 rounding of the state accumulates over up to 50 steps, each step dividing "
    "by √α_t (≥ 1) and, with a network, going through ~8 float32 layers",
)
X0_F32 = Tol(
    rtol=1e-4, atol=1e-4,
    reason="x̂0 divides x_t − √(1−ᾱ_t)·ε̂ by √ᾱ_t: near t = T of a cosine schedule (ᾱ_T ~ 1e-6) "
    "float32 rounding of the difference is amplified ~1/√ᾱ_T, relative to a result that is "
    "itself large",
)


# ---------------------------------------------------------------------------------------------
# The class-conditional network (spec.model) and classifier-free guidance (spec.guidance)

def cond_cfg(c: Plan, channels: int) -> Any:
    """A `cond_configs` draw as a CondFiLMNetConfig marker."""
    return Cfg("CondFiLMNetConfig", {
        "data_channels": channels, "num_classes": c["num_classes"],
        "hidden_channels": c["groups"] * c["per_group"],
        "residual_blocks": c["residual_blocks"], "embed_dim": 2 * c["half_embed"],
        "groups": c["groups"]})


cond_configs = film_configs.flatmap(lambda c: st.integers(1, 10).map(
    lambda k: {**c, "num_classes": k}))


@st.composite
def cond_plans(draw: Any) -> Plan:
    plan = draw(image_plans())
    plan["cfg"] = draw(cond_configs)
    plan["param_seed"] = draw(S.seeds)
    k = plan["cfg"]["num_classes"]
    plan["labels"] = draw(st.lists(st.integers(0, k), min_size=plan["B"], max_size=plan["B"]))
    plan["scale"] = draw(st.one_of(st.just(1.0), st.just(0.0), st.floats(-1.0, 5.0)))
    plan["prediction"] = draw(st.sampled_from(PREDICTION_NAMES))
    return plan


def cond_parts(p: Plan) -> tuple[Any, Any]:
    """The config and initial parameters of a `cond_plans` network, as markers."""
    c = p["shape"][0]
    cfg = cond_cfg(p["cfg"], c)
    params = spec.model.init_cond_film_params(spec.model.CondFiLMNetConfig(**cfg.fields),
                                              p["param_seed"])
    return cfg, Params(params)

