"""Records of `spec.likelihood`: the KL, the discretised Gaussian likelihood and the variational
bound.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from conformance import strategies as S
from conformance.markers import Arr, Batched, Call
from conformance.plans import (
    BF16_ILL_CONDITIONED,
    batch_plans,
    images,
    model_of,
    rng_array,
    sched_of,
    small_arrays,
)
from conformance.record import Plan, Records
from conformance.tolerances import Skip, Tol
from spec.likelihood import VLB_CONVENTIONS as SPEC_VLB_CONVENTIONS

VLB_CONVENTIONS = sorted(SPEC_VLB_CONVENTIONS)

RECORDS = Records()
record = RECORDS.add

record(
    name="normal_kl", plan=small_arrays, batched=False,
    build=lambda p: Call([Arr(rng_array(p, 0, p["shape"])),
                          Arr(np.clip(rng_array(p, 1, p["shape"], 2.0), -5, 2)),
                          Arr(rng_array(p, 2, p["shape"])),
                          Arr(np.clip(rng_array(p, 3, p["shape"], 2.0), -5, 2))]),
)
record(
    name="standard_normal_cdf", plan=small_arrays, batched=False,
    build=lambda p: Call([Arr(rng_array(p, 0, p["shape"], 4.0))]),
)


DGLL_TAILS = (
    "p = Φ(b) − Φ(a) with both CDF values near 0 or near 1: a 1-ulp (1e-16) difference between "
    "math.erf (spec) and torch.erf is divided by p before the log, and p goes down to the 1e-12 "
    "floor, so two correct float64 implementations differ by up to ~1e-4 in log p (rarely: "
    "only elements with p in [1e-12, 1e-8])"
)
DGLL_F64 = Tol(rtol=1e-12, atol=1e-4, reason=DGLL_TAILS)


NOT_IN_BF16 = Skip(
    lambda p, dtype: dtype == "bfloat16" and p["bins"] == 256,
    "bfloat16 cannot hold the 256-bin grid 2k/255 − 1 (8 significant bits), so such data is "
    "off the grid by construction; 256 bins are checked in float64 and float32",
)


@st.composite
def _dgll_plans(draw: Any) -> Plan:
    return {"shape": draw(S.array_shapes), "seed": draw(S.seeds), "bins": draw(S.bins_counts),
            "log_scale": draw(st.floats(-6.0, 0.0)), "spread": draw(st.floats(0.0, 0.5))}


record(
    name="discretized_gaussian_log_likelihood", plan=_dgll_plans(),
    batched=False,
    build=lambda p: Call([Arr(x := S.binned_images(p["seed"], p["shape"], p["bins"])),
                          Arr(x + rng_array(p, 1, p["shape"], p["spread"])), p["log_scale"],
                          p["bins"]]),
    tolerances={"float64": DGLL_F64, "float32": Tol(2e-5, 1e-4, reason=DGLL_TAILS)},
    skip=NOT_IN_BF16,
)


VLB_SKIP = NOT_IN_BF16 | BF16_ILL_CONDITIONED


@st.composite
def _vlb_plans(draw: Any) -> Plan:
    """Every convention of the bound; "reference-code" and "fixed-large" need T >= 2 (β̃_2),
    so a T = 1 schedule is drawn with "beta-1" only (test_bound_conventions runs each convention
    in every dtype on one fixed plan)."""
    plan = draw(batch_plans(max_T=10, min_beta=1e-4, model=True))
    plan["bins"] = draw(S.bins_counts)
    plan["convention"] = ("beta-1" if plan["schedule"]["T"] < 2
                          else draw(st.sampled_from(VLB_CONVENTIONS)))
    return plan


def _vlb_call(p: Plan) -> Call:
    x0 = S.binned_images(p["seed"], (p["B"], *p["shape"]), p["bins"])
    noise = images(p, 1, (p["schedule"]["T"],))
    return Call([sched_of(p), model_of(p), Batched(x0), Batched(noise, axis=1), p["bins"]],
                {"convention": p["convention"]})


VLB_F32 = Tol(
    rtol=1e-4, atol=1e-3,
    reason="each term is a sum over up to 3·8·8 elements of KLs whose means differ by "
    "float32-rounded x̂0 (amplified by 1/√ᾱ_t) and divided by β̃_t",
)
record(
    name="vlb_terms", plan=_vlb_plans(), build=_vlb_call, skip=VLB_SKIP,
    tolerances={"float64": DGLL_F64, "float32": VLB_F32},
    max_examples=10,
)
record(
    name="bits_per_dim", plan=_vlb_plans(), build=_vlb_call, skip=VLB_SKIP,
    tolerances={"float64": Tol(1e-12, 1e-6, reason=DGLL_TAILS + "; divided by (elements·ln 2)"),
                "float32": VLB_F32},
    max_examples=10,
)
