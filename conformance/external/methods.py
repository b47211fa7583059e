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
from spec.dpm_solver import (
    dpm_solver_pp_2m_sample,
    dpm_solver_pp_2m_step,
    dpm_solver_pp_2s_sample,
    dpm_solver_pp_2s_step,
    dpm_solver_pp_3m_sample,
    dpm_solver_pp_3m_step,
    half_log_snr,
)
from spec.edm import (
    edm_euler_ancestral_sample,
    edm_euler_ancestral_step,
    edm_euler_step,
    edm_heun_step,
    edm_sample_euler,
    edm_sample_heun,
    edm_to_vp,
)
from spec.flow import (
    RectifiedFlow,
    flow_euler_sample,
    flow_euler_step,
    flow_heun_sample,
    flow_heun_step,
    flow_to_vp,
    vp_to_flow,
)
from spec.unipc import unic_step, unip_step, unipc_sample

if TYPE_CHECKING:
    from conformance.external.oracle import SpecOracle
    from conformance.external.targets import Claim

Nearby = Iterator[tuple[str, Callable[[], np.ndarray]]]
"""(what the target matches, the spec's computation of it) pairs, tried in order."""


class Method:
    """The defaults of a step rule: one model call per grid time, the whole loop as its steps
    one after another, no nearby computations, a VP model (ε, x_0 or v of the claim's table).

    velocity: the method runs the rectified flow (spec.flow) and its model is a velocity model
    v̂(x, σ), fed the flow's σ itself as its time (see `FlowEuler`).
    """

    velocity = False

    @property
    def formula(self) -> str:
        raise NotImplementedError

    def calls(self, path: Sequence[int]) -> list[tuple[int, int]]:
        """(step, t) of every model call along `path`: step i calls the model at path[i]."""
        return [(i, path[i]) for i in range(len(path) - 1)]

    def check(self, claim: Claim) -> None:
        """Raise ValueError when `claim` is outside what this method's spec computes."""

    def step(self, o: SpecOracle, i: int, x: np.ndarray, z: np.ndarray,
             before: Sequence[np.ndarray]) -> np.ndarray:
        """The spec's step i: x at path[i] → x at path[i + 1], with noise z; before: the
        target's states at path[0..i − 1], oldest first (a multistep method reads them)."""
        raise NotImplementedError

    def final(self, o: SpecOracle, x_T: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """The spec's whole loop from x_T: the steps one after another."""
        states = [x_T]
        for i in range(len(o.path) - 1):
            states.append(self.step(o, i, states[i], noise[i], states[:i]))
        return states[-1]

    def nearby(self, o: SpecOracle, i: int, x: np.ndarray, z: np.ndarray,
               before: Sequence[np.ndarray] = ()) -> Nearby:
        """What step i (from x, noise z; `before` as for `step`) is often found to match."""
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

    def step(self, o, i, x, z, before):
        t, t_prev = o.path[i], o.path[i + 1]
        if t_prev < t:
            return ddim_step_between(o.sched, o.model, t, t_prev, x, self.eta, z, self.clip)
        return o.keep_level(t, x, self.clip)

    def final(self, o, x_T, noise):
        if o.claim.end == 0:  # the spec's own sampler on the grid (t_0, …, t_{n−1}, 0)
            return ddim_sample_strided(o.sched, o.model, x_T, list(o.path), noise, eta=self.eta,
                                       clip=self.clip)
        return super().final(o, x_T, noise)

    def nearby(self, o, i, x, z, before=()):
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

    def step(self, o, i, x, z, before):
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

    def nearby(self, o, i, x, z, before=()):
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

    def step(self, o, i, x, z, before):
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

    def step(self, o, i, x, z, before):
        t, t_prev = o.path[i], o.path[i + 1]
        if t_prev == t:
            return o.keep_level(t, x)
        x0 = x0_pred(o.sched, o.model, x, t)
        if i == 0 or i in self.first_order:  # the first-order update (Algorithm 2, line 3)
            return dpm_solver_pp_2m_step(o.sched, x, x0, t, t_prev)
        if len(before) < i:
            raise ValueError(f"DPM-Solver++(2M) step {i} needs the state at t = {o.path[i - 1]}")
        t_before = o.path[i - 1]
        x0_before = x0_pred(o.sched, o.model, before[-1], t_before)  # the previous output
        return dpm_solver_pp_2m_step(o.sched, x, x0, t, t_prev, x0_before, t_before)

    def final(self, o, x_T, noise):
        extra = [i for i in self.first_order if i > 0 and o.path[i + 1] > 0]
        if o.claim.end == 0 and not extra:  # the spec's own sampler, Algorithm 2
            return dpm_solver_pp_2m_sample(o.sched, o.model, x_T, list(o.path))
        return super().final(o, x_T, noise)


@dataclass(frozen=True)
class DPMSolverPP3M(Method):
    """DPM-Solver++(3M) on the claimed grid (`spec.dpm_solver.dpm_solver_pp_3m_step`: DPM-Solver++
    Eq. 9 integrated exactly for x̂_0 quadratic in λ through the last three x̂_0), in VP scale,
    one model call per grid time, multistep as `DPMSolverPP`: step i recomputes x̂_0 at
    path[i − 1] and path[i − 2] from the target's own states there.

    orders: the order of each step, 1 (the first-order update, Algorithm 2 line 3), 2 ((2M),
    line 7) or 3; empty: the spec sampler's min(3, i + 1, n − i) (`dpm_solver_pp_3m_sample`).
    A step into ᾱ = 1 is first order whatever its order says (both spec steps land on x̂_0).
    """

    orders: tuple[int, ...] = ()

    @property
    def formula(self) -> str:
        return ("DPM-Solver++(3M) (spec.dpm_solver, DPM-Solver++ Eq. 9 integrated exactly): "
                "x' = (σ_next/σ_t)·x + √ᾱ_next·[(1 − e^{−h})·m0 + (h − 1 + e^{−h})·d1 + "
                "(h² − 2h + 2 − 2e^{−h})·d2], d1, d2 the first and half the second divided "
                "differences of x̂_0 in λ; orders "
                + (str(list(self.orders)) if self.orders else "min(3, i + 1, n − i)")
                + " (1: DDIM's step, 2: (2M))")

    def check(self, claim):
        n = len(claim.grid)
        if self.orders and (len(self.orders) != n or any(
                not 1 <= q <= min(3, i + 1) for i, q in enumerate(self.orders))):
            raise ValueError(f"DPM-Solver++(3M) orders must give step i of {n} an order in "
                             f"1..min(3, i + 1), got {list(self.orders)}")

    def order(self, i: int, n: int) -> int:
        """The order of step i of n."""
        return self.orders[i] if self.orders else min(3, i + 1, n - i)

    def _history(self, o, i, x, before):
        """x̂_0 at path[i], path[i − 1], … (as many as step i's order reads), newest first."""
        q = self.order(i, len(o.path) - 1)
        if len(before) < q - 1:
            raise ValueError(f"DPM-Solver++(3M) step {i} needs the states at t = "
                             f"{list(o.path[i + 1 - q:i])}")
        states = [x, *before[::-1][:q - 1]]
        return [x0_pred(o.sched, o.model, s, o.path[i - k]) for k, s in enumerate(states)]

    def step(self, o, i, x, z, before):
        path = o.path
        t, t_next = path[i], path[i + 1]
        if t_next == t:
            return o.keep_level(t, x)
        m = self._history(o, i, x, before)
        if len(m) == 3:
            return dpm_solver_pp_3m_step(o.sched, x, m[0], t, t_next, m[1], path[i - 1], m[2],
                                         path[i - 2])
        if len(m) == 2:
            return dpm_solver_pp_2m_step(o.sched, x, m[0], t, t_next, m[1], path[i - 1])
        return dpm_solver_pp_2m_step(o.sched, x, m[0], t, t_next)

    def final(self, o, x_T, noise):
        n = len(o.path) - 1
        if o.claim.end == 0 and all(self.order(i, n) == min(3, i + 1, n - i) for i in range(n)):
            return dpm_solver_pp_3m_sample(o.sched, o.model, x_T, list(o.path))
        return super().final(o, x_T, noise)

    def nearby(self, o, i, x, z, before=()):
        """The third-order step with its quadratic term halved: the authors' code's and
        diffusers' −√ᾱ_next·φ_3·D2 with φ_3 = (e^{−h} − 1 + h)/h² − ½ and D2 = h²·d2
        (docs/errata.md §4), written out here from the same x̂_0 (a hint, not a spec function)."""
        path = o.path
        t, t_next = path[i], path[i + 1]
        if self.order(i, len(path) - 1) != 3 or t_next == t or t_next == 0:
            return

        def reference() -> np.ndarray:
            ab = o.sched.alpha_bar
            lam2, lam1, lam0, lam_n = half_log_snr(np.array(
                [ab[path[i - 2]], ab[path[i - 1]], ab[t], ab[t_next]]))
            m0, m1, m2 = self._history(o, i, x, before)
            h = lam_n - lam0
            r0, r1 = (lam0 - lam1) / h, (lam1 - lam2) / h
            d1_0, d1_1 = (m0 - m1) / r0, (m1 - m2) / r1
            D1, D2 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1), (d1_0 - d1_1) / (r0 + r1)
            phi1 = np.expm1(-h)
            phi2, a_n = phi1 / h + 1, np.sqrt(ab[t_next])
            return (np.sqrt((1 - ab[t_next]) / (1 - ab[t])) * x - a_n * phi1 * m0
                    + a_n * phi2 * D1 - a_n * (phi2 / h - 0.5) * D2)

        yield ("matches the third-order step with its quadratic term halved (the reference "
               "code's φ_3·D2, φ_3 = (e^{−h} − 1 + h)/h² − ½, D2 = h²·d2: docs/errata.md §4)",
               reference)


