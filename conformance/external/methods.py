"""The step rules a claim can name, each with the spec's computation of it.

A method is a frozen dataclass of its options; it says what it computes (`formula`), which
model calls it makes along a path (`calls`), and computes its step (`step`) and its whole loop
(`final`) by calling the spec, given the oracle (`conformance.external.oracle.SpecOracle`: the
claim's schedule, model and path). `nearby` lists the computations a wrong target's step is
often found to match (a hint in the reproduction, not a verdict). A new method is one class
here; nothing else in the harness changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from spec.ddim import ddim_sample_strided, ddim_step_between
from spec.ddpm import VARIANCES, ddpm_sample, ddpm_step, x0_pred
from spec.dpm_solver import dpm_solver_pp_2m_sample, dpm_solver_pp_2m_step
from spec.edm import edm_euler_step, edm_heun_step, edm_sample_euler, edm_sample_heun, edm_to_vp

if TYPE_CHECKING:
    from conformance.external.oracle import SpecOracle
    from conformance.external.targets import Claim

Nearby = Iterator[tuple[str, Callable[[], np.ndarray]]]
"""(what the target matches, the spec's computation of it) pairs, tried in order."""


class Method:
    """The defaults of a step rule: one model call per grid time, the whole loop as its steps
    one after another, no nearby computations."""

    @property
    def formula(self) -> str:
        raise NotImplementedError

    def calls(self, path: Sequence[int]) -> list[tuple[int, int]]:
        """(step, t) of every model call along `path`: step i calls the model at path[i]."""
        return [(i, path[i]) for i in range(len(path) - 1)]

    def check(self, claim: Claim) -> None:
        """Raise ValueError when `claim` is outside what this method's spec computes."""

    def step(self, o: SpecOracle, i: int, x: np.ndarray, z: np.ndarray,
             x_before: np.ndarray | None) -> np.ndarray:
        """The spec's step i: x at path[i] → x at path[i + 1], with noise z; x_before is the
        state at path[i − 1] (a multistep method reads it)."""
        raise NotImplementedError

    def final(self, o: SpecOracle, x_T: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """The spec's whole loop from x_T: the steps one after another."""
        states = [x_T]
        for i in range(len(o.path) - 1):
            states.append(self.step(o, i, states[i], noise[i], states[i - 1] if i else None))
        return states[-1]

    def nearby(self, o: SpecOracle, i: int, x: np.ndarray, z: np.ndarray) -> Nearby:
        return iter(())


def _other(o: SpecOracle, **change: object) -> SpecOracle:
    """The oracle of the same claim with the method's options changed."""
    claim = o.claim
    return o.with_claim(dataclasses.replace(claim, method=dataclasses.replace(claim.method, **change)))


@dataclass(frozen=True)
class DDIM(Method):
    """The generalized DDIM step (Song, Meng & Ermon 2021, Eq. 12 with σ from Eq. 16).

    eta: η ≥ 0; clip: x̂_0 clipped to [−1, 1] before Eq. 12 (the direction keeps the model's ε̂).
    """

    eta: float = 0.0
    clip: bool = False

    @property
    def formula(self) -> str:
        return (
            "DDIM Eq. 12 (Song et al. 2021) with σ = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev) "
            "(Eq. 16), x̂_0 from Eq. 9" + (" clipped to [−1, 1]" if self.clip else "")
            + ", from each grid time to the next"
        )

    def step(self, o, i, x, z, x_before):
        t, t_prev = o.path[i], o.path[i + 1]
        if t_prev < t:
            return ddim_step_between(o.sched, o.model, t, t_prev, x, self.eta, z, self.clip)
        return o.keep_level(t, x, self.clip)

    def final(self, o, x_T, noise):
        if o.claim.end == 0:  # the spec's own sampler on the grid (t_0, …, t_{n−1}, 0)
            return ddim_sample_strided(o.sched, o.model, x_T, list(o.path), noise, eta=self.eta,
                                       clip=self.clip)
        return super().final(o, x_T, noise)

    def nearby(self, o, i, x, z):
        """Eq. 12 to another t_prev (t − 1 or a fixed stride instead of the grid's), or with the
        clipping switched."""
        t, grid_prev = o.path[i], o.path[i + 1]
        for tp in range(t - 1, -1, -1):
            if tp != grid_prev:
                alt = o.with_claim(_with_step(o.claim, i, tp))
                yield (f"matches Eq. 12 from t = {t} to t_prev = {tp} instead of the grid's "
                       f"t_prev = {grid_prev}", lambda alt=alt: alt.step(i, x, z))
        yield (f"matches the step with clip = {not self.clip}",
               lambda: _other(o, clip=not self.clip).step(i, x, z))


def _with_step(claim: Claim, i: int, t_prev: int) -> Claim:
    """The claim whose step i goes to t_prev instead (later steps dropped)."""
    grid = claim.path[: i + 1]
    if t_prev == 0:
        return dataclasses.replace(claim, grid=grid, end=0, labels=())
    return dataclasses.replace(claim, grid=(*grid, t_prev), end=0, labels=())


SIGMA2 = {"fixed_small": "σ² = β̃_t", "fixed_large": "σ² = β_t"}
"""How a report names each reverse variance of spec.ddpm.VARIANCES (DDPM §3.2)."""


@dataclass(frozen=True)
class DDPM(Method):
    """The ancestral DDPM step (Ho et al. 2020, Algorithm 2; `spec.ddpm.ddpm_step`) on the
    claimed grid.

    On a grid coarser than every step the chain is respaced (Nichol & Dhariwal 2021, §4):
    β'_t = 1 − ᾱ_t/ᾱ_prev between consecutive grid times (`SpecOracle.respaced`). variance: a
    name of spec.ddpm.VARIANCES, "fixed_small" σ² = β̃_t (the posterior variance, DDPM Eq. 7) or
    "fixed_large" σ² = β_t (DDPM §3.2). The last step (into t = 0's neighbour) adds no noise:
    z = 0 at t = 1 (Algorithm 2). clip: x̂_0 clipped to [−1, 1] and the mean taken as
    μ̃_t(x_t, x̂_0) (DDPM Eq. 7): spec.ddpm_step given the clipped x̂_0 as an x_0-prediction
    (`SpecOracle.clipped`).
    """

    variance: Literal["fixed_small", "fixed_large"] = "fixed_small"
    clip: bool = False

    @property
    def formula(self) -> str:
        var = SIGMA2[self.variance] + (" (Eq. 7)" if self.variance == "fixed_small" else " (§3.2)")
        mean = (
            "μ̃_t(x_t, clip(x̂_0)) (Eq. 7)" if self.clip else "μ_θ = (x_t − β_t/√(1−ᾱ_t)·ε̂)/√α_t (Eq. 11)"
        )
        return (
            f"DDPM Algorithm 2 (Ho et al. 2020): mean {mean}, {var}, z = 0 on the last step; "
            "on a strided grid β'_t = 1 − ᾱ_t/ᾱ_prev (Nichol & Dhariwal 2021, §4)"
        )

    def check(self, claim):
        if claim.end != 0:
            raise ValueError(f"a DDPM claim ends at t = 0, got end = {claim.end}")
        if self.variance not in VARIANCES:
            raise ValueError(f"variance must be one of {sorted(VARIANCES)}, got {self.variance!r}")

    def step(self, o, i, x, z, x_before):
        chain = o.respaced  # x_{t_r} → x_{t_r − 1} in the respaced chain
        model = o.clipped(chain.sched, chain.model) if self.clip else chain.model
        return ddpm_step(chain.sched, model, chain.S.index(o.path[i]), x, z, variance=self.variance)

    def final(self, o, x_T, noise):
        """Over every step: spec.ddpm_sample (its noise[k] is for time k + 1, our step T − 1 − k)."""
        if o.claim.grid == tuple(range(o.T, 0, -1)):
            model = o.clipped(o.sched, o.model) if self.clip else o.model
            return ddpm_sample(o.sched, model, x_T, [*o.claim.grid, 0], noise[::-1].copy(),
                               variance=self.variance)
        return super().final(o, x_T, noise)

    def nearby(self, o, i, x, z):
        """The other variance, the clipping switched (each also without noise), and noise on the
        last step where Algorithm 2 has none."""
        other = "fixed_large" if self.variance == "fixed_small" else "fixed_small"
        for text, alt in ((f"matches the step with {SIGMA2[other]} instead of {SIGMA2[self.variance]}",
                           _other(o, variance=other)),
                          (f"matches the step with clip = {not self.clip}", _other(o, clip=not self.clip))):
            yield text, lambda alt=alt: alt.step(i, x, z)
            yield text + " and without noise", lambda alt=alt: alt.step(i, x, 0 * z)
        if i == len(o.path) - 2 and self.variance == "fixed_large":
            beta_1 = o.respaced.sched.beta[1]
            yield ("matches the step plus σ·z with σ² = β'_1 on the last step, where Algorithm 2 "
                   "sets z = 0 at t = 1", lambda: self.step(o, i, x, z, None) + np.sqrt(beta_1) * z)


@dataclass(frozen=True)
class EDMEuler(Method):
    """Euler's method on the EDM ODE dx̃/dσ = (x̃ − D(x̃; σ))/σ (Karras et al. 2022, Algorithm 1
    without its correction; `spec.edm.edm_euler_step`), on the VP σ_t = √((1 − ᾱ_t)/ᾱ_t) of the
    claimed grid and σ = 0 at its end, x̃ = x_t/√ᾱ_t (`spec.edm.vp_to_edm`). States are compared
    in VP scale (x_t = x̃/√(1 + σ²)); the model is called at the grid's discrete t.
    """

    @property
    def formula(self) -> str:
        return (
            "EDM Euler (Karras et al. 2022, Algorithm 1 lines 4–5, no correction): "
            "x̃' = x̃ + (σ_next − σ)·(x̃ − D(x̃; σ))/σ with σ_t = √((1−ᾱ_t)/ᾱ_t) on the grid, σ = 0 at its end"
        )

    solve_step = staticmethod(edm_euler_step)
    solve = staticmethod(edm_sample_euler)

    def step(self, o, i, x, z, x_before):
        t, t_prev = o.path[i], o.path[i + 1]
        s, s_next = o.sigma(t), (o.sigma(t_prev) if t_prev > 0 else 0.0)
        x_tilde = o.to_edm(t, x)
        return edm_to_vp(s_next, self.solve_step(o.times([t, t_prev]), o.model, x_tilde, s, s_next))[1]

    def final(self, o, x_T, noise):
        """spec.edm's sampler over the grid's σ's, then σ = 0."""
        sigmas = [o.sigma(t) for t in o.claim.grid] + [0.0]
        x_tilde = o.to_edm(o.path[0], x_T)
        return edm_to_vp(0.0, self.solve(o.times(list(o.claim.grid)), o.model, x_tilde, sigmas))[1]


@dataclass(frozen=True)
class EDMHeun(EDMEuler):
    """Heun's method on the EDM ODE (Karras et al. 2022, Algorithm 1; `spec.edm.edm_heun_step`),
    on the VP σ_t = √((1 − ᾱ_t)/ᾱ_t) of the claimed grid and σ = 0 at its end; states compared
    in VP scale as for `EDMEuler`.

    The one method here that calls the model twice per step: at t_i (Euler predictor) and at
    t_{i+1} on the predicted state (the trapezoidal corrector), except on a step into σ = 0,
    which is Euler's (the slope is undefined at σ = 0): `calls` lists them.
    """

    solve_step = staticmethod(edm_heun_step)
    solve = staticmethod(edm_sample_heun)

    def calls(self, path: Sequence[int]) -> list[tuple[int, int]]:
        """(step, t) of every model call along `path`: 2 per step, 1 on a step into t = 0."""
        out = []
        for i in range(len(path) - 1):
            out.append((i, path[i]))
            if path[i + 1] > 0:
                out.append((i, path[i + 1]))
        return out

    @property
    def formula(self) -> str:
        return (
            "EDM Heun (Karras et al. 2022, Algorithm 1): d = (x̃ − D(x̃; σ))/σ, x̃' = x̃ + (σ_next − σ)·d, "
            "then x̃ + (σ_next − σ)·(½d + ½(x̃' − D(x̃'; σ_next))/σ_next) unless σ_next = 0 (Euler), "
            "with σ_t = √((1−ᾱ_t)/ᾱ_t) on the grid, σ = 0 at its end"
        )


@dataclass(frozen=True)
class DPMSolverPP(Method):
    """DPM-Solver++(2M) on the claimed grid (Lu et al. 2022b, Algorithm 2;
    `spec.dpm_solver.dpm_solver_pp_2m_step`), in VP scale, one model call per grid time.

    A multistep method: step i ≥ 1 combines x̂_0 at path[i] with x̂_0 at path[i − 1], the
    previous model output (line 7). The harness hands the oracle the target's own state at
    path[i − 1] (`Run.sample`'s states), from which the spec recomputes that x̂_0, so a
    departure is still found at its own step. first_order: the steps that take the first-order
    update D = x̂_0 (line 3) besides the spec's own two (step 0, which has no history, and a step
    into ᾱ = 1): every step for solver order 1, the last one for diffusers' lower_order_final /
    euler_at_final. A step that keeps the noise level (end = t_{n−1}) is the identity.
    """

    first_order: tuple[int, ...] = ()

    @property
    def formula(self) -> str:
        extra = f"; first order also at steps {list(self.first_order)}" if self.first_order else ""
        return (
            "DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2): D = (1 + 1/(2r))·x̂_0(t) − "
            "1/(2r)·x̂_0(t_prev), x' = (σ_next/σ_t)·(x − α_t·D) + α_next·D, first order (D = x̂_0) on "
            "the first step and into ᾱ = 1" + extra
        )

    def step(self, o, i, x, z, x_before):
        t, t_prev = o.path[i], o.path[i + 1]
        if t_prev == t:
            return o.keep_level(t, x)
        x0 = x0_pred(o.sched, o.model, x, t)
        if i == 0 or i in self.first_order:  # the first-order update (Algorithm 2, line 3)
            return dpm_solver_pp_2m_step(o.sched, x, x0, t, t_prev)
        if x_before is None:
            raise ValueError(f"DPM-Solver++(2M) step {i} needs the state at t = {o.path[i - 1]}")
        t_before = o.path[i - 1]
        x0_before = x0_pred(o.sched, o.model, x_before, t_before)  # the previous output
        return dpm_solver_pp_2m_step(o.sched, x, x0, t, t_prev, x0_before, t_before)

    def final(self, o, x_T, noise):
        extra = [i for i in self.first_order if i > 0 and o.path[i + 1] > 0]
        if o.claim.end == 0 and not extra:  # the spec's own sampler, Algorithm 2
            return dpm_solver_pp_2m_sample(o.sched, o.model, x_T, list(o.path))
        return super().final(o, x_T, noise)
