"""Records of `spec.model`: the layers, the configs, the initialisers and the ε-networks."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

import runtime.model
import spec.model
from conformance import strategies as S
from conformance.markers import Arr, Batched, Call, Cfg, Params, PerSample, Times
from conformance.plans import (
    MODEL_BF16,
    cond_cfg,
    cond_configs,
    cond_parts,
    cond_plans,
    config_fields,
    film_configs,
    image_plans,
    images,
    rng_array,
    small_arrays,
    time_arg,
)
from conformance.record import Plan, Records
from conformance.tolerances import Tol

RECORDS = Records()
record = RECORDS.add

record(
    name="append_time_channel", plan=image_plans(),
    build=lambda p: Call([Batched(images(p, 0)), time_arg(p)]),
)


@st.composite
def _conv_plans(draw: Any) -> Plan:
    plan = draw(image_plans())
    plan["out"] = draw(st.integers(1, 4))
    return plan


def _conv_call(p: Plan) -> Call:
    c = p["shape"][0]
    weight = rng_array(p, 1, (p["out"], c, 3, 3), 1 / np.sqrt(9 * c))
    return Call([Batched(images(p, 0)), Arr(weight), Arr(rng_array(p, 2, (p["out"],)))])


record(name="conv2d_same", plan=_conv_plans(), build=_conv_call)
record(name="relu", plan=small_arrays, batched=False,
       build=lambda p: Call([Arr(rng_array(p, 0, p["shape"]))]))
record(name="silu", plan=small_arrays, batched=False,
       build=lambda p: Call([Arr(rng_array(p, 0, p["shape"], 20.0))]))  # large |x| too


@st.composite
def _group_norm_plans(draw: Any) -> Plan:
    plan = draw(image_plans())
    plan["groups"] = draw(st.integers(1, 4))
    plan["per_group"] = draw(st.integers(1, 3))
    return plan


def _group_norm_call(p: Plan) -> Call:
    c = p["groups"] * p["per_group"]
    x = rng_array(p, 0, (p["B"], c, *p["shape"][1:]), 2.0) + 1.0
    return Call([Batched(x), Arr(rng_array(p, 1, (c,)) + 1.0), Arr(rng_array(p, 2, (c,))),
                 p["groups"]])


record(name="group_norm", plan=_group_norm_plans(), build=_group_norm_call)
record(
    name="linear",
    plan=st.fixed_dictionaries({"B": S.batch_sizes, "i": st.integers(1, 16), "o": st.integers(1, 16),
                                "seed": S.seeds}),
    build=lambda p: Call([Batched(rng_array(p, 0, (p["B"], p["i"]))),
                          Arr(rng_array(p, 1, (p["o"], p["i"]), 1 / np.sqrt(p["i"]))),
                          Arr(rng_array(p, 2, (p["o"],)))]),
)
record(
    name="sinusoidal_embedding",
    plan=st.fixed_dictionaries({"t": st.lists(S.continuous_times, min_size=1, max_size=3),
                                "dim": st.integers(1, 16).map(lambda h: 2 * h)}),
    build=lambda p: Call([Times(p["t"]), p["dim"]]),
    tolerances={"float32": Tol(0, 3e-4, reason="args = 1000·t·freqs reach 1000: one float32 "
                               "rounding of the argument (ulp(1000) ≈ 6e-5, a few of them) "
                               "passes straight into sin/cos")},
    errors=(("an odd dim", lambda: spec.model.sinusoidal_embedding(0.5, 3),
             lambda: runtime.model.sinusoidal_embedding(0.5, 3)),),
)



def _even(p: Plan) -> Plan:
    """The plan with its image height and width rounded down to even (4, 6 or 8)."""
    c, h, w = p["shape"]
    return {**p, "shape": [c, h - h % 2, w - w % 2]}


record(name="avg_pool2", plan=image_plans().map(_even),
       build=lambda p: Call([Batched(images(p, 0))]),
       errors=(("an odd height", lambda: spec.model.avg_pool2(np.zeros((1, 5, 4))),
                lambda: runtime.model.avg_pool2(torch.zeros(1, 5, 4))),))
record(name="upsample_nearest2", plan=image_plans(),
       build=lambda p: Call([Batched(images(p, 0))]))


conv_configs = st.fixed_dictionaries({"data_channels": st.integers(1, 3),
                                      "hidden_channels": st.integers(1, 16),
                                      "residual_blocks": st.integers(0, 3)})


def _film_cfg(p: Plan) -> Cfg:
    return Cfg("EpsFiLMNetConfig", {"data_channels": p["data_channels"],
                                    "hidden_channels": p["groups"] * p["per_group"],
                                    "residual_blocks": p["residual_blocks"],
                                    "embed_dim": 2 * p["half_embed"], "groups": p["groups"],
                                    "down_blocks": p["down_blocks"]})


record(
    name="EpsConvNetConfig", plan=conv_configs, batched=False,
    build=lambda p: Call([Cfg("EpsConvNetConfig", p)]), spec_fn=config_fields,
    runtime_fn=config_fields, dtypes=("float64",), dtypes_reason="a config: fields compared exactly",
    errors=(("data_channels = 0", lambda: spec.model.EpsConvNetConfig(0, 8),
             lambda: runtime.model.EpsConvNetConfig(0, 8)),),
)
record(
    name="EpsFiLMNetConfig", plan=film_configs, batched=False,
    build=lambda p: Call([_film_cfg(p)]), spec_fn=config_fields, runtime_fn=config_fields,
    dtypes=("float64",), dtypes_reason="a config: fields compared exactly",
    errors=(("groups not dividing hidden_channels",
             lambda: spec.model.EpsFiLMNetConfig(1, 6, 1, 8, 4),
             lambda: runtime.model.EpsFiLMNetConfig(1, 6, 1, 8, 4)),
            ("an odd embed_dim", lambda: spec.model.EpsFiLMNetConfig(1, 8, 1, 7, 4),
             lambda: runtime.model.EpsFiLMNetConfig(1, 8, 1, 7, 4))),
)
record(
    name="init_params", batched=False,
    plan=st.fixed_dictionaries({"cfg": conv_configs, "seed": S.seeds}),
    build=lambda p: Call([Cfg("EpsConvNetConfig", p["cfg"]), p["seed"]]),
    dtypes=("float64",), dtypes_reason="initial parameters are float64 by contract",
    tolerances={"float64": Tol(0, 0, reason="the same NumPy generator draws the same numbers: "
                               "exact")},
)
record(
    name="init_film_params", batched=False,
    plan=st.fixed_dictionaries({"cfg": film_configs, "seed": S.seeds}),
    build=lambda p: Call([_film_cfg(p["cfg"]), p["seed"]]),
    dtypes=("float64",), dtypes_reason="initial parameters are float64 by contract",
    tolerances={"float64": Tol(0, 0, reason="the same NumPy generator draws the same numbers: "
                               "exact")},
)


@st.composite
def _net_plans(draw: Any, kind: str) -> Plan:
    plan = draw(image_plans())
    plan["model"] = draw(S.network_models.map(lambda m: {**m, "kind": kind}))
    if kind == "film":  # the half-resolution stage too: 0, 1 or 2 blocks, on even images
        plan["model"]["down_blocks"] = draw(st.integers(0, 2))
        if plan["model"]["down_blocks"]:
            plan = _even(plan)
    return plan


def _net_call(p: Plan, with_cfg: bool = False) -> Call:
    c = p["shape"][0]
    params = Params(S.params_of(p["model"], c))
    head = [Cfg("EpsFiLMNetConfig", dataclasses.asdict(S.config_of(p["model"], c))), params] \
        if with_cfg else [params]
    return Call([*head, Batched(images(p, 0)), time_arg(p)])


record(
    name="eps_conv_net", plan=_net_plans("conv"), build=_net_call,
    spec_fn=lambda params, x, t: spec.model.eps_conv_net(params).eps(x, t),
    runtime_fn=lambda params, x, t: runtime.model.eps_conv_net(params)(x, t),
    tolerances={"bfloat16": MODEL_BF16},
)
record(
    name="eps_residual_conv_net", plan=_net_plans("residual"), build=_net_call,
    spec_fn=lambda params, x, t: spec.model.eps_residual_conv_net(params).eps(x, t),
    runtime_fn=lambda params, x, t: runtime.model.eps_residual_conv_net(params)(x, t),
    tolerances={"bfloat16": MODEL_BF16},
)
record(
    name="eps_film_net", plan=_net_plans("film"),
    build=lambda p: _net_call(p, with_cfg=True),
    spec_fn=lambda cfg, params, x, t: spec.model.eps_film_net(cfg, params).eps(x, t),
    runtime_fn=lambda cfg, params, x, t: runtime.model.eps_film_net(cfg, params)(x, t),
    tolerances={"bfloat16": MODEL_BF16},
)


def cond_call(p: Plan) -> Call:
    cfg, params = cond_parts(p)
    return Call([cfg, params, Batched(images(p, 0)), time_arg(p),
                 PerSample(p["labels"])])


record(
    name="CondFiLMNetConfig", batched=False,
    plan=cond_configs.map(lambda c: {"cfg": c}),
    build=lambda p: Call([cond_cfg(p["cfg"], p["cfg"]["data_channels"])]),
    spec_fn=config_fields, runtime_fn=config_fields, dtypes=("float64",),
    dtypes_reason="a config: fields compared exactly",
    errors=(("num_classes = 0", lambda: spec.model.CondFiLMNetConfig(1, 0),
             lambda: runtime.model.CondFiLMNetConfig(1, 0)),),
)
record(
    name="init_cond_film_params", batched=False,
    plan=st.fixed_dictionaries({"cfg": cond_configs, "seed": S.seeds}),
    build=lambda p: Call([cond_cfg(p["cfg"], p["cfg"]["data_channels"]), p["seed"]]),
    dtypes=("float64",), dtypes_reason="initial parameters are float64 by contract",
    tolerances={"float64": Tol(0, 0, reason="the same NumPy generator draws the same "
                                 "numbers: exact")},
)
record(
    name="cond_film_net", plan=cond_plans(), build=cond_call,
    spec_fn=lambda cfg, params, x, t, y: spec.model.cond_film_net(cfg, params).eps(x, t, y),
    runtime_fn=lambda cfg, params, x, t, y: runtime.model.cond_film_net(cfg, params)(x, t, y),
    tolerances={"bfloat16": MODEL_BF16},
)
