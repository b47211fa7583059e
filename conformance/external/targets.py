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

The step rules are the classes of `conformance.external.methods`, each with the spec's
computation of itself. `conformance.external.step_target.StepTarget` turns a plain step function
into a target in a few lines. `eps_to_prediction` is the ONE place where an ε-model is turned into an x_0-
or v-model for a target that expects those.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from conformance.external.methods import (
    DDIM,
    DDPM,
    DPMSolverPP,
    DPMSolverPP2S,
    DPMSolverPP3M,
    EDMEuler,
    EDMEulerAncestral,
    EDMHeun,
    FlowEuler,
    FlowHeun,
    FlowUniPC,
    Method,
    UniPC,
)

Prediction = Literal["epsilon", "sample", "v_prediction"]
PREDICTIONS: tuple[str, ...] = ("epsilon", "sample", "v_prediction")

Predict = Callable[[np.ndarray, int], np.ndarray]
"""predict(x, t): the model's prediction of the claimed kind for x = x_t at spec time t."""


class OutsideSpec(ValueError):
    """A claim the spec has no function for: an option or a method (UniPC's corrector, a
    third-order solver, timesteps between table entries), with the reason as its message.

    `prepare` (or a method's `check`) raises it; the harness reports the family as "outside the
    spec", never as a deviation. Any other exception from `prepare` is a claim that departs from
    the spec's domain (a grid past the schedule): a deviation.
    """


VERDICTS: dict[str, str] = {
    "agrees": "agrees: the spec has this method and the target computes it, within the tolerance",
    "deviates": "deviates: the spec has this method and the target departs from it (the "
    "reproduction names the equation)",
    "outside": "outside the spec: an option or method with no spec function (the reason is given)",
    "failed": "target failed: it raised, or its output is not finite where the spec's is",
}
"""The four verdicts of a case or a family, by key: the table, the report, the JSON and the
expectations file carry these keys."""


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
        if not self.method.velocity and not defined_at_zero_snr(self.prediction) and ab[g[0] - 1] == 0:
            raise OutsideSpec(
                f"an ε-prediction claim cannot start at t = {g[0]}, where ᾱ = 0 (zero terminal "
                "SNR): ε says nothing about x_0 there (spec.prediction.x0_from_output raises); "
                "only x_0- and v-prediction are defined"
            )
        self.method.check(self)

    @property
    def T(self) -> int:
        return len(self.betas)

    @property
    def path(self) -> tuple[int, ...]:
        """The times the states live at: t_0, …, t_{n−1}, end (n + 1 entries)."""
        return (*self.grid, self.end)

    @property
    def call_plan(self) -> tuple[tuple[int, int], ...]:
        """(step, t) of every model call the method makes along the path, in order (`Method.calls`:
        one per grid time, step i at t_i, for every method but Heun)."""
        return tuple(self.method.calls(self.path))

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
    accumulates: bool = False  # the whole loop gets n × one step's bound (as when magnified)
    stage: float = 0.0  # + stage·max |σ − σ_c|/σ_c over a flow step's calls at a later σ_c > 0

    @staticmethod
    def stage_ratio(alpha_bars: np.ndarray, claim: Claim) -> float:
        """max |σ_i − σ_c|/σ_c over the model calls of flow step i at a σ_c > 0 other than its
        own σ_i (a Heun step's second stage at σ_next), σ by spec.flow.vp_to_flow; 0 without."""
        from spec.flow import vp_to_flow

        path = claim.path

        def sigma(t: int) -> float:
            return float(vp_to_flow(float(alpha_bars[t]), np.zeros(1))[1])

        return max((abs(sigma(path[i]) - sigma(t)) / sigma(t)
                    for i, t in claim.method.calls(path) if t not in (path[i], 0)), default=0.0)

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
        if self.stage and claim.method.velocity:
            b += self.stage * self.stage_ratio(ab, claim)
        if (self.magnified or self.accumulates) and loop:
            b *= len(grid)
        if claim.method.velocity:  # spec.flow's steps divide by nothing: no safe_div term
            return float(b)
        inv = [1.0 / (1.0 - ab[t]) for t in claim.path if t > 0 and ab[t] < 1.0]
        inv += [1.0 / ab[t] for t in claim.path if ab[t] > 0.0]
        return float(b + 8 * EPS * max(inv, default=0.0))


FLOAT64 = Tolerance(
    1e-8,
    "float64 on both sides; what is left is the order of operations (~1e-16 each, magnified "
    "by 1/√ᾱ_t in x̂_0), ᾱ rebuilt by a cumulative product (~1e-16 per factor) and a variance "
    "floor such as diffusers' 1e-20 (σ = 1e-10); 1e-8 is 100× the largest of these. Every "
    "bound adds 8·EPS·max(1/(1−ᾱ_t), 1/ᾱ_t) over the path for the spec's safe_div (EPS = 1e-12)",
)


