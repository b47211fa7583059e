"""TorchLean's names, its step-index signature, the errata of its Lean spec, and the two
dynamical-system adapters of its design that no sampler uses.

TorchLean (a Lean specification with a PyTorch runtime) is where this project started. Its names
live on here as aliases, so that its design card reads against this code (`qSample`,
`epsPredLoss`, `ddimStepSystem`, … are importable from `spec`); the paper modules use the
papers' names and the one time convention of `spec/__init__.py`.

The step index k. TorchLean's step functions take k ∈ {0..T−1}, the step that maps x_{k+1} to
x_k, i.e. the step at time t = k + 1. Only the aliases below keep that signature (`ddpmStep`,
`ddimStep`, `ddimStepSystem`); every function of `spec` takes the time t. `ddpmSample` and
`pfOdeSampleEuler` keep TorchLean's gridless signature and build the grid that the samplers of
`spec` take (every time T..0; `pf_ode_uniform_grid`).

Errata of TorchLean's Lean spec, both settled in closed form (tests/test_spec_golden.py,
docs/errata.md) for data ~ N(μ, s²I), where the exact predictor is
ε*(x, t) = √(1 − ᾱ(t))·(x − √ᾱ(t)·μ)/(ᾱ(t)·s² + 1 − ᾱ(t)):

1. `pfOdeRhs` computes −½β·x + β/√(1 − ᾱ)·ε̂, i.e. it doubles the score term. With ε*, Euler on
   that right-hand side contracts N(0, I) towards a point: with s = 0.5, μ = 0.3 and 100 steps
   the output std is about 0.001 (the test asserts < 0.05·s), while Song et al.'s drift
   (`spec.pf_ode.pf_ode_rhs`, with ½) keeps the std at 0.5 within sampling error. In closed
   form, the exact flow's linear coefficient −½β + ½β/v (v = ᾱs² + 1 − ᾱ, the variance of x_t)
   becomes −½β + β/v, which no longer transports N(0, 1) to N(μ, s²).
2. `pfOdeSampleEuler`'s recursion evaluates the drift at t = 1/n, 2/n, …, 1 (its docstring
   promises t = 1, 1 − 1/n, …, 1/n). Integrating from t = 1 down to 0 with the drift taken at the
   mirrored times shifts the mean away from μ (about 0.06 for μ = 0.3, s = 0.5, 100 steps; the
   test asserts a shift wider than the whole tolerance that the correct order meets).
   `spec.pf_ode.pf_ode_sample_euler` evaluates at t_i = 1 − i/n, i = 0..n−1, as the docstring
   says.

`pfOdeRhs` and `pfOdeSampleEuler` below are therefore the corrected functions under
TorchLean's names, not translations of the errors.
"""

import numpy as np
from jaxtyping import Float

from spec.core import Index, Scalar, check, in_range, mse, safe_div, sqrt_nonneg
from spec.data import noised_sample_from_eps, to_diffusion_range
from spec.ddim import ddim_prev, ddim_sample, ddim_step
from spec.ddpm import ddpm_sample, ddpm_step, x0_pred
from spec.dynamics import DynamicalSystem
from spec.forward import q_sample
from spec.loss import eps_pred_loss
from spec.model import eps_conv_net, eps_residual_conv_net
from spec.pf_ode import (
    VPContinuousSchedule,
    euler_step,
    in_unit_interval,
    pf_ode_rhs,
    pf_ode_sample_euler,
    pf_ode_uniform_grid,
)
from spec.prediction import AnyModel
from spec.schedule import VPSchedule, time_of_index

__all__ = ["ddim_step_system", "pf_ode_euler_system"]


def ddim_step_system(sched: VPSchedule, model: AnyModel, t: Index) -> DynamicalSystem:
    """The deterministic DDIM step at time t as a dynamical system (TorchLean's design; DDIM
    Eq. 12 with η = 0).

    Formula: DynamicalSystem(x ↦ ddim_step(sched, model, t, x)), t ∈ {1..T}.
    Shapes: state (*shape) -> (*shape).
    """
    t = check(in_range("t", t, 1, sched.T))
    return DynamicalSystem(lambda x: ddim_step(sched, model, t, x))


def pf_ode_euler_system(
    sch: VPContinuousSchedule, model: AnyModel, t: Scalar, dt: Scalar
) -> DynamicalSystem:
    """One Euler step of the PF ODE at time t as a dynamical system (TorchLean's design; Song
    et al. 2021, Eq. 13).

    Formula: DynamicalSystem(x ↦ x + dt·pf_ode_rhs(sch, model, x, t)), dt signed, t ∈ [0, 1].
    Shapes: state (*shape) -> (*shape).
    """
    check(in_unit_interval(t))
    return DynamicalSystem(
        lambda x: euler_step(lambda y, s: pf_ode_rhs(sch, model, y, s), x, t, dt)
    )


# --- the aliases that keep TorchLean's step index k (the step at time t = k + 1) -------------


def ddpmStep(  # noqa: N802 (TorchLean's name)
    sched: VPSchedule,
    model: AnyModel,
    k: Index,
    x_t: Float[np.ndarray, "*shape"],
    z: Float[np.ndarray, "..."],
) -> Float[np.ndarray, "*shape"]:
    """TorchLean `ddpmStep`: the ancestral step with index k ∈ {0..T−1}, x_{k+1} → x_k.

    Formula: ddpmStep(k) = ddpm_step(sched, model, k + 1, x_t, z) (DDPM Algorithm 2).
    Shapes: x_t (*shape), z (*shape) -> (*shape).
    """
    k = check(in_range("k", k, 0, sched.T - 1))
    return ddpm_step(sched, model, k + 1, x_t, z)


