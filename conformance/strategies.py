"""Hypothesis strategies for conformance inputs: named nouns, each with its builder.

A strategy draws a *plan*: a small JSON-able value (ints, floats, strings, lists, dicts). The
matching builder turns a plan into arrays, deterministically (NumPy `default_rng(seed)`), so a
failing example is reproduced from its printed plan alone (`python -m conformance …`).
Sizes are kept small on purpose (images 4×4 to 8×8, hidden width 8, T ≤ 50): the suite must run
in under two minutes on two cores. The meta-tests in `test_strategies.py` check each noun.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

import spec.model as spec_model
import spec.prediction as spec_prediction
import spec.schedule as spec_schedule
from conformance.gaussian import GaussianData

Plan = dict[str, Any]

HIDDEN = 8
"""Hidden width of every test network (small: speed; ≥ 8: GroupNorm with up to 8 groups)."""
EMBED = 8
"""Time-embedding width of the FiLM test network."""

# ---------------------------------------------------------------------------------------------
# Scalars

seeds = st.integers(0, 2**31 - 1)
"""Seeds for NumPy's default_rng: every array of a plan is drawn from one."""

batch_sizes = st.integers(1, 3)
"""Batch sizes B (1 is the edge case of a batch axis of length one)."""

image_shapes = st.tuples(st.integers(1, 3), st.integers(4, 8), st.integers(4, 8)).map(list)
"""Image shapes [C, H, W]."""

array_shapes = st.lists(st.integers(1, 5), min_size=1, max_size=3)
"""Shapes of elementwise test arrays (1 to 3 axes)."""

etas = st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0))
"""DDIM η ∈ [0, 1] (0: deterministic; 1 on adjacent steps: DDPM's variance)."""

continuous_times = st.one_of(st.just(0.0), st.just(1.0), st.floats(0.01, 1.0))
"""PF ODE times t ∈ {0} ∪ [0.01, 1]. t = 0 is σ(0) = 0, safe_div's case. (0, 0.01) is left out:
there 1 − exp(−β0·t − …) cancels, so a 1-ulp difference between math.exp (spec) and torch.exp
becomes a relative error of ~1e-16/(β0·t), beyond float64's 1e-12; no sampler evaluates there
with fewer than 100 steps."""

small_continuous_times = st.floats(1e-3, 0.01)
"""PF ODE times t ∈ [0.001, 0.01], where 1 − ᾱ(t) is 2e-5..0.2: there a coefficient computed in
float32 instead of float64 loses 3 to 0 digits to cancellation, which the float32 and bfloat16
rows must see. Checked in those rows only (see `continuous_times` for float64)."""

pf_schedules = st.fixed_dictionaries(
    {"beta0": st.floats(0.01, 1.0), "beta1": st.floats(1.0, 20.0)}
)
"""Continuous linear VP schedules (β0, β1); Song et al. use (0.1, 20)."""

bins_counts = st.sampled_from([3, 5, 9, 17, 256])
"""Numbers of data bins (17: the digits; 256: 8-bit images)."""


# ---------------------------------------------------------------------------------------------
# Schedules


def beta_schedules(max_T: int = 50, min_beta: float = 0.0) -> st.SearchStrategy[Plan]:
    """Discrete schedules: linear (DDPM), cosine (Nichol & Dhariwal), linear rescaled to zero
    terminal SNR (Lin et al. 2023: β_T = 1, ᾱ_T = 0) or random betas.
    `min_beta` > 0 keeps every β̃_t (t ≥ 2) positive, as the likelihood's log β̃ needs."""
    T = st.integers(1, max_T)
    return st.one_of(
        st.fixed_dictionaries(
            {
                "kind": st.just("linear"),
                "T": T,
                "beta_start": st.floats(min_beta, 0.01),
                "beta_end": st.floats(max(min_beta, 0.01), 0.3),
            }
        ),
        st.fixed_dictionaries(
            {
                "kind": st.just("cosine"),
                "T": T,
                "s": st.floats(0.001, 0.02),
                "max_beta": st.sampled_from([0.999, 0.5]),
            }
        ),
        st.fixed_dictionaries(
            {
                "kind": st.just("zero_snr"),
                "T": st.integers(2, max(2, max_T)),
                # + 1e-9: the rescaled β_1 = 1 − (√ᾱ_1)² is β_1 only up to rounding
                "beta_start": st.floats(max(min_beta, 1e-4) + 1e-9, 0.01),
                "beta_end": st.floats(0.01, 0.3),
            }
        ),
        st.fixed_dictionaries(
            {
                "kind": st.just("random"),
                "T": T,
                "low": st.just(min_beta),
                "high": st.floats(0.02, 0.9),
                "seed": seeds,
            }
        ),
    )


