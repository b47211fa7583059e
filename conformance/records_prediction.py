"""Registry records for prediction targets, timestep grids, zero terminal SNR and min-SNR weights
(`spec.prediction`, and the additions to `spec.schedule` and `spec.loss`).

`prediction_records()` is called once by `conformance.registry` (after its own helpers exist) and
returns the records; they follow the conventions of that module.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

import runtime.guidance
import runtime.model
import runtime.prediction
import runtime.schedule
import spec.guidance
import spec.model
import spec.prediction
import spec.schedule
from conformance import strategies as S
from conformance.harness import Arr, Batched, Call, Times, batch_size
from conformance.tolerances import Skip

Plan = dict[str, Any]
PREDICTION_NAMES = ["eps", "x0", "v"]


def _per_sample(out: Any, call: Call) -> Any:
    """A runtime value that is 0-d for an int t, as (B,) like the spec's per-sample stack."""
    return np.broadcast_to(np.reshape(out, -1), (batch_size(call),)).copy()


def _times(p: Plan) -> Any:
    """The plan's time as one per sample (a record whose only batched argument is t)."""
    from conformance.harness import PerSample

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
    from conformance import registry as R

    floor = R.X0_MIN_ALPHA_BAR[dtype]
    if prediction == "eps":
        return bool(ab.min() < floor)
    if prediction == "x0":
        return bool((1.0 - ab).min() < floor)
    return False