@dataclass(frozen=True)
class DPMSolverPP2S(Method):
    """DPM-Solver++(2S) on the claimed grid (Lu et al. 2022b, Algorithm 1;
    `spec.dpm_solver.dpm_solver_pp_2s_step`), in VP scale, one model call per grid time.

    The grid is read in pairs from its start, as `dpm_solver_pp_2s_sample` does: step 2k goes
    from t_{2k} to the intermediate time t_{2k+1} by the first-order step (Algorithm 1, line 4),
    and step 2k + 1 finishes the pair, t_{2k} → t_{2k+2} through t_{2k+1} (lines 5–6), from the
    target's state at t_{2k}; an odd last step is first order. first_order: steps 2k + 1 that
    are taken first order from their own state instead (diffusers' lower_order_final).
    """

    first_order: tuple[int, ...] = ()

    @property
    def formula(self) -> str:
        extra = f"; first order also at steps {list(self.first_order)}" if self.first_order else ""
        return ("DPM-Solver++(2S) (Lu et al. 2022b, Algorithm 1): the grid in pairs t → t_mid → "
                "t_next, u = first-order step to t_mid, D = (1 − 1/(2r))·x̂_0(t) + 1/(2r)·x̂_0(u, t_mid), "
                "x' = (σ_next/σ_t)·(x − α_t·D) + α_next·D; an odd last step first order" + extra)

    def step(self, o, i, x, z, before):
        t, t_next = o.path[i], o.path[i + 1]
        if t_next == t:
            return o.keep_level(t, x)
        if i % 2 == 0 or i in self.first_order:  # the pair's first half: the first-order step
            return dpm_solver_pp_2m_step(o.sched, x, x0_pred(o.sched, o.model, x, t), t, t_next)
        if len(before) < i:
            raise ValueError(f"DPM-Solver++(2S) step {i} needs the state at t = {o.path[i - 1]}")
        return dpm_solver_pp_2s_step(o.sched, o.model, before[-1], o.path[i - 1], t, t_next)

    def final(self, o, x_T, noise):
        extra = [i for i in self.first_order if o.path[i + 1] > 0]
        if o.claim.end == 0 and not extra:  # the spec's own sampler, Algorithm 1 in pairs
            return dpm_solver_pp_2s_sample(o.sched, o.model, x_T, list(o.path))
        return super().final(o, x_T, noise)


