"""The protocol for an implementation under test (a *target*), in the spec's conventions.

A target is anything that runs a DDIM- or DDPM-family reverse process: diffusers' schedulers,
a sampler from a paper's repository, your own step function. The harness asks it two things:

1. **Its claim** (`Claim`): what it says it computes, written in the spec's conventions
   (`spec/__init__.py`): the schedule as betas of `spec.schedule.VPSchedule` (index t ∈ {0..T},
   ᾱ_0 = 1), the grid of times t_0 > t_1 > … > t_{n−1} at which it calls the model, the time
   `end` its last step lands on, the step rule (`DDIM`, `DDPM`, `EDMEuler`, `EDMHeun` or
   `DPMSolverPP`, with their options) and what its model predicts (ε, x_0 or v). The spec
   computes exactly that claim; the two are compared.
   Model calls: a claim calls the model once per grid time, at t_i in step i — except
   `EDMHeun`, which states its own sequence (`Claim.call_plan`: t_i, then t_{i+1} for its
   corrector, one call on a step into σ = 0). A target whose method calls the model twice per
   step therefore needs nothing new: its claim's method says how many calls it makes, and the
   harness compares the recorded calls with `Claim.calls`. `DPMSolverPP` is multistep: the
   oracle's step i also gets the target's state at path[i − 1] (its previous model output).
2. **Its trajectory** (`Run.sample`): given x_T, a model and one noise array per step, the states
   x_T, x_{t_1}, …, x_end it produces. The model it receives is `predict(x, t)`: the prediction
   (of the claimed kind) at *spec* time t. A target whose own code names times differently
   (diffusers' τ = t − 1) converts its names to t in one function of its adapter before calling
   `predict`; the harness records every call, so a target that evaluates the model at a time its
   grid does not claim is reported.

`StepTarget` turns a plain step function into a target in a few lines (README, "Checking other
implementations"). `eps_to_prediction` is the ONE place where an ε-model is turned into an x_0-
or v-model for a target that expects those.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

Prediction = Literal["epsilon", "sample", "v_prediction"]
PREDICTIONS: tuple[str, ...] = ("epsilon", "sample", "v_prediction")

Predict = Callable[[np.ndarray, int], np.ndarray]
"""predict(x, t): the model's prediction of the claimed kind for x = x_t at spec time t."""


@dataclass(frozen=True)
class DDIM:
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


@dataclass(frozen=True)
class DDPM:
    """The ancestral DDPM step (Ho et al. 2020, Algorithm 2) on the claimed grid.

    On a grid coarser than every step the chain is respaced (Nichol & Dhariwal 2021, §4):
    β'_t = 1 − ᾱ_t/ᾱ_prev between consecutive grid times. variance: "beta_tilde" is σ² = β̃_t
    (the posterior variance, DDPM Eq. 7), "beta" is σ² = β_t (DDPM §3.2, the other fixed
    choice). The last step (into t = 0's neighbour) adds no noise: z = 0 at t = 1 (Algorithm 2).
    clip: x̂_0 clipped to [−1, 1] and the mean taken as μ̃_t(x_t, x̂_0) (DDPM Eq. 7).
    """

    variance: Literal["beta_tilde", "beta"] = "beta_tilde"
    clip: bool = False

    @property
    def formula(self) -> str:
        var = "σ² = β̃_t (Eq. 7)" if self.variance == "beta_tilde" else "σ² = β_t (§3.2)"
        mean = (
            "μ̃_t(x_t, clip(x̂_0)) (Eq. 7)" if self.clip else "μ_θ = (x_t − β_t/√(1−ᾱ_t)·ε̂)/√α_t (Eq. 11)"
        )
        return (
            f"DDPM Algorithm 2 (Ho et al. 2020): mean {mean}, {var}, z = 0 on the last step; "
            "on a strided grid β'_t = 1 − ᾱ_t/ᾱ_prev (Nichol & Dhariwal 2021, §4)"
        )


@dataclass(frozen=True)
class EDMEuler:
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


@dataclass(frozen=True)
class EDMHeun:
    """Heun's method on the EDM ODE (Karras et al. 2022, Algorithm 1; `spec.edm.edm_heun_step`),
    on the VP σ_t = √((1 − ᾱ_t)/ᾱ_t) of the claimed grid and σ = 0 at its end; states compared
    in VP scale as for `EDMEuler`.

    The one method here that calls the model twice per step: at t_i (Euler predictor) and at
    t_{i+1} on the predicted state (the trapezoidal corrector), except on a step into σ = 0,
    which is Euler's (the slope is undefined at σ = 0): `calls` lists them.
    """

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
class DPMSolverPP:
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


