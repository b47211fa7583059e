"""What the network predicts: ε, x_0 or v, and the one place its output becomes x̂_0 and ε̂.

A diffusion network sees x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε and may be trained to output

    ε     the noise (DDPM, Ho et al. 2020, Eq. 14)                       prediction = "eps"
    x_0   the clean sample                                               prediction = "x0"
    v     √ᾱ_t·ε − √(1 − ᾱ_t)·x_0 (Salimans & Ho 2022, "Progressive      prediction = "v"
          Distillation for Fast Sampling of Diffusion Models", §4 and App. D)

Given x_t, any one of (ε, x_0, v) fixes the other two (two linear equations in two unknowns):

    from ε:   x̂_0 = (x_t − √(1 − ᾱ)·ε̂) / √ᾱ                                         (DDIM Eq. 9)
    from x_0: ε̂ = (x_t − √ᾱ·x̂_0) / √(1 − ᾱ)
    from v:   x̂_0 = √ᾱ·x_t − √(1 − ᾱ)·v̂,   ε̂ = √(1 − ᾱ)·x_t + √ᾱ·v̂      (Salimans & Ho, App. D)

`x0_from_output` and `eps_from_output` are these formulas, written once; `predict_x0` and
`predict_eps` read ᾱ_t off a schedule; `denoise` calls a model and returns both. Every sampler
(DDPM, DDIM, the PF ODE), the loss and the likelihood take the model's output through them.

Zero terminal SNR (ᾱ_T = 0, `spec.schedule.rescale_zero_terminal_snr`): there x_T = ε, so an
ε-prediction carries no information about x_0 and x̂_0 = (x_T − ε̂)/0 does not exist. That case is
a ValueError (it is what sampling an ε-model from t = T under such a schedule asks for); x_0- and
v-predictions give x̂_0 = out and x̂_0 = −v̂ there. The other division, by √(1 − ᾱ) for ε̂ from an
x_0-prediction, is safe_div's case at t = 0 (1 − ᾱ_0 = 0), as everywhere else in the spec.

The signal-to-noise ratio SNR(t) = ᾱ_t/(1 − ᾱ_t) (Kingma et al. 2021, Eq. 1's α²/σ²) weighs
the three losses against each other (all per element, x̂_0 and ε̂ implied by the output):

    ‖ε − ε̂‖² = SNR·‖x_0 − x̂_0‖² = ᾱ·‖v − v̂‖² = SNR/(SNR + 1)·‖v − v̂‖²

Min-SNR-γ weighting (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting
Strategy", Eq. 7–8) weighs the x_0-loss by min(SNR, γ); in each prediction's own loss that is

    eps: min(SNR, γ)/SNR = min(1, γ/SNR)      x0: min(SNR, γ)      v: min(SNR, γ)/(SNR + 1)

so with γ = ∞ every prediction's weighted loss is the plain ε-loss (DDPM's L_simple).

The table: `PREDICTION_TABLE` holds each prediction as data, the coefficients of the formulas
above as functions of (√ᾱ, √(1 − ᾱ)) and its min-SNR-γ weight; every function below reads its
row through `combine`, and no function branches on the name. A new prediction target is one row
here and its twin in `runtime.prediction.PREDICTION_TABLE`.

Models: an `EpsModel` (only `.eps(x, t_norm)`) predicts ε, as in TorchLean; a `Denoiser` has
`.prediction` ∈ PREDICTIONS (the table's names) and `.output(x, t_norm)`.
`PredictionModel(net, "v")` turns any object with `.eps` (e.g. `eps_film_net(cfg, params)`, whose
forward is the same network whatever it was trained to predict) into a Denoiser.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from jaxtyping import Float

from spec.core import (
    EpsModel,
    Index,
    Scalar,
    check,
    holds,
    in_range,
    safe_div,
    same_shape,
    sqrt_nonneg,
)
from spec.schedule import VPSchedule, time_of_index

__all__ = [
    "PREDICTION_TABLE",
    "PREDICTIONS",
    "Denoiser",
    "x0_from_output",
    "eps_from_output",
    "predict_x0",
    "predict_eps",
    "v_target",
    "prediction_target",
    "denoise",
    "snr",
    "min_snr_weight",
]

Array = Float[np.ndarray, "*shape"]

Coefficients = tuple[Any, Any, Any]
"""(a, b, d) of the linear form (a·x + b·y)/d that `combine` evaluates."""


def _is(c: Any, literal: int) -> bool:
    """Whether the coefficient c is the literal int `literal` (0 or 1) of a table row."""
    return isinstance(c, int) and c == literal


def combine(coefficients: Coefficients, x: Array, y: Array) -> Array:
    """(a·x + b·y)/d: every row of PREDICTION_TABLE is read through this one formula.

    Formula: (a, b, d) = coefficients; a·x + b·y, divided by d as safe_div(·, d). The literals
    0 and 1 of a row are exact: a term with coefficient 0 is left out and a factor or divisor 1
    is not applied (so ε̂ = out is `out` itself: no product, no EPS).
    Shapes: x (*shape), y (*shape), a, b, d scalars -> (*shape).
    """
    a, b, d = coefficients
    terms = [z if _is(c, 1) else c * z for c, z in ((a, x), (b, y)) if not _is(c, 0)]
    total = terms[0] if len(terms) == 1 else terms[0] + terms[1]
    return total if _is(d, 1) else safe_div(total, d)


@dataclass(frozen=True)
class Prediction:
    """One thing a network can be trained to output: one row of PREDICTION_TABLE.

    x0, eps and target map (√ᾱ, √(1 − ᾱ)) to the coefficients (a, b, d) of
        x̂_0 = (a·x_t + b·out)/d,   ε̂ = (a·x_t + b·out)/d,   target = (a·x_0 + b·ε)/d
    (two linear equations with x_t = √ᾱ·x_0 + √(1 − ᾱ)·ε, solved); min_snr(s, γ) is the
    min-SNR-γ weight of the target's own loss at SNR s, min(s, γ) times ‖x_0 − x̂_0‖²/‖out −
    target‖². The literals 0 and 1 are exact (see `combine`).
    """

    x0: Callable[[Scalar, Scalar], Coefficients]
    eps: Callable[[Scalar, Scalar], Coefficients]
    target: Callable[[Scalar, Scalar], Coefficients]
    min_snr: Callable[[Scalar, Scalar], Scalar]

    @property
    def x0_at_zero_snr(self) -> bool:
        """Whether x̂_0 exists where ᾱ = 0 (zero terminal SNR, x_t = ε): the divisor of x̂_0 is
        not 0 at √ᾱ = 0, √(1 − ᾱ) = 1."""
        return self.x0(0.0, 1.0)[2] != 0


PREDICTION_TABLE: dict[str, Prediction] = {
    # ε, the noise (DDPM, Ho et al. 2020, Eq. 14)
    "eps": Prediction(
        x0=lambda sqrt_ab, sqrt_1m: (1, -sqrt_1m, sqrt_ab),  # (x_t − √(1 − ᾱ)·ε̂)/√ᾱ, DDIM Eq. 9
        eps=lambda sqrt_ab, sqrt_1m: (0, 1, 1),  # out
        target=lambda sqrt_ab, sqrt_1m: (0, 1, 1),  # ε
        min_snr=lambda s, gamma: min(1.0, safe_div(gamma, s)),  # min(s, γ)/s, and 1 at s = 0
    ),
    # x_0, the clean sample
    "x0": Prediction(
        x0=lambda sqrt_ab, sqrt_1m: (0, 1, 1),  # out
        eps=lambda sqrt_ab, sqrt_1m: (1, -sqrt_ab, sqrt_1m),  # (x_t − √ᾱ·x̂_0)/√(1 − ᾱ)
        target=lambda sqrt_ab, sqrt_1m: (1, 0, 1),  # x_0
        min_snr=lambda s, gamma: min(s, gamma),
    ),
    # v = √ᾱ·ε − √(1 − ᾱ)·x_0 (Salimans & Ho 2022, §4 and App. D)
    "v": Prediction(
        x0=lambda sqrt_ab, sqrt_1m: (sqrt_ab, -sqrt_1m, 1),  # √ᾱ·x_t − √(1 − ᾱ)·v̂
        eps=lambda sqrt_ab, sqrt_1m: (sqrt_1m, sqrt_ab, 1),  # √(1 − ᾱ)·x_t + √ᾱ·v̂
        target=lambda sqrt_ab, sqrt_1m: (-sqrt_1m, sqrt_ab, 1),  # −√(1 − ᾱ)·x_0 + √ᾱ·ε
        min_snr=lambda s, gamma: min(s, gamma) / (s + 1),
    ),
}
"""What a network can be trained to predict, by name: the one place a prediction is defined."""

PREDICTIONS: tuple[str, ...] = tuple(PREDICTION_TABLE)
"""The names of PREDICTION_TABLE, in its order: eps, x0, v."""


@runtime_checkable
class Denoiser(Protocol):
    """A network that says what it predicts.

    `prediction` ∈ PREDICTIONS; `output(x, t_norm)` is the network's output for x = x_t at
    normalized time t_norm = t/T (or the PF ODE's continuous t): ε̂, x̂_0 or v̂.
    Shapes: x (*shape), t_norm scalar -> (*shape).
    """

    prediction: str

    def output(self, x: Float[np.ndarray, "*shape"], t_norm: Scalar) -> Float[np.ndarray, "*shape"]:
        """The network's output (of kind `prediction`). Shapes: (*shape) -> (*shape)."""
        ...


AnyModel = EpsModel | Denoiser
"""What samplers, the likelihood and the losses accept: an ε-model or a Denoiser."""


@dataclass(frozen=True)
class PredictionModel:
    """A network with an `.eps(x, t)` forward, declared to predict `prediction`.

    Formula: output(x, t_norm) = net.eps(x, t_norm); prediction ∈ PREDICTIONS.
    Shapes: x (*shape) -> (*shape).
    """

    net: Any
    prediction: str = "eps"

    def __post_init__(self) -> None:
        check_prediction(self.prediction)

    def output(self, x: Float[np.ndarray, "*shape"], t_norm: Scalar) -> Float[np.ndarray, "*shape"]:
        """net.eps(x, t_norm). Shapes: (*shape) -> (*shape)."""
        return self.net.eps(x, t_norm)


def _is_prediction(prediction: str) -> Callable[[], None]:
    """Entry-check rule (spec.core.check): `prediction` is one of PREDICTIONS."""
    return holds(isinstance(prediction, str) and prediction in PREDICTIONS,
                 f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")


def check_prediction(prediction: str) -> str:
    """Return `prediction` if it is one of PREDICTIONS, else raise a ValueError naming it."""
    check(_is_prediction(prediction))
    return prediction


def _zero_snr_error(prediction: str) -> ValueError:
    """The error of a prediction whose x̂_0 does not exist at ᾱ = 0, naming those that do."""
    defined = [name for name, row in PREDICTION_TABLE.items() if row.x0_at_zero_snr]
    return ValueError(
        f"an {prediction}-prediction cannot give x0 where alpha_bar = 0 (zero terminal SNR: x_T "
        f"is pure noise); sample such a schedule with an {'- or '.join(defined)}-prediction "
        "model, got alpha_bar = 0"
    )


def model_output(model: Any, x: Array, t_norm: Scalar) -> tuple[Array, str]:
    """(the model's output, what it predicts): a Denoiser's `.output` and `.prediction`; an
    EpsModel's `.eps`, which predicts ε. Shapes: x (*shape) -> ((*shape), str)."""
    if hasattr(model, "output"):
        return model.output(x, t_norm), check_prediction(model.prediction)
    return model.eps(x, t_norm), "eps"


def x0_from_output(ab: Scalar, x_t: Array, out: Float[np.ndarray, "..."], prediction: str) -> Array:
    """x̂_0 from the network output at ᾱ = ab (DDIM Eq. 9; Salimans & Ho 2022, App. D).

    Formula: x̂_0 = combine(PREDICTION_TABLE[prediction].x0(sqrt_nonneg(ab),
    sqrt_nonneg(1 − ab)), x_t, out): eps: safe_div(x_t − √(1 − ab)·out, √ab);  x0: out;
    v: √ab·x_t − √(1 − ab)·out.  ab ∈ [0, 1]; ab = 0 exactly (zero terminal SNR) is a
    ValueError for a prediction whose x̂_0 divides by 0 there (eps: ε says nothing about x_0).
    Shapes: x_t (*shape), out (*shape), ab scalar -> (*shape).
    """
    check(_is_prediction(prediction), same_shape("out", out, "x_t", x_t.shape))
    row = PREDICTION_TABLE[prediction]
    if ab == 0 and not row.x0_at_zero_snr:
        raise _zero_snr_error(prediction)
    return combine(row.x0(sqrt_nonneg(ab), sqrt_nonneg(1 - ab)), x_t, out)


def eps_from_output(ab: Scalar, x_t: Array, out: Float[np.ndarray, "..."], prediction: str) -> Array:
    """ε̂ from the network output at ᾱ = ab (DDPM Eq. 4 solved for ε; Salimans & Ho 2022, App. D).

    Formula: ε̂ = combine(PREDICTION_TABLE[prediction].eps(sqrt_nonneg(ab), sqrt_nonneg(1 − ab)),
    x_t, out): eps: out;  x0: safe_div(x_t − √ab·out, √(1 − ab));  v: √(1 − ab)·x_t + √ab·out.
    ab ∈ [0, 1].
    Shapes: x_t (*shape), out (*shape), ab scalar -> (*shape).
    """
    check(_is_prediction(prediction), same_shape("out", out, "x_t", x_t.shape))
    eps = PREDICTION_TABLE[prediction].eps
    return combine(eps(sqrt_nonneg(ab), sqrt_nonneg(1 - ab)), x_t, out)


def predict_x0(
    sched: VPSchedule, x_t: Array, out: Float[np.ndarray, "..."], t: Index, prediction: str = "eps"
) -> Array:
    """x̂_0 at time t from the network output (the one conversion point; see the module doc).

    Formula: x0_from_output(ᾱ_t, x_t, out, prediction), t ∈ {0..T}.
    Shapes: x_t (*shape), out (*shape) -> (*shape).
    """
    t = check(in_range("t", t, 0, sched.T))
    return x0_from_output(sched.alpha_bar[t], x_t, out, prediction)


def predict_eps(
    sched: VPSchedule, x_t: Array, out: Float[np.ndarray, "..."], t: Index, prediction: str = "eps"
) -> Array:
    """ε̂ at time t from the network output (the one conversion point; see the module doc).

    Formula: eps_from_output(ᾱ_t, x_t, out, prediction), t ∈ {0..T}.
    Shapes: x_t (*shape), out (*shape) -> (*shape).
    """
    t = check(in_range("t", t, 0, sched.T))
    return eps_from_output(sched.alpha_bar[t], x_t, out, prediction)


def v_target(sched: VPSchedule, x0: Array, t: Index, eps: Float[np.ndarray, "..."]) -> Array:
    """The velocity v of x_0 and ε at time t (Salimans & Ho 2022, §4: v ≡ α_t·ε − σ_t·x, with
    their α_t = √ᾱ_t and σ_t = √(1 − ᾱ_t)).

    Formula: v = sqrt_nonneg(ᾱ_t)·ε − sqrt_nonneg(1 − ᾱ_t)·x0 = prediction_target(sched, x0, t,
    ε, "v"), t ∈ {0..T}.
    Shapes: x0 (*shape), eps (*shape) -> (*shape).
    """
    return prediction_target(sched, x0, t, eps, "v")


def prediction_target(
    sched: VPSchedule, x0: Array, t: Index, eps: Float[np.ndarray, "..."], prediction: str
) -> Array:
    """What a network of kind `prediction` is trained to output for (x0, t, ε).

    Formula: combine(PREDICTION_TABLE[prediction].target(sqrt_nonneg(ᾱ_t), sqrt_nonneg(1 − ᾱ_t)),
    x0, ε): eps: ε;  x0: x0;  v: √ᾱ_t·ε − √(1 − ᾱ_t)·x0 (v_target).  t ∈ {0..T}.
    Shapes: x0 (*shape), eps (*shape) -> (*shape).
    """
    t = check(_is_prediction(prediction), in_range("t", t, 0, sched.T),
              same_shape("eps", eps, "x0", x0.shape))
    ab = sched.alpha_bar[t]
    target = PREDICTION_TABLE[prediction].target
    return combine(target(sqrt_nonneg(ab), sqrt_nonneg(1 - ab)), x0, eps)


def denoise(sched: VPSchedule, model: AnyModel, x_t: Array, t: Index) -> tuple[Array, Array]:
    """(x̂_0, ε̂) of a model at x_t and time t: one model call, converted as the model predicts.

    Formula: out, p = model's output at (x_t, t/T) and its prediction (ε for an EpsModel);
    x̂_0 = predict_x0(sched, x_t, out, t, p), ε̂ = predict_eps(sched, x_t, out, t, p). Unclipped.
    Shapes: x_t (*shape) -> ((*shape), (*shape)).
    """
    t = check(in_range("t", t, 0, sched.T))
    out, prediction = model_output(model, x_t, time_of_index(t, sched.T))
    return (predict_x0(sched, x_t, out, t, prediction), predict_eps(sched, x_t, out, t, prediction))


def snr(sched: VPSchedule, t: Index) -> Scalar:
    """Signal-to-noise ratio of x_t (Kingma et al. 2021, "Variational Diffusion Models", Eq. 1).

    Formula: SNR(t) = safe_div(ᾱ_t, 1 − ᾱ_t), t ∈ {0..T}: 0 exactly where ᾱ_t = 0 (zero
    terminal SNR), 1/EPS = 1e12 at t = 0 (safe_div's guard of 1 − ᾱ_0 = 0).
    Shapes: -> scalar.
    """
    t = check(in_range("t", t, 0, sched.T))
    ab = sched.alpha_bar[t]
    return safe_div(ab, 1 - ab)


def min_snr_weight(sched: VPSchedule, t: Index, gamma: Scalar, prediction: str) -> Scalar:
    """Min-SNR-γ loss weight of a prediction type's own loss (Hang et al. 2023, Eq. 7–8).

    Formula: PREDICTION_TABLE[prediction].min_snr(s, γ) with s = snr(sched, t):
    eps: min(1, safe_div(γ, s))  (= min(s, γ)/s for s > 0; 1 at s = 0);  x0: min(s, γ);
    v: min(s, γ)/(s + 1).  γ > 0; γ = inf turns every prediction's weighted loss into the plain
    ε-loss (see the module docstring).
    Shapes: -> scalar.
    """
    check(_is_prediction(prediction),
          holds(gamma > 0, f"gamma must be > 0 (math.inf for no clipping), got gamma = {gamma!r}"))
    return PREDICTION_TABLE[prediction].min_snr(snr(sched, t), gamma)