FLOAT32 = Tolerance(
    2e-5,
    "as shipped: the target's ᾱ table, its step coefficients and the sample are float32 "
    "(u = 2^-24 ≈ 6e-8 per rounding). One step: 2e-5 × max(1, 1/√ᾱ_t) (about 300 roundings, "
    "magnified by x̂_0 = (x − √(1−ᾱ)ε)/√ᾱ, DDIM Eq. 9) + 64u × max 1/(1 − ᾱ_t) (1 − ᾱ_t and "
    "DDPM's β'_t = 1 − ᾱ_t/ᾱ_prev are formed by cancellation, and the coefficient of x̂_0 in "
    "DDPM Eq. 7 divides by 1 − ᾱ_t), over the grid; the whole loop: n times one step's bound",
    magnified=True,
    cancel=64 * 2.0**-24,
)


FLOW32 = Tolerance(
    2e-6,
    "flow, as shipped: the target's σ's and sample are float32 (u = 2^-24 ≈ 6e-8 per rounding) "
    "and the claim reads its σ's back from the exact VP map in float64 (~1e-9 relative). One "
    "step x + (σ_next − σ)·v̂ rounds x, v̂ and the product once each, and a Heun step six times: "
    "2e-6 is about 30 roundings of a value of size max(1, |x|); no 1/√ᾱ, no 1 − ᾱ. A Heun step's "
    "second stage in Karras Algorithm 1's denoiser form, d' = (x_e − D)/σ_next with "
    "D = x_e − σ_next·v̂, divides D's rounding (u·|x_e|) by σ_next and multiplies it by "
    "|σ − σ_next|/2: + 8u × max |σ − σ_next|/σ_next over those stages; the whole loop: n times "
    "one step's bound",
    accumulates=True,
    stage=8 * 2.0**-24,
)


def flow_betas(sigmas: Sequence[float]) -> np.ndarray:
    """The table of a flow claim: σ_0 > σ_1 > … > σ_{n−1} > 0 as table times t = n, …, 1 (t = 0
    is σ = 0), by the exact map ᾱ = (1 − σ)²/((1 − σ)² + σ²) of spec.flow.flow_to_vp;
    returned as the betas of that ᾱ table (β_t = 1 − ᾱ_t/ᾱ_{t−1}; β_n = 1 at σ_0 = 1).
    Shapes: sigmas (n,) -> (n,)."""
    from spec.flow import flow_to_vp

    ab = np.array([flow_to_vp(float(s), np.zeros(1))[0] for s in reversed(list(sigmas))])
    return 1.0 - ab / np.concatenate([[1.0], ab[:-1]])


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
        """Build the implementation for `config` and return its claim and sampler; raise
        `OutsideSpec` (with the reason) for a configuration the spec has no function for."""
        ...

    # Optional: code(config) -> str, the target's own code for a configuration (reproductions);
    # config_type, the configuration dataclass (for --case JSON); tolerance(config) -> Tolerance
    # (for --case; default FLOAT64).


class InvalidConfig(TypeError):
    """A drawn configuration the harness cannot use; the message says what is expected."""


def validate_config(config: Any, sampled: bool = True) -> None:
    """Raise InvalidConfig unless `config` is hashable and, for a target that samples
    (`sampled`), has a `shape` (a tuple of positive ints, the shape of x) and an int `seed` (of
    x_T, the noise and the model): a frozen dataclass such as `SpecConfig` or `SchedulerConfig`
    has all three."""
    kind = type(config).__name__
    expected = "expected a frozen dataclass with shape: tuple[int, ...] and seed: int"
    try:
        hash(config)
    except TypeError:
        raise InvalidConfig(f"configuration {config!r:.80} ({kind}) is not hashable; {expected} "
                            "(a dict or a list is not)") from None
    if not sampled:
        return
    shape = getattr(config, "shape", None)
    if not (isinstance(shape, tuple) and shape and all(
            isinstance(k, (int, np.integer)) and k > 0 for k in shape)):
        raise InvalidConfig(f"configuration {kind} has shape {shape!r}; {expected} (positive "
                            "sizes, e.g. shape=(1, 3, 4, 4))")
    seed = getattr(config, "seed", None)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise InvalidConfig(f"configuration {kind} has seed {seed!r}; {expected}")


def config_code(target: Any, config: Any) -> str:
    """How to reproduce `config` in the target's own code: `target.code(config)` where the
    target has one (optional in the protocol), else the config's repr."""
    code = getattr(target, "code", None)
    return code(config) if code is not None else repr(config)


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


__all__ = [
    "DDIM", "DDPM", "DPMSolverPP", "DPMSolverPP2S", "DPMSolverPP3M", "EDMEuler", "EDMEulerAncestral", "EDMHeun",
    "FLOAT32", "FLOAT64", "FLOW32", "FlowEuler", "FlowHeun", "FlowUniPC", "PREDICTIONS", "UniPC", "flow_betas",
    "SPEC_PREDICTION", "VERDICTS", "Claim", "Family", "InvalidConfig", "Method", "OutsideSpec",
    "Predict", "Run", "Target", "Tolerance", "config_code", "eps_to_prediction", "validate_config",
]