Method = DDIM | DDPM | EDMEuler | EDMHeun | DPMSolverPP


@dataclass(frozen=True, eq=False)
class Claim:
    """What one run of a target says it computes, in the spec's conventions.

    betas: (T,) float64, the schedule VPSchedule(betas) whose ᾱ the target's table holds;
    grid: t_0 > … > t_{n−1} in {1..T}, the times at which the model is called, in order;
    end: the time the last step lands on, 0 ≤ end ≤ t_{n−1} (0 normally; end = t_{n−1} = 1 is a
      step that keeps the noise level, diffusers' set_alpha_to_one=False on a grid ending at t=1);
    method: the step rule; prediction: what the model given to the target returns;
    labels: the target's own name of each grid time and of `end` (n + 1 strings), for reports.
    """

    betas: np.ndarray
    grid: tuple[int, ...]
    end: int
    method: Method
    prediction: str = "epsilon"
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        T = len(self.betas)
        g = self.grid
        if not g or not all(1 <= t <= T for t in g) or any(a <= b for a, b in zip(g, g[1:], strict=False)):
            raise ValueError(
                f"claim grid must be strictly decreasing times in {{1..{T}}}, got {list(g)}"
            )
        if not 0 <= self.end <= g[-1]:
            raise ValueError(f"claim end must be in {{0..{g[-1]}}}, got {self.end}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        ab = np.cumprod(1.0 - np.asarray(self.betas, dtype=np.float64))  # ᾱ_1..ᾱ_T
        if not defined_at_zero_snr(self.prediction) and ab[g[0] - 1] == 0:
            raise ValueError(
                f"an ε-prediction claim cannot start at t = {g[0]}, where ᾱ = 0 (zero terminal "
                "SNR): ε says nothing about x_0 there (spec.prediction.x0_from_output raises); "
                "only x_0- and v-prediction are defined"
            )

    @property
    def T(self) -> int:
        return len(self.betas)

    @property
    def path(self) -> tuple[int, ...]:
        """The times the states live at: t_0, …, t_{n−1}, end (n + 1 entries)."""
        return (*self.grid, self.end)

    @property
    def call_plan(self) -> tuple[tuple[int, int], ...]:
        """(step, t) of every model call the method makes along the path, in order: one per
        grid time (step i calls at t_i) for every method but Heun, whose `calls` says."""
        plan = getattr(self.method, "calls", None)
        if plan is not None:
            return tuple(plan(self.path))
        return tuple(enumerate(self.grid))

    @property
    def calls(self) -> tuple[int, ...]:
        """The times of every model call the claim makes, in order (`call_plan` without steps)."""
        return tuple(t for _, t in self.call_plan)

    def label(self, i: int) -> str:
        """The target's name of path[i] (its spec time when the target gave no labels)."""
        return self.labels[i] if self.labels else f"t={self.path[i]}"


@dataclass
class Run:
    """One prepared run of a target: its claim and how to produce its trajectory.

    sample(x_T, predict, noise) returns the n + 1 states x_T, …, x_end as NumPy arrays; noise
    has shape (n, *x_T.shape) and noise[i] belongs to step i (the step out of grid[i]).
    dtype: the dtype the target computes the sample in (float64 where it allows it).
    describe(i): optional, the target's own account of step i (its times, its table entries).
    repro: optional, a few lines of the target's own code that reproduce this run.
    """

    claim: Claim
    sample: Callable[[np.ndarray, Predict, np.ndarray], list[np.ndarray]]
    dtype: Any = np.float64
    describe: Callable[[int], str] | None = None
    repro: str = ""


@dataclass(frozen=True)
class Tolerance:
    """A bound on max|target − spec| / max(1, max|spec|), with the reason it is that size.

    The bound of one step (`bound`) is rel — times max(1, 1/√ᾱ_t) over the claimed times when
    `magnified` (a low-precision target, whose rounding x̂_0 = (x − √(1−ᾱ)ε̂)/√ᾱ magnifies; its
    whole loop gets n times that, one step's rounding per step), plus cancel·max 1/(1 − ᾱ_t)
    over the grid (a target that forms 1 − ᾱ_t or 1 − ᾱ_t/ᾱ_prev in low precision) —
    plus the spec's own totality term 8·EPS·max(1/(1 − ᾱ_t), 1/ᾱ_t) over the path: safe_div
    adds EPS = 1e-12 to denominators such as 1 − ᾱ_t (DDPM Eq. 7, DDIM Eq. 16) and ᾱ_prev,
    which changes the spec's value by EPS/denominator relatively.
    """

    rel: float
    reason: str
    magnified: bool = False
    cancel: float = 0.0  # + cancel·max 1/(1 − ᾱ_t) over the grid (a low-precision 1 − ᾱ)

    def bound(self, alpha_bars: np.ndarray, claim: Claim, loop: bool = False) -> float:
        """The bound of one step of `claim` (loop=False) or of its whole loop (loop=True: for a
        magnified tolerance n × the one-step bound, since each of the n steps rounds anew)."""
        from spec.core import EPS

        ab = np.asarray(alpha_bars, dtype=np.float64)
        grid = list(claim.grid)
        b = self.rel
        if self.magnified:
            b *= max(1.0, *(1.0 / np.sqrt(ab[t]) for t in grid))
        b += self.cancel * max(1.0 / (1.0 - ab[t]) for t in grid)
        if self.magnified and loop:
            b *= len(grid)
        inv = [1.0 / (1.0 - ab[t]) for t in claim.path if t > 0 and ab[t] < 1.0]
        inv += [1.0 / ab[t] for t in claim.path if ab[t] > 0.0]
        return float(b + 8 * EPS * max(inv, default=0.0))


@dataclass(frozen=True)
class Family:
    """A named family of configurations: a hypothesis strategy drawing configs for `prepare`.

    Every member of a family is expected to behave alike (all agree or all deviate), so that a
    family's verdict does not depend on which members were drawn.
    """

    name: str
    strategy: Any
    tolerance: Tolerance
    note: str = ""


class Target(Protocol):
    """An implementation under test: named configuration families and a way to run a config."""

    name: str

    def families(self, profile: str) -> Sequence[Family]:
        """The families to check; profile "small" (make test) or "full" (the command)."""
        ...

    def prepare(self, config: Any) -> Run:
        """Build the implementation for `config` and return its claim and sampler."""
        ...


# ---------------------------------------------------------------------------------------------
# Prediction targets: THE one conversion from an ε-model, done by the spec's prediction module

SPEC_PREDICTION: dict[str, str] = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
"""A target's name of a prediction kind (diffusers' prediction_type) → spec.prediction's name."""


def defined_at_zero_snr(prediction: str) -> bool:
    """Whether x̂_0 of a `prediction` output exists at ᾱ = 0 (spec.prediction.PREDICTION_TABLE)."""
    from spec.prediction import PREDICTION_TABLE

    return PREDICTION_TABLE[SPEC_PREDICTION[prediction]].x0_at_zero_snr


def eps_to_prediction(
    eps: np.ndarray, x_t: np.ndarray, sched: Any, t: int, prediction: str
) -> np.ndarray:
    """An ε-prediction at x_t (time t of `sched`, a spec.schedule.VPSchedule) turned into the
    prediction a target expects — by the spec's own conversion, written once in spec.prediction.

    Formula: x̂_0 = spec.prediction.predict_x0(sched, x_t, ε̂, t, "eps") (DDIM Eq. 9), then
    out = spec.prediction.prediction_target(sched, x̂_0, t, ε̂, p): ε̂, x̂_0 or
    v = √ᾱ_t·ε̂ − √(1−ᾱ_t)·x̂_0 (Salimans & Ho 2022, §4) for p = SPEC_PREDICTION[prediction].
    Exact in real arithmetic, so an ε-model and its x_0- or v-twin define the same sampler.
    ᾱ_t = 0 (zero terminal SNR) with an x_0/v target raises the spec's ValueError: ε says
    nothing about x_0 there (such claims are run with a model of the claimed kind instead).
    Shapes: eps (*shape), x_t (*shape) -> (*shape).
    """
    from spec.prediction import predict_x0, prediction_target

    if prediction not in SPEC_PREDICTION:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    if prediction == "epsilon":
        return eps
    x0 = predict_x0(sched, x_t, eps, t, "eps")
    return prediction_target(sched, x0, t, eps, SPEC_PREDICTION[prediction])


# ---------------------------------------------------------------------------------------------
# A user's own step function as a target


@dataclass(frozen=True)
class SpecConfig:
    """A configuration in the spec's own conventions, drawn for a `StepTarget`.

    betas (T,) float64; grid t_0 > … > t_{n−1} ≥ 1 with end 0; eta, clip as in `DDIM`/`DDPM`;
    shape of x; seed of x_T, the noise and the ε-model.
    """

    betas: tuple[float, ...]
    grid: tuple[int, ...]
    eta: float
    clip: bool
    shape: tuple[int, ...]
    seed: int
    prediction: str = "epsilon"

    @property
    def T(self) -> int:
        return len(self.betas)

    @property
    def alpha_bars(self) -> np.ndarray:
        """ᾱ_0..ᾱ_T (T + 1 entries, ᾱ_0 = 1), from the spec's own schedule."""
        from spec.schedule import VPSchedule

        return VPSchedule(np.asarray(self.betas, dtype=np.float64)).alpha_bar

    def describe(self) -> str:
        return (
            f"T={self.T} betas=[{self.betas[0]:.6g} … {self.betas[-1]:.6g}] grid={list(self.grid)}"
            f"→0 eta={self.eta:g} clip={self.clip} prediction={self.prediction} "
            f"shape={self.shape} seed={self.seed}"
        )


StepFn = Callable[[Callable[[np.ndarray, Any], np.ndarray], np.ndarray, Any, Any, np.ndarray],
                  np.ndarray]
"""step(model, x, t, t_prev, z) -> x_prev; model(x, t) -> prediction; times in the target's labels."""


@dataclass
class StepTarget:
    """Your own step function as a target.

    make_step(cfg: SpecConfig) returns step(model, x, t, t_prev, z) -> x_prev. The harness runs
    it over cfg.grid (then to 0) with model(x, t) giving the prediction of cfg.prediction.
    kind: "ddim" (checked against DDIM Eq. 12 with cfg.eta and cfg.clip), "ddpm" (Algorithm 2,
      σ² = β̃, cfg.clip) or "heun" (EDM Heun, Karras Algorithm 1, on σ_t = √((1−ᾱ_t)/ᾱ_t) and
      σ = 0 at the end: your step takes and returns VP states x_t → x_{t_prev} and may call
      the model twice, at t and at t_prev; η = 0 and no clipping are drawn).
    label / unlabel: how your code names a spec time t and back (default: the spec's t itself);
      `label=lambda t: t - 1, unlabel=lambda s: s + 1` is diffusers' τ.
    families: the configuration families to draw (default: `conformance.external.check.
      spec_families(kind)`).
    """

    name: str
    kind: Literal["ddim", "ddpm", "heun"]
    make_step: Callable[[SpecConfig], StepFn]
    label: Callable[[int], Any] = field(default=lambda t: t)
    unlabel: Callable[[Any], int] = field(default=lambda s: s)
    prediction: str = "epsilon"
    custom_families: Sequence[Family] | None = None

    def families(self, profile: str) -> Sequence[Family]:
        if self.custom_families is not None:
            return self.custom_families
        from conformance.external.check import spec_families

        return spec_families(self.kind, profile, self.prediction)

    def prepare(self, config: SpecConfig) -> Run:
        method: Method
        if self.kind == "heun":
            method = EDMHeun()
        elif self.kind == "ddim":
            method = DDIM(eta=config.eta, clip=config.clip)
        else:
            method = DDPM(variance="beta_tilde", clip=config.clip)
        path = (*config.grid, 0)
        claim = Claim(
            betas=np.asarray(config.betas, dtype=np.float64),
            grid=tuple(config.grid),
            end=0,
            method=method,
            prediction=config.prediction,
            labels=tuple(f"{self.label(t)!r}" for t in path),
        )
        step = self.make_step(config)

        def sample(x_T: np.ndarray, predict: Predict, noise: np.ndarray) -> list[np.ndarray]:
            def model(x: np.ndarray, label: Any) -> np.ndarray:
                return predict(x, self.unlabel(label))

            states = [x_T]
            for i in range(len(path) - 1):
                t, t_prev = self.label(path[i]), self.label(path[i + 1])
                states.append(np.asarray(step(model, states[-1], t, t_prev, noise[i])))
            return states

        return Run(claim=claim, sample=sample, repro=f"{self.name}: {config.describe()}")