@dataclass(frozen=True)
class UniPC(Method):
    """UniPC-p on the claimed grid (Zhao et al. 2023; `spec.unipc.unip_step` and `unic_step`),
    in VP scale, one model call per grid time.

    order p ∈ {1, 2, 3}; variant "bh1" or "bh2" (B(h)); corrector: UniC after every step but
    the last; lower_order_final: step i of n takes order min(p, i + 1, n − i) (the spec's
    `unipc_sample`), else min(p, i + 1).

    The state at path[i] is the predictor's output (what diffusers' step() returns and where
    the model is evaluated); its corrected value is formed inside the next step. So the spec's
    step i, from the target's own states x_T, …, x_{t_i}, takes x̂_0 of each (the history m),
    rebuilds the corrected states from x_T by UniC-q, and takes UniP-q from the last of them.
    """

    order: int = 2
    variant: str = "bh2"
    corrector: bool = True
    lower_order_final: bool = True

    @property
    def formula(self) -> str:
        return (f"UniPC-{self.order} (Zhao et al. 2023, §3; variant {self.variant}, corrector "
                f"{'UniC after every step but the last' if self.corrector else 'off'}): UniP-q "
                "x' = x_base − √ᾱ_next·B(h)·Σ ρ_k·D_k from the corrected state, q = min(p, i + 1"
                + (", n − i)" if self.lower_order_final else ")") + "; into ᾱ = 1 first order (x̂_0)")

    def check(self, claim):
        if self.order not in (1, 2, 3):
            raise ValueError(f"UniPC order must be 1, 2 or 3, got {self.order}")

    def q(self, i: int, n: int) -> int:
        """The order of step i of n."""
        return min(self.order, i + 1, n - i) if self.lower_order_final else min(self.order, i + 1)

    def step(self, o, i, x, z, before):
        path, n = o.path, len(o.path) - 1
        if path[i + 1] == path[i]:
            return o.keep_level(path[i], x)
        if len(before) < i:
            raise ValueError(f"UniPC step {i} needs the states at t = {list(path[:i])}")
        states = [*before[:i], x]
        m = [x0_pred(o.sched, o.model, s, path[k]) for k, s in enumerate(states)]
        xc = states[0]
        for k in range(1, i + 1):  # the corrected state at path[k], from the one at path[k − 1]
            q = self.q(k - 1, n)
            xc = (unic_step(o.sched, xc, m[k - q:k], path[k - q:k], path[k], m[k], self.variant)
                  if self.corrector else states[k])
        q = self.q(i, n)
        return unip_step(o.sched, xc, m[i + 1 - q:i + 1], path[i + 1 - q:i + 1], path[i + 1],
                         self.variant)

    def final(self, o, x_T, noise):
        if o.claim.end == 0 and self.lower_order_final:  # the spec's own sampler
            return unipc_sample(o.sched, o.model, x_T, list(o.path), order=self.order,
                                variant=self.variant, corrector=self.corrector)
        return super().final(o, x_T, noise)