def prediction_records() -> list[Any]:
    from conformance import registry as R

    out: list[Any] = []

    def record(**kwargs: Any) -> None:
        out.append(R.Record(**kwargs))

    # --- constants ---------------------------------------------------------------------------
    record(
        name="PREDICTIONS", module="prediction", plan=st.just({}), build=lambda p: Call([]),
        spec_fn=lambda: spec.prediction.PREDICTIONS,
        runtime_fn=lambda: runtime.prediction.PREDICTIONS, batched=False,
        dtypes=("float64",), dtypes_reason="a tuple of names: compared exactly, dtype-free",
    )
    record(
        name="SPACINGS", module="schedule", plan=st.just({}), build=lambda p: Call([]),
        spec_fn=lambda: spec.schedule.SPACINGS, runtime_fn=lambda: runtime.schedule.SPACINGS,
        batched=False, dtypes=("float64",),
        dtypes_reason="a tuple of names: compared exactly, dtype-free",
    )
    record(
        name="Denoiser", module="prediction",
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
        return Call([Times(p["ab"]), Batched(R._images(p, 0)), Batched(R._images(p, 1)),
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
        name="x0_from_output", module="prediction", plan=output_plans(), build=output_call,
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
        name="eps_from_output", module="prediction", plan=output_plans(), build=output_call,
        skip=output_skip,
    )

    # --- conversions on a schedule -----------------------------------------------------------

    @st.composite
    def sched_plans(draw: Any, model: bool = False) -> Plan:
        plan = draw(R.batch_plans(model=model))
        plan["prediction"] = _not_eps_at_zero_snr(plan, draw(st.sampled_from(PREDICTION_NAMES)))
        plan["gamma"] = draw(st.one_of(st.none(), st.just(5.0), st.just(math.inf),
                                       st.floats(0.1, 20.0)))
        return plan

    def sched_call(p: Plan) -> Call:
        return Call([R._sched(p), Batched(R._images(p, 0)), Batched(R._images(p, 1)),
                     R._t(p["time"]), p["prediction"]])

    def sched_ill_conditioned(p: Plan, dtype: str) -> bool:
        if dtype == "float64":
            return False
        ab = np.cumprod(np.concatenate([[1.0], 1.0 - S.betas_of(p["schedule"])]))
        times = p["time"]["t"] if p["time"]["per_sample"] else [p["time"]["t"]]
        return _ill_conditioned(ab[list(times)], p["prediction"], dtype)

    sched_skip = Skip(sched_ill_conditioned, output_skip.reason) | R.BF16_ILL_CONDITIONED

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
        name="predict_x0", module="prediction", plan=sched_plans(), build=sched_call,
        skip=sched_skip, tolerances={"float32": R.X0_F32},
        errors=(("eps at t = T of a zero-terminal-SNR schedule (int t)",
                 lambda: zero_snr_eps(True, False), lambda: zero_snr_eps(False, False)),
                ("eps at t = T of a zero-terminal-SNR schedule (per-sample t)",
                 lambda: zero_snr_eps(True, False), lambda: zero_snr_eps(False, True))),
    )
    record(
        name="predict_eps", module="prediction", plan=sched_plans(), build=sched_call,
        skip=sched_skip, tolerances={"float32": R.X0_F32},
    )
    record(
        name="v_target", module="prediction", plan=R.batch_plans(),
        build=lambda p: Call([R._sched(p), Batched(R._images(p, 0)), R._t(p["time"]),
                              Batched(R._images(p, 1))]),
    )
    record(
        name="prediction_target", module="prediction", plan=sched_plans(),
        build=lambda p: Call([R._sched(p), Batched(R._images(p, 0)), R._t(p["time"]),
                              Batched(R._images(p, 1)), p["prediction"]]),
    )
    def x0_model_at_zero(p: Plan, dtype: str) -> bool:
        prediction = _not_eps_at_zero_snr(p, p["model"]["prediction"])
        times = p["time"]["t"] if p["time"]["per_sample"] else [p["time"]["t"]]
        return prediction == "x0" and min(times) == 0

    denoise_skip = Skip(
        x0_model_at_zero,
        "ε̂ of an x0-model at t = 0 divides x_t − x̂0 by √(1 − ᾱ_0) + EPS = 1e-12 (safe_div's "
        "guard; no sampler asks for it): a 1-ulp difference between the two sides' x̂0 becomes "
        "~1e-4",
    ) | R.X0_SKIP

    record(
        skip=denoise_skip,
        name="denoise", module="prediction", plan=R.batch_plans(model=True),
        build=lambda p: Call([R._sched(p), R._model(p), Batched(R._images(p, 0)),
                              R._t(p["time"])]),
        tolerances={"float32": R.X0_F32, "bfloat16": R.MODEL_BF16},
    )

    # --- SNR and min-SNR-γ ---------------------------------------------------------------------
    record(
        name="snr", module="prediction", plan=R.batch_plans(), post=_per_sample,
        build=lambda p: Call([R._sched(p), _times(p)]),
        dtypes=("float64",),
        dtypes_reason="read from the schedule's float64 table whatever the data dtype",
    )
    record(
        name="min_snr_weight", module="prediction",
        plan=sched_plans().filter(lambda p: p["gamma"] is not None), post=_per_sample,
        build=lambda p: Call([R._sched(p), _times(p), p["gamma"], p["prediction"]]),
        dtypes=("float64",),
        dtypes_reason="computed from the schedule's float64 SNR table whatever the data dtype",
        errors=(("gamma = 0",
                 lambda: spec.prediction.min_snr_weight(
                     spec.schedule.VPSchedule(np.array([0.1, 0.2])), 1, 0.0, "v"),
                 lambda: runtime.prediction.min_snr_weight(
                     runtime.schedule.Schedule([0.1, 0.2]), 1, 0.0, "v")),),
    )

    @st.composite
    def loss_plans(draw: Any) -> Plan:
        plan = draw(R.batch_plans(model=True))
        plan["gamma"] = draw(st.one_of(st.none(), st.just(5.0), st.just(math.inf),
                                       st.floats(0.1, 20.0)))
        return plan

    record(
        skip=R.BF16_ILL_CONDITIONED,
        name="prediction_loss", module="loss", plan=loss_plans(), reduce="mean",
        build=lambda p: Call([R._sched(p), R._model(p), Batched(R._images(p, 0)),
                              R._t(p["time"]), Batched(R._images(p, 1)), p["gamma"]]),
        tolerances={"bfloat16": R.MODEL_BF16},
    )

    # --- schedules and grids ---------------------------------------------------------------------
    record(
        name="rescale_zero_terminal_snr", module="schedule", batched=False,
        plan=st.fixed_dictionaries({"T": st.integers(2, 1000), "a": st.floats(1e-4, 0.02),
                                    "b": st.floats(0.02, 0.5),
                                    "kind": st.sampled_from(["linear", "cosine"])}),
        build=lambda p: Call([Arr(
            spec.schedule.linear_betas(p["T"], p["a"], p["b"]) if p["kind"] == "linear"
            else spec.schedule.cosine_betas(p["T"]))]),
        dtypes=("float64",), dtypes_reason="returns float64 by contract, whatever the caller uses",
        errors=(("T = 1", lambda: spec.schedule.rescale_zero_terminal_snr(np.array([0.1])),
                 lambda: runtime.schedule.rescale_zero_terminal_snr(torch.tensor([0.1]))),),
    )
    record(
        name="timestep_grid", module="schedule", batched=False,
        plan=st.integers(1, 1000).flatmap(lambda T: st.fixed_dictionaries(
            {"T": st.just(T), "n": st.integers(1, T),
             "spacing": st.sampled_from(list(spec.schedule.SPACINGS))})),
        build=lambda p: Call([p["T"], p["n"], p["spacing"]]),
        dtypes=("float64",), dtypes_reason="integer-valued: compared exactly",
        errors=(("n = 0", lambda: spec.schedule.timestep_grid(10, 0, "trailing"),
                 lambda: runtime.schedule.timestep_grid(10, 0, "trailing")),
                ("n > T", lambda: spec.schedule.timestep_grid(10, 11, "leading"),
                 lambda: runtime.schedule.timestep_grid(10, 11, "leading")),
                ("an unknown spacing", lambda: spec.schedule.timestep_grid(10, 2, "uniform"),
                 lambda: runtime.schedule.timestep_grid(10, 2, "uniform"))),
    )

    # --- the class-conditional net and classifier-free guidance ----------------------------------

    def cond_cfg(c: Plan, channels: int) -> Any:
        from conformance.harness import Cfg

        return Cfg("CondFiLMNetConfig", {
            "data_channels": channels, "num_classes": c["num_classes"],
            "hidden_channels": c["groups"] * c["per_group"],
            "residual_blocks": c["residual_blocks"], "embed_dim": 2 * c["half_embed"],
            "groups": c["groups"]})

    cond_configs = R.film_configs.flatmap(lambda c: st.integers(1, 10).map(
        lambda k: {**c, "num_classes": k}))

    @st.composite
    def cond_plans(draw: Any) -> Plan:
        plan = draw(R._image_plans())
        plan["cfg"] = draw(cond_configs)
        plan["param_seed"] = draw(S.seeds)
        k = plan["cfg"]["num_classes"]
        plan["labels"] = draw(st.lists(st.integers(0, k), min_size=plan["B"], max_size=plan["B"]))
        plan["scale"] = draw(st.one_of(st.just(1.0), st.just(0.0), st.floats(-1.0, 5.0)))
        plan["prediction"] = draw(st.sampled_from(PREDICTION_NAMES))
        return plan

    def cond_parts(p: Plan) -> tuple[Any, Any]:
        from conformance.harness import Params

        c = p["shape"][0]
        cfg = cond_cfg(p["cfg"], c)
        params = spec.model.init_cond_film_params(spec.model.CondFiLMNetConfig(**cfg.fields),
                                                  p["param_seed"])
        return cfg, Params(params)

    def cond_call(p: Plan) -> Call:
        from conformance.harness import PerSample

        cfg, params = cond_parts(p)
        return Call([cfg, params, Batched(R._images(p, 0)), R._time_arg(p),
                     PerSample(p["labels"])])

    def guided_call(p: Plan) -> Call:
        from conformance.harness import PerSample

        cfg, params = cond_parts(p)
        return Call([cfg, params, PerSample(p["labels"]), p["scale"], p["prediction"],
                     Batched(R._images(p, 0)), R._time_arg(p)])

    record(
        name="CondFiLMNetConfig", module="model", batched=False,
        plan=cond_configs.map(lambda c: {"cfg": c}),
        build=lambda p: Call([cond_cfg(p["cfg"], p["cfg"]["data_channels"])]),
        spec_fn=R._config_fields, runtime_fn=R._config_fields, dtypes=("float64",),
        dtypes_reason="a config: fields compared exactly",
        errors=(("num_classes = 0", lambda: spec.model.CondFiLMNetConfig(1, 0),
                 lambda: runtime.model.CondFiLMNetConfig(1, 0)),),
    )
    record(
        name="init_cond_film_params", module="model", batched=False,
        plan=st.fixed_dictionaries({"cfg": cond_configs, "seed": S.seeds}),
        build=lambda p: Call([cond_cfg(p["cfg"], p["cfg"]["data_channels"]), p["seed"]]),
        dtypes=("float64",), dtypes_reason="initial parameters are float64 by contract",
        tolerances={"float64": R.Tol(0, 0, reason="the same NumPy generator draws the same "
                                     "numbers: exact")},
    )
    record(
        name="cond_film_net", module="model", plan=cond_plans(), build=cond_call,
        spec_fn=lambda cfg, params, x, t, y: spec.model.cond_film_net(cfg, params).eps(x, t, y),
        runtime_fn=lambda cfg, params, x, t, y: runtime.model.cond_film_net(cfg, params)(x, t, y),
        tolerances={"bfloat16": R.MODEL_BF16},
    )
    record(
        name="guided_output", module="guidance", batched=False,
        plan=st.fixed_dictionaries({"shape": S.array_shapes, "seed": S.seeds,
                                    "scale": st.one_of(st.just(1.0), st.floats(-2.0, 8.0))}),
        build=lambda p: Call([Arr(R._rng_array(p, 0, p["shape"])),
                              Arr(R._rng_array(p, 1, p["shape"])), p["scale"]]),
        errors=(("different shapes",
                 lambda: spec.guidance.guided_output(np.zeros(2), np.zeros(3), 2.0),
                 lambda: runtime.guidance.guided_output(torch.zeros(2), torch.zeros(3), 2.0)),),
    )
    record(
        name="GuidedModel", module="guidance", plan=cond_plans(), build=guided_call,
        spec_fn=lambda cfg, params, y, s, pred, x, t: spec.guidance.GuidedModel(
            spec.model.cond_film_net(cfg, params), y, s, pred).output(x, t),
        runtime_fn=lambda cfg, params, y, s, pred, x, t: runtime.guidance.GuidedModel(
            runtime.model.cond_film_net(cfg, params), y, s, pred)(x, t),
        tolerances={"bfloat16": R.Tol(1.5e-1, 1.5e-1, reason=R.MODEL_BF16.reason + "; the guided "
                                      "mix multiplies the difference of two such outputs by s "
                                      "up to 5")},
    )
    return out
