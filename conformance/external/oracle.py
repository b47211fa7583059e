"""The spec's side of an external check: a deterministic ε-model and the spec's step on a claim.

Everything here is computed by `spec` functions in float64, each method's by its own `step` and
`final` (conformance.external.methods); the only arithmetic of our own is the respacing of a
chain onto a coarser grid (Nichol & Dhariwal 2021, §4), stated where it is done.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from conformance.external.targets import SPEC_PREDICTION, Claim
from spec.ddim import ddim_prev
from spec.ddpm import x0_pred
from spec.edm import vp_to_edm
from spec.flow import vp_to_flow, x0_from_velocity
from spec.pf_ode import VPLinearSchedule
from spec.prediction import PredictionModel, denoise
from spec.schedule import VPSchedule, time_of_index


@dataclass(frozen=True)
class NonlinearEps:
    """A deterministic, nonlinear ε-model that depends on x, its neighbours and the time.

    Formula: ε(x, s) = tanh(a·x + b·roll(x, 1) + c·sin(5s + d)) + e·cos(3s)·x, elementwise
    along the last axis, with (a, b, c, d, e) drawn once from the seed. s is the spec's model time
    t/T, so a target that calls the model at another time gets another ε (and is caught).
    Shapes: x (*shape) -> (*shape).
    """

    a: float
    b: float
    c: float
    d: float
    e: float

    @classmethod
    def from_seed(cls, seed: int) -> NonlinearEps:
        r = np.random.default_rng([seed, 7]).uniform(size=5)
        return cls(0.6 + r[0], 0.2 + 0.5 * r[1], 0.5 + r[2], 6.0 * r[3], 0.1 + 0.3 * r[4])

    def eps(self, x: np.ndarray, t_norm: float) -> np.ndarray:
        s = float(t_norm)
        inner = self.a * x + self.b * np.roll(x, 1, axis=-1) + self.c * np.sin(5.0 * s + self.d)
        return np.tanh(inner) + self.e * np.cos(3.0 * s) * x


@dataclass(frozen=True)
class NativeVelocity:
    """The harness's network read as a velocity model of the rectified flow (spec.flow's
    VelocityModel): v̂(x, σ) = model.eps(x, σ), the flow's σ ∈ [0, 1] being its time input.
    A flow target's model and the spec's are this same function, so no conversion is made.
    Shapes: x (*shape) -> (*shape).
    """

    model: NonlinearEps

    def velocity(self, x: np.ndarray, sigma: float) -> np.ndarray:
        return self.model.eps(x, float(sigma))


@dataclass(frozen=True)
class VelocityAsX0:
    """A velocity model read on the VP table of a flow claim: the x_0-model whose output at the
    VP state x_t of table time t is x̂_0 = x_σ − σ·v̂(x_σ, σ) (spec.flow.x0_from_velocity), with
    (x_σ, σ) = spec.flow.vp_to_flow(ᾱ_t, x_t), the same x_0 and ε.

    Formula: output(x_t, t/T) = x0_from_velocity(x_σ, σ, velocity(x_σ, σ)); prediction "x0".
    Shapes: x (*shape) -> (*shape).
    """

    velocity_model: NativeVelocity
    sched: VPSchedule
    prediction: str = "x0"

    def output(self, x: np.ndarray, t_norm: float) -> np.ndarray:
        t = round(float(t_norm) * self.sched.T)
        x_sigma, sigma = vp_to_flow(float(self.sched.alpha_bar[t]), x)
        return x0_from_velocity(x_sigma, sigma, self.velocity_model.velocity(x_sigma, sigma))


@dataclass(frozen=True)
class _RespacedModel:
    """The model of a respaced chain: respaced time k/n is the original time S[k] (of T)."""

    model: NonlinearEps
    S: tuple[int, ...]
    T: int

    def eps(self, x: np.ndarray, t_norm: float) -> np.ndarray:
        k = round(float(t_norm) * (len(self.S) - 1))
        return self.model.eps(x, time_of_index(self.S[k], self.T))


@dataclass(frozen=True)
class _RespacedDenoiser(_RespacedModel):
    """A respaced model that predicts `prediction` (spec.prediction's Denoiser protocol)."""

    prediction: str = "eps"

    def output(self, x: np.ndarray, t_norm: float) -> np.ndarray:
        return self.eps(x, t_norm)


@dataclass(frozen=True)
class ClippedX0:
    """A model whose x_0-prediction is clip(x̂_0, −1, 1) of `model` on `sched`: spec.ddpm_step
    given it computes μ̃_t(x_t, clip(x̂_0)) (DDPM Eq. 7), the clipped ancestral step.

    Formula: output(x, t/T) = clip(spec.ddpm.x0_pred(sched, model, x, t), −1, 1); prediction "x0".
    Shapes: x (*shape) -> (*shape).
    """

    sched: VPSchedule
    model: Any
    prediction: str = "x0"

    def output(self, x: np.ndarray, t_norm: float) -> np.ndarray:
        t = round(float(t_norm) * self.sched.T)
        return np.clip(x0_pred(self.sched, self.model, x, t), -1.0, 1.0)


@dataclass(frozen=True)
class Respaced:
    """A chain respaced onto the times S = (0 = s_0 < s_1 < … < s_n): its schedule and model;
    respaced time k is the original time S[k]."""

    S: tuple[int, ...]
    sched: VPSchedule
    model: Any


@dataclass(frozen=True)
class _GridTimes(VPLinearSchedule):
    """spec.edm's schedule argument on a discrete grid: the model time of each claimed σ.

    spec.edm uses its schedule only to call the model at sch.time_of_edm_sigma(σ); a discrete
    sampler calls it at the grid time t whose σ_t = √((1 − ᾱ_t)/ᾱ_t) that is, i.e. at t/T (the
    spec's model time). A VPLinearSchedule subclass only so that spec.edm's type check accepts
    it; nothing else of the continuous schedule is used.
    """

    sigma_time: tuple[tuple[float, float], ...] = ()

    def time_of_edm_sigma(self, sigma_edm: float) -> float:
        return dict(self.sigma_time)[float(sigma_edm)]


class SpecOracle:
    """The spec's computation of a claim: one step (`step`) or the whole loop (`final`), each
    the claim's method's own (`Method.step`, `Method.final`), given this oracle's schedule,
    model and path.

    native: the model's output is read as the claim's own prediction kind (x̂_0 or v̂) through
    spec.prediction.PredictionModel, instead of as ε (used where ᾱ = 0: zero terminal SNR).
    """

    def __init__(self, claim: Claim, model: NonlinearEps, native: bool = False) -> None:
        self.claim = claim
        self.base_model, self.native = model, native
        self.kind = SPEC_PREDICTION[claim.prediction] if native else "eps"
        self.model: Any = PredictionModel(model, self.kind) if native else model
        self.sched = VPSchedule(np.asarray(claim.betas, dtype=np.float64))
        self.T = self.sched.T
        self.path = claim.path

    def with_claim(self, claim: Claim) -> SpecOracle:
        """The oracle of another claim with the same model (for a diagnosis)."""
        return SpecOracle(claim, self.base_model, self.native)

    def step(self, i: int, x: np.ndarray, z: np.ndarray,
             before: Sequence[np.ndarray] = ()) -> np.ndarray:
        """The spec's step i: x at path[i] → x at path[i + 1], with noise z. before: the
        target's states at path[0..i − 1], oldest first, read by a multistep method
        (DPMSolverPP, DPMSolverPP2S, UniPC) for its earlier x̂_0."""
        return self.claim.method.step(self, i, x, z, before)

    def final(self, x_T: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """The spec's whole loop from x_T to x_end (by the spec's own sampler where one exists);
        noise[i] belongs to step i."""
        return self.claim.method.final(self, x_T, noise)

    @functools.cached_property
    def respaced(self) -> Respaced:
        """The chain on the claim's path (Nichol & Dhariwal 2021, §4): on S = (0 = s_0 < … < s_n),
        β'_k = 1 − ᾱ_{s_k}/ᾱ_{s_{k−1}}, so the respaced chain's ᾱ'_k = ᾱ_{s_k}."""
        S = tuple(sorted(self.path))
        ab = self.sched.alpha_bar
        sched = VPSchedule(1.0 - ab[list(S[1:])] / ab[list(S[:-1])])
        model = (_RespacedDenoiser(self.base_model, S, self.T, self.kind) if self.native
                 else _RespacedModel(self.base_model, S, self.T))
        return Respaced(S, sched, model)

    @staticmethod
    def clipped(sched: VPSchedule, model: Any) -> ClippedX0:
        """`model` with its x̂_0 on `sched` clipped to [−1, 1], as an x_0-prediction."""
        return ClippedX0(sched, model)

    def sigma(self, t: int) -> float:
        """σ_t = √((1 − ᾱ_t)/ᾱ_t) of spec.edm.vp_to_edm (0 at t = 0)."""
        return float(vp_to_edm(self.sched.alpha_bar[t], np.zeros(1))[1])

    def flow_sigma(self, t: int) -> float:
        """The flow σ of table time t of a flow claim: spec.flow.vp_to_flow of ᾱ_t (σ = 0 at
        t = 0, σ = 1 where ᾱ_t = 0)."""
        return float(vp_to_flow(float(self.sched.alpha_bar[t]), np.zeros(1))[1])

    @functools.cached_property
    def velocity_model(self) -> NativeVelocity:
        """The network read as a velocity model v̂(x, σ) (flow claims, `Method.velocity`)."""
        return NativeVelocity(self.base_model)

    def flow_as_vp(self) -> SpecOracle:
        """This oracle with its velocity model read as a VP x_0-model (`VelocityAsX0`): a VP
        method run on a flow claim's table, its states mapped by spec.flow.flow_to_vp."""
        vp = SpecOracle(self.claim, self.base_model)
        vp.model = VelocityAsX0(self.velocity_model, self.sched)
        return vp

    def to_edm(self, t: int, x: np.ndarray) -> np.ndarray:
        """x̃ = x_t/√ᾱ_t (spec.edm.vp_to_edm)."""
        return vp_to_edm(self.sched.alpha_bar[t], x)[0]

    def times(self, ts: list[int]) -> _GridTimes:
        """spec.edm's schedule argument for the grid times `ts` (t > 0): σ_t ↦ t/T."""
        return _GridTimes(sigma_time=tuple((self.sigma(t), time_of_index(t, self.T)) for t in ts if t > 0))

    def keep_level(self, t: int, x: np.ndarray, clip: bool = False) -> np.ndarray:
        """A step from t to t (set_alpha_to_one=False or final_sigmas_type="sigma_min" on a grid
        ending at t = 1): DDIM Eq. 12 with ᾱ_prev = ᾱ_t, where Eq. 16 gives σ = 0 (the state
        itself, up to clipping x̂_0). DPM-Solver++(1) is this DDIM step (spec.dpm_solver)."""
        ab = self.sched.alpha_bar[t]
        eps_hat = denoise(self.sched, self.model, x, t)[1]  # ε̂ of the model's output
        return ddim_prev(ab, ab, x, eps_hat, clip=clip)