def ddimStep(  # noqa: N802 (TorchLean's name)
    sched: VPSchedule, model: AnyModel, k: Index, x_t: Float[np.ndarray, "*shape"]
) -> Float[np.ndarray, "*shape"]:
    """TorchLean `ddimStep`: the deterministic DDIM step with index k ∈ {0..T−1}, x_{k+1} → x_k.

    Formula: ddimStep(k) = ddim_step(sched, model, k + 1, x_t) (DDIM Eq. 12, η = 0).
    Shapes: x_t (*shape) -> (*shape).
    """
    k = check(in_range("k", k, 0, sched.T - 1))
    return ddim_step(sched, model, k + 1, x_t)


def ddimStepSystem(sched: VPSchedule, model: AnyModel, k: Index) -> DynamicalSystem:  # noqa: N802
    """TorchLean `ddimStepSystem`: the DDIM step with index k ∈ {0..T−1} as a dynamical system.

    Formula: ddimStepSystem(k) = ddim_step_system(sched, model, k + 1).
    Shapes: state (*shape) -> (*shape).
    """
    k = check(in_range("k", k, 0, sched.T - 1))
    return ddim_step_system(sched, model, k + 1)


def ddpmSample(  # noqa: N802 (TorchLean's name)
    sched: VPSchedule,
    model: AnyModel,
    x_T: Float[np.ndarray, "*shape"],
    noise: Float[np.ndarray, "..."],
) -> Float[np.ndarray, "*shape"]:
    """TorchLean `ddpmSample`: ancestral sampling over every time, without a grid argument.

    Formula: ddpmSample(x_T, noise) = ddpm_sample(sched, model, x_T, [T, …, 0], noise)
    (DDPM Algorithm 2; noise[t − 1] at time t).
    Shapes: x_T (*shape), noise (T, *shape) -> (*shape).
    """
    return ddpm_sample(sched, model, x_T, list(range(sched.T, -1, -1)), noise)


def pfOdeSampleEuler(  # noqa: N802 (TorchLean's name)
    sch: VPContinuousSchedule, model: AnyModel, steps: Index, x1: Float[np.ndarray, "*shape"]
) -> Float[np.ndarray, "*shape"]:
    """TorchLean `pfOdeSampleEuler`, corrected (erratum 2 above): Euler from t = 1 to 0 in
    `steps` uniform steps, the drift read at t = 1, 1 − 1/n, …, 1/n.

    Formula: pfOdeSampleEuler(steps, x1) = pf_ode_sample_euler(sch, model, x1,
    pf_ode_uniform_grid(steps)) (Song et al. 2021, Eq. 13).
    Shapes: x1 (*shape) -> (*shape).
    """
    return pf_ode_sample_euler(sch, model, x1, pf_ode_uniform_grid(steps))


# --- the aliases with the same signature as the Python function ------------------------------

sqrtNonneg = sqrt_nonneg  # noqa: N816
safeDiv = safe_div  # noqa: N816
mseSpec = mse  # noqa: N816
timeOfIndex = time_of_index  # noqa: N816
qSample = q_sample  # noqa: N816
epsPredLoss = eps_pred_loss  # noqa: N816
x0Pred = x0_pred  # noqa: N816
ddimSample = ddim_sample  # noqa: N816
ddimPrev = ddim_prev  # noqa: N816
pfOdeRhs = pf_ode_rhs  # noqa: N816
eulerStep = euler_step  # noqa: N816
pfOdeEulerSystem = pf_ode_euler_system  # noqa: N816
epsConvNet = eps_conv_net  # noqa: N816
epsResidualConvNet = eps_residual_conv_net  # noqa: N816
toDiffusionRange = to_diffusion_range  # noqa: N816
noisedSampleFromEps = noised_sample_from_eps  # noqa: N816

TORCHLEAN_NAMES: dict[str, str] = {
    "sqrtNonneg": "sqrt_nonneg",
    "safeDiv": "safe_div",
    "mseSpec": "mse",
    "timeOfIndex": "time_of_index",
    "qSample": "q_sample",
    "epsPredLoss": "eps_pred_loss",
    "x0Pred": "x0_pred",
    "ddpmStep": "ddpm_step",
    "ddpmSample": "ddpm_sample",
    "ddimStep": "ddim_step",
    "ddimSample": "ddim_sample",
    "ddimStepSystem": "ddim_step_system",
    "ddimPrev": "ddim_prev",
    "pfOdeRhs": "pf_ode_rhs",
    "eulerStep": "euler_step",
    "pfOdeSampleEuler": "pf_ode_sample_euler",
    "pfOdeEulerSystem": "pf_ode_euler_system",
    "epsConvNet": "eps_conv_net",
    "epsResidualConvNet": "eps_residual_conv_net",
    "toDiffusionRange": "to_diffusion_range",
    "noisedSampleFromEps": "noised_sample_from_eps",
}
"""TorchLean (Lean) name → the Python name it corresponds to. Each Lean name is also an alias in
this module. `ddpmStep`, `ddimStep` and `ddimStepSystem` take the step index k where the Python
function takes t = k + 1; `ddpmSample` and `pfOdeSampleEuler` take no grid (they build the one
their Python function takes); `pfOdeRhs` and `pfOdeSampleEuler` are the corrected functions (see
the errata above)."""

TORCHLEAN_ALIASES: tuple[str, ...] = tuple(TORCHLEAN_NAMES)
"""The alias names, importable from `spec` (not part of `spec.__all__`)."""