def betas_of(plan: Plan) -> np.ndarray:
    """The betas (T,) float64 of a schedule plan (linear and cosine via the spec's functions)."""
    if plan["kind"] == "linear":
        return spec_schedule.linear_betas(plan["T"], plan["beta_start"], plan["beta_end"])
    if plan["kind"] == "cosine":
        return spec_schedule.cosine_betas(plan["T"], plan["s"], plan["max_beta"])
    if plan["kind"] == "zero_snr":
        base = spec_schedule.linear_betas(plan["T"], plan["beta_start"], plan["beta_end"])
        return spec_schedule.rescale_zero_terminal_snr(base)
    rng = np.random.default_rng(plan["seed"])
    return rng.uniform(plan["low"], plan["high"], size=plan["T"]).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Time indices and grids


@st.composite
def time_indices(draw: Any, T: int, B: int, low: int = 0, high: int | None = None) -> Plan:
    """A time index for a batch of B: one int shared by the batch, or one per sample.
    Plan: {"per_sample": bool, "t": int or [int]*B}, each in low..high (default T)."""
    high = T if high is None else high
    t = st.integers(low, high)
    if draw(st.booleans()):
        return {"per_sample": True, "t": draw(st.lists(t, min_size=B, max_size=B))}
    return {"per_sample": False, "t": draw(t)}


@st.composite
def timestep_grids(draw: Any, T: int) -> list[int]:
    """DDIM grids: strictly decreasing ints, first in 1..T, last 0 (uniform or random)."""
    if draw(st.booleans()):
        n = draw(st.integers(1, T))
        return [(T * (n - i) + n // 2) // n for i in range(n + 1)]
    first = draw(st.integers(1, T))
    inner = draw(st.sets(st.integers(1, max(1, first - 1)), max_size=6)) if first > 1 else set()
    inner = {s for s in inner if 0 < s < first}
    return [first, *sorted(inner, reverse=True), 0]


# ---------------------------------------------------------------------------------------------
# Arrays


def gaussian_array(seed: int, shape: list[int] | tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    """N(0, scale²) float64 array of `shape` from default_rng(seed)."""
    return scale * np.random.default_rng(seed).standard_normal(tuple(shape))


def binned_images(seed: int, shape: list[int] | tuple[int, ...], bins: int) -> np.ndarray:
    """Images on the data grid 2k/(bins − 1) − 1, k uniform in 0..bins−1."""
    k = np.random.default_rng(seed).integers(0, bins, size=tuple(shape))
    return 2.0 * k / (bins - 1) - 1.0


# ---------------------------------------------------------------------------------------------
# ε-models


eps_models = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["gauss", "residual", "film", "conv"]),
        "seed": seeds,
        "blocks": st.integers(0, 2),
        "groups": st.sampled_from([1, 2, 4, 8]),
        "prediction": st.sampled_from(list(spec_prediction.PREDICTIONS)),
    }
)
"""Models: the closed-form Gaussian denoiser, or one of the three networks with spec-initialised
parameters (one dict drives both sides), declared to predict ε, x0 or v (the Gaussian denoiser
then outputs the optimal x0 or v)."""

network_models = eps_models.filter(lambda m: m["kind"] != "gauss")
"""ε-models that are networks (for the model records)."""


def config_of(plan: Plan, channels: int) -> Any:
    """The spec config of a network plan."""
    if plan["kind"] == "film":
        return spec_model.EpsFiLMNetConfig(channels, HIDDEN, plan["blocks"], EMBED, plan["groups"],
                                           plan.get("down_blocks", 0))
    blocks = 0 if plan["kind"] == "conv" else plan["blocks"]
    return spec_model.EpsConvNetConfig(channels, HIDDEN, blocks)


def params_of(plan: Plan, channels: int) -> dict[str, np.ndarray]:
    """The spec-initialised parameters of a network plan (float64)."""
    cfg = config_of(plan, channels)
    if plan["kind"] == "film":
        return spec_model.init_film_params(cfg, plan["seed"])
    return spec_model.init_params(cfg, plan["seed"])


def gaussian_data_of(plan: Plan, channels: int, schedule: tuple) -> GaussianData:
    """μ ∈ [−0.5, 0.5], s² ∈ [0.05, 1] per channel, for a Gaussian-denoiser plan."""
    rng = np.random.default_rng(plan["seed"])
    mu = rng.uniform(-0.5, 0.5, size=(channels, 1, 1))
    var = rng.uniform(0.05, 1.0, size=(channels, 1, 1))
    return GaussianData(mu, var, schedule, plan.get("prediction", "eps"))