@dataclass(frozen=True)
class FlowUniPC(UniPC):
    """UniPC (`UniPC`) run on a flow claim's σ's through spec.flow's exact VP ↔ flow map: the
    flow state x_σ is the VP state x_t = x_σ·(√ᾱ_t + √(1 − ᾱ_t)) of the claim's table
    (spec.flow.flow_to_vp; λ_t = log((1 − σ)/σ) is half_log_snr(ᾱ_t)), the velocity model read
    as x̂_0 = x_σ − σ·v̂ (`oracle.VelocityAsX0`); the spec's UniPC steps in VP scale and its
    result is mapped back (spec.flow.vp_to_flow). Every UniPC coefficient is a function of λ and
    of the ratios σ_next/σ_t, α_next/α_t, which the map keeps, so this is UniPC on α = 1 − σ."""

    velocity = True

    @property
    def formula(self) -> str:
        return (super().formula + "; on flow states x_σ = x_t/(√ᾱ_t + √(1 − ᾱ_t)), σ = √(1 − ᾱ_t)/"
                "(√ᾱ_t + √(1 − ᾱ_t)) (spec.flow's exact map), x̂_0 = x_σ − σ·v̂(x_σ, σ)")

    @property
    def on_vp(self) -> UniPC:
        """The same UniPC on VP states."""
        return UniPC(self.order, self.variant, self.corrector, self.lower_order_final)

    def step(self, o, i, x, z, before):
        states = [flow_to_vp(o.flow_sigma(t), s)[1] for t, s in zip(o.path, [*before[:i], x], strict=False)]
        x_next = self.on_vp.step(o.flow_as_vp(), i, states[-1], z, states[:-1])
        return vp_to_flow(float(o.sched.alpha_bar[o.path[i + 1]]), x_next)[0]

    def final(self, o, x_T, noise):
        x = self.on_vp.final(o.flow_as_vp(), flow_to_vp(o.flow_sigma(o.path[0]), x_T)[1], noise)
        return vp_to_flow(float(o.sched.alpha_bar[o.path[-1]]), x)[0]


