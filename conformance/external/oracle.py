"""The spec's side of an external check: a deterministic ε-model and the spec's step on a claim.

Everything here is computed by `spec` functions in float64; the only arithmetic of our own is
the respacing of a DDPM chain onto a coarser grid (Nichol & Dhariwal 2021, §4) and the choice of
σ among the two fixed variances of DDPM §3.2, both stated where they are done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from conformance.external.targets import (
    DDIM,
    DDPM,
    SPEC_PREDICTION,
    Claim,
    DPMSolverPP,
    EDMEuler,
    EDMHeun,
)
from spec.ddim import ddim_prev, ddim_sample_strided, ddim_step_between
from spec.ddpm import ddpm_sample, ddpm_step, x0_pred
from spec.dpm_solver import dpm_solver_pp_2m_sample, dpm_solver_pp_2m_step
from spec.edm import (
    edm_euler_step,
    edm_heun_step,
    edm_sample_euler,
    edm_sample_heun,
    edm_to_vp,
    vp_to_edm,
)
from spec.forward import q_posterior_mean_variance
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
    """The spec's computation of a claim: one step (`step`) or the whole loop (`sample`).

    native: the model's output is read as the claim's own prediction kind (x̂_0 or v̂) through
    spec.prediction.PredictionModel, instead of as ε (used where ᾱ = 0: zero terminal SNR).
    """

    def __init__(self, claim: Claim, model: NonlinearEps, native: bool = False) -> None:
        self.claim = claim
        self.kind = SPEC_PREDICTION[claim.prediction] if native else "eps"
        self.model: Any = PredictionModel(model, self.kind) if native else model
        self.sched = VPSchedule(np.asarray(claim.betas, dtype=np.float64))
        self.T = self.sched.T
        self.path = claim.path
        if isinstance(claim.method, DDPM):
            if claim.end != 0:
                raise ValueError(f"a DDPM claim ends at t = 0, got end = {claim.end}")
            # Respacing (Nichol & Dhariwal 2021, §4): on S = (0 = s_0 < s_1 < … < s_n),
            # β'_k = 1 − ᾱ_{s_{k+1}}/ᾱ_{s_k}, so the respaced chain's ᾱ'_k = ᾱ_{s_k}.
            S = tuple(sorted(self.path))
            ab = self.sched.alpha_bar
            self.S = S
            self.respaced = VPSchedule(1.0 - ab[list(S[1:])] / ab[list(S[:-1])])
            self.respaced_model = (
                _RespacedDenoiser(model, S, self.T, self.kind) if native
                else _RespacedModel(model, S, self.T)
            )

    def sigma(self, t: int) -> float:
        """σ_t = √((1 − ᾱ_t)/ᾱ_t) of spec.edm.vp_to_edm (0 at t = 0)."""
        return float(vp_to_edm(self.sched.alpha_bar[t], np.zeros(1))[1])

    def _times(self, ts: list[int]) -> _GridTimes:
        """spec.edm's schedule argument for the grid times `ts` (t > 0): σ_t ↦ t/T."""
        return _GridTimes(sigma_time=tuple((self.sigma(t), time_of_index(t, self.T)) for t in ts if t > 0))

    def _keep_level(self, t: int, x: np.ndarray, clip: bool = False) -> np.ndarray:
        """A step from t to t (set_alpha_to_one=False or final_sigmas_type="sigma_min" on a grid
        ending at t = 1): DDIM Eq. 12 with ᾱ_prev = ᾱ_t, where Eq. 16 gives σ = 0 (the state
        itself, up to clipping x̂_0). DPM-Solver++(1) is this DDIM step (spec.dpm_solver)."""
        ab = self.sched.alpha_bar[t]
        eps_hat = denoise(self.sched, self.model, x, t)[1]  # ε̂ of the model's output
        return ddim_prev(ab, ab, x, eps_hat, clip=clip)

    def step(self, i: int, x: np.ndarray, z: np.ndarray, x_before: np.ndarray | None = None) -> np.ndarray:
        """The spec's step i: x at path[i] → x at path[i + 1], with noise z. x_before: the state
        at path[i − 1], read by a multistep method (DPMSolverPP) for its previous x̂_0."""
        t, t_prev = self.path[i], self.path[i + 1]
        m = self.claim.method
        if isinstance(m, EDMEuler | EDMHeun):
            s, s_next = self.sigma(t), (self.sigma(t_prev) if t_prev > 0 else 0.0)
            x_tilde = vp_to_edm(self.sched.alpha_bar[t], x)[0]
            solve = edm_euler_step if isinstance(m, EDMEuler) else edm_heun_step
            return edm_to_vp(s_next, solve(self._times([t, t_prev]), self.model, x_tilde, s, s_next))[1]
        if isinstance(m, DPMSolverPP):
            if t_prev == t:
                return self._keep_level(t, x)
            x0 = x0_pred(self.sched, self.model, x, t)
            if i == 0 or i in m.first_order:  # the first-order update (Algorithm 2, line 3)
                return dpm_solver_pp_2m_step(self.sched, x, x0, t, t_prev)
            if x_before is None:
                raise ValueError(f"DPM-Solver++(2M) step {i} needs the state at t = {self.path[i - 1]}")
            t_before = self.path[i - 1]
            x0_before = x0_pred(self.sched, self.model, x_before, t_before)  # the previous output
            return dpm_solver_pp_2m_step(self.sched, x, x0, t, t_prev, x0_before, t_before)
        if isinstance(m, DDIM):
            if t_prev < t:
                return ddim_step_between(self.sched, self.model, t, t_prev, x, m.eta, z, m.clip)
            return self._keep_level(t, x, m.clip)
        t_r = self.S.index(t)  # the time in the respaced chain: x_{t_r} → x_{t_r − 1}
        rs, rm = self.respaced, self.respaced_model
        if m.variance == "beta_tilde" and not m.clip:
            return ddpm_step(rs, rm, t_r, x, z)  # Eq. 11 with σ² = β̃ (β̃'_1 = 0: last step noiseless)
        x0 = x0_pred(rs, rm, x, t_r)
        if m.clip:
            x0 = np.clip(x0, -1.0, 1.0)
        mean, var = q_posterior_mean_variance(rs, x0, x, t_r)  # μ̃_t(x_t, x̂_0), β̃_t (Eq. 7)
        if m.variance == "beta":
            var = rs.beta[t_r]  # σ² = β_t (DDPM §3.2)
        sigma = 0.0 if t_r == 1 else np.sqrt(var)  # Algorithm 2: z = 0 at t = 1
        return mean + sigma * z

    def final(self, x_T: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """The spec's whole loop from x_T to x_end, by the spec's own sampler where one exists.

        DDIM ending at t = 0: `ddim_sample_strided` on the grid (t_0, …, t_{n−1}, 0); DDPM over
        every step with σ² = β̃ unclipped: `ddpm_sample` (its noise[k] is for step k, which is
        our step T − 1 − k); otherwise the steps above one after another.
        """
        m, n = self.claim.method, len(self.path) - 1
        if isinstance(m, EDMEuler | EDMHeun):  # spec.edm's sampler over the grid's σ's, then σ = 0
            sigmas = [self.sigma(t) for t in self.claim.grid] + [0.0]
            x_tilde = vp_to_edm(self.sched.alpha_bar[self.path[0]], x_T)[0]
            solve = edm_sample_euler if isinstance(m, EDMEuler) else edm_sample_heun
            return edm_to_vp(0.0, solve(self._times(list(self.claim.grid)), self.model, x_tilde, sigmas))[1]
        if isinstance(m, DPMSolverPP):
            extra = [i for i in m.first_order if i > 0 and self.path[i + 1] > 0]
            if self.claim.end == 0 and not extra:  # the spec's own sampler, Algorithm 2
                return dpm_solver_pp_2m_sample(self.sched, self.model, x_T, list(self.path))
            states = [x_T]
            for i in range(n):
                states.append(self.step(i, states[i], noise[i], states[i - 1] if i else None))
            return states[-1]
        if isinstance(m, DDIM) and self.claim.end == 0:
            return ddim_sample_strided(
                self.sched, self.model, x_T, list(self.path), noise, eta=m.eta, clip=m.clip
            )
        every = self.claim.grid == tuple(range(self.T, 0, -1))
        if isinstance(m, DDPM) and every and m.variance == "beta_tilde" and not m.clip:
            return ddpm_sample(self.sched, self.model, x_T, [*self.claim.grid, 0],
                               noise[::-1].copy())
        x = x_T
        for i in range(n):
            x = self.step(i, x, noise[i])
        return x