@dataclass(frozen=True)
class EDMEulerAncestral(EDMEuler):
    """The ancestral Euler step in EDM form (k-diffusion's `sample_euler_ancestral`, η = 1;
    `spec.edm.edm_euler_ancestral_step`) on the VP σ's of the claimed grid and σ = 0 at its
    end, as `EDMEuler`; noise z_i is added as σ_up·z_i in EDM scale (x̃), as DDPM's is in VP."""

    @property
    def formula(self) -> str:
        return ("EDM ancestral Euler (k-diffusion sample_euler_ancestral, η = 1): σ_up = "
                "min(σ_next, √(σ_next²(σ² − σ_next²)/σ²)), σ_down = √(σ_next² − σ_up²), "
                "x̃' = x̃ + (σ_down − σ)·(x̃ − D(x̃; σ))/σ + σ_up·z on σ_t = √((1−ᾱ_t)/ᾱ_t), σ = 0 at the end")

    def step(self, o, i, x, z, before):
        t, t_prev = o.path[i], o.path[i + 1]
        s, s_next = o.sigma(t), (o.sigma(t_prev) if t_prev > 0 else 0.0)
        x_tilde = edm_euler_ancestral_step(o.times([t, t_prev]), o.model, o.to_edm(t, x), s,
                                           s_next, z)
        return edm_to_vp(s_next, x_tilde)[1]

    def final(self, o, x_T, noise):
        sigmas = [o.sigma(t) for t in o.claim.grid] + [0.0]
        x_tilde = edm_euler_ancestral_sample(o.times(list(o.claim.grid)), o.model,
                                             o.to_edm(o.path[0], x_T), sigmas, noise)
        return edm_to_vp(0.0, x_tilde)[1]


@dataclass(frozen=True)
class FlowEuler(Method):
    """Euler's method on the rectified-flow ODE dx/dσ = v̂(x, σ) (SD3 §2;
    `spec.flow.flow_euler_step`) over the claimed σ's.

    A flow claim states its σ's as a table: T = n, table time t ↔ the grid's σ, read back by
    `SpecOracle.flow_sigma` (spec.flow.vp_to_flow of the claim's ᾱ_t, the exact VP ↔ flow map),
    t = 0 ↔ σ = 0; its states are the flow states x_σ themselves. Its model is a velocity model
    fed σ (`velocity`): both sides read the harness's network as v̂(x, σ) directly, so a claim
    may start at σ = 1 (ᾱ = 0), where an ε-model says nothing (`targets.flow_betas`).
    """

    velocity = True

    @property
    def formula(self) -> str:
        return "flow Euler (SD3 §2): x' = x + (σ_next − σ)·v̂(x, σ) on the claimed σ's"

    def step(self, o, i, x, z, before):
        s, s_next = o.flow_sigma(o.path[i]), o.flow_sigma(o.path[i + 1])
        return flow_euler_step(RectifiedFlow(), o.velocity_model, x, s, s_next)

    def final(self, o, x_T, noise):
        return flow_euler_sample(RectifiedFlow(), o.velocity_model, x_T,
                                 [o.flow_sigma(t) for t in o.path])


@dataclass(frozen=True)
class FlowHeun(FlowEuler):
    """Heun's method on the rectified-flow ODE (`spec.flow.flow_heun_step`: Karras et al. 2022,
    Algorithm 1's trapezoidal rule on dx/dσ = v̂), over the claimed σ's as `FlowEuler`.

    euler_last: the step into σ = 0 is Euler's, one model call (Algorithm 1 taken literally:
    its line 7 corrects only when σ_next ≠ 0); the spec's `flow_heun_sample` corrects every step,
    the velocity being defined at σ = 0 (docs/errata.md). Either way both computations are the
    spec's own step functions.
    """

    euler_last: bool = False

    @property
    def formula(self) -> str:
        return ("flow Heun (Karras Algorithm 1 on dx/dσ = v̂): d = v̂(x, σ), x_e = x + (σ_next − σ)·d, "
                "x' = x + (σ_next − σ)·(d + v̂(x_e, σ_next))/2"
                + ("; Euler into σ = 0" if self.euler_last else ", every step corrected"))

    def calls(self, path: Sequence[int]) -> list[tuple[int, int]]:
        out = []
        for i in range(len(path) - 1):
            out.append((i, path[i]))
            if path[i + 1] > 0 or not self.euler_last:
                out.append((i, path[i + 1]))
        return out

    def step(self, o, i, x, z, before):
        s, s_next = o.flow_sigma(o.path[i]), o.flow_sigma(o.path[i + 1])
        rule = flow_euler_step if self.euler_last and o.path[i + 1] == 0 else flow_heun_step
        return rule(RectifiedFlow(), o.velocity_model, x, s, s_next)

    def final(self, o, x_T, noise):
        if self.euler_last:
            return Method.final(self, o, x_T, noise)
        return flow_heun_sample(RectifiedFlow(), o.velocity_model, x_T,
                                [o.flow_sigma(t) for t in o.path])
