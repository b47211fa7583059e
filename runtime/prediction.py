"""What the network predicts (ε, x0 or v) and the one place its output becomes x̂0 and ε̂: the twins
of `spec.prediction`, batched.

    from ε:   x̂0 = (x_t − √(1 − ᾱ)·ε̂)/√ᾱ             ε̂ = out
    from x0:  x̂0 = out                                ε̂ = (x_t − √ᾱ·x̂0)/√(1 − ᾱ)
    from v:   x̂0 = √ᾱ·x_t − √(1 − ᾱ)·v̂               ε̂ = √(1 − ᾱ)·x_t + √ᾱ·v̂
    v = √ᾱ·ε − √(1 − ᾱ)·x0   (Salimans & Ho 2022)

`PREDICTION_TABLE` holds these formulas once, as the coefficients of x_t and of the output (the
twin of `spec.prediction.PREDICTION_TABLE`: same names, same coefficients, tied by its conformance
record), read through `combine` by `_x0` and `_eps`; every sampler, the loss, the PF ODE and the
likelihood reach them through `predict_x0` / `predict_eps` / `denoise` (schedule tables) or
`x0_from_output` / `eps_from_output` (a given ᾱ). A runtime model says what it predicts with a
`prediction` attribute ("eps" when absent: every function, lambda and TorchLean net is an
ε-model); `prediction_of(model)` reads it.

Zero terminal SNR: an ε-prediction at ᾱ_t = 0 is a ValueError, as in the spec. For an int t (or a
float ᾱ) it is checked on the host; for a (B,) tensor t it is checked only when the schedule has
a zero ᾱ (one host sync, and only for such a schedule with an ε-model, which is the error case).
Shapes: x_t, out, x0, eps (B, C, H, W); t an int or a (B,) LongTensor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from runtime.core import coef_dtype, safe_div, sqrt_nonneg, work_dtype
from runtime.schedule import Schedule, TimeIndex, time_of_index

Coefficients = tuple[Any, Any, Any]
"""(a, b, d) of the linear form (a·x + b·y)/d that `combine` evaluates."""


def _is(c: Any, literal: int) -> bool:
    """Whether the coefficient c is the literal int `literal` (0 or 1) of a table row."""
    return isinstance(c, int) and c == literal


def combine(coefficients: Coefficients, x: Tensor, y: Tensor) -> Tensor:
    """(a·x + b·y)/d, with safe_div for the division (spec.prediction.combine). The literals 0
    and 1 are exact: a 0 term is left out, a factor or divisor 1 is not applied.
    Shapes: x, y (B, …); a, b, d numbers or broadcastable tensors -> (B, …)."""
    a, b, d = coefficients
    terms = [z if _is(c, 1) else c * z for c, z in ((a, x), (b, y)) if not _is(c, 0)]
    total = terms[0] if len(terms) == 1 else terms[0] + terms[1]
    return total if _is(d, 1) else safe_div(total, d)


@dataclass(frozen=True)
class Prediction:
    """One row of PREDICTION_TABLE (spec.prediction.Prediction): x0, eps and target map
    (√ᾱ, √(1 − ᾱ)) to (a, b, d) of x̂0 = (a·x_t + b·out)/d, ε̂ = (a·x_t + b·out)/d and
    target = (a·x0 + b·ε)/d; min_snr(s, γ) is the min-SNR-γ weight (tensors s, γ); symbol
    names the target on the loss plot and `help` in --prediction's help."""

    x0: Callable[[Any, Any], Coefficients]
    eps: Callable[[Any, Any], Coefficients]
    target: Callable[[Any, Any], Coefficients]
    min_snr: Callable[[Tensor, Tensor], Tensor]
    symbol: str
    help: str

    @property
    def x0_at_zero_snr(self) -> bool:
        """Whether x̂0 exists where ᾱ = 0: its divisor is not 0 at √ᾱ = 0, √(1 − ᾱ) = 1."""
        return self.x0(0.0, 1.0)[2] != 0


PREDICTION_TABLE: dict[str, Prediction] = {
    "eps": Prediction(
        x0=lambda sqrt_ab, sqrt_1m: (1, -sqrt_1m, sqrt_ab),
        eps=lambda sqrt_ab, sqrt_1m: (0, 1, 1),
        target=lambda sqrt_ab, sqrt_1m: (0, 1, 1),
        min_snr=lambda s, g: torch.minimum(torch.ones_like(s), safe_div(g, s)),
        symbol="ε", help="the noise, DDPM",
    ),
    "x0": Prediction(
        x0=lambda sqrt_ab, sqrt_1m: (0, 1, 1),
        eps=lambda sqrt_ab, sqrt_1m: (1, -sqrt_ab, sqrt_1m),
        target=lambda sqrt_ab, sqrt_1m: (1, 0, 1),
        min_snr=lambda s, g: torch.minimum(s, g),
        symbol="x₀", help="the clean image",
    ),
    "v": Prediction(
        x0=lambda sqrt_ab, sqrt_1m: (sqrt_ab, -sqrt_1m, 1),
        eps=lambda sqrt_ab, sqrt_1m: (sqrt_1m, sqrt_ab, 1),
        target=lambda sqrt_ab, sqrt_1m: (-sqrt_1m, sqrt_ab, 1),
        min_snr=lambda s, g: torch.minimum(s, g) / (s + 1.0),
        symbol="v", help="√ᾱ·ε − √(1−ᾱ)·x0, Salimans & Ho 2022",
    ),
}
"""What a network can be trained to predict, by name (the twin of the spec's table)."""

PREDICTIONS = tuple(PREDICTION_TABLE)
"""The names of PREDICTION_TABLE, in the spec's order: eps, x0, v."""


def _zero_snr_error(prediction: str) -> ValueError:
    """The error of a prediction whose x̂0 does not exist at ᾱ = 0 (the spec's message)."""
    defined = [name for name, row in PREDICTION_TABLE.items() if row.x0_at_zero_snr]
    return ValueError(
        f"an {prediction}-prediction cannot give x0 where alpha_bar = 0 (zero terminal SNR: x_T "
        f"is pure noise); sample such a schedule with an {'- or '.join(defined)}-prediction "
        "model, got alpha_bar = 0"
    )


class Denoiser:
    """The protocol of a model that says what it predicts (the twin of `spec.prediction.Denoiser`):
    `model(x, t_norm)` returns its output and `model.prediction` ∈ PREDICTIONS says which.
    Every `runtime.model` module has `prediction` ("eps" unless set)."""

    prediction: str = "eps"


def check_prediction(prediction: str) -> str:
    """`prediction` if it is one of PREDICTIONS, else a ValueError naming it."""
    if not isinstance(prediction, str) or prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")
    return prediction


def prediction_of(model: Any) -> str:
    """What `model` predicts: its `prediction` attribute, "eps" when it has none."""
    return check_prediction(getattr(model, "prediction", "eps"))


def _x0(sqrt_ab: Any, sqrt_1m: Any, x_t: Tensor, out: Tensor, prediction: str) -> Tensor:
    """x̂0 from the output, given √ᾱ and √(1 − ᾱ) broadcastable to x_t (the table's row)."""
    return combine(PREDICTION_TABLE[prediction].x0(sqrt_ab, sqrt_1m), x_t, out)


def _eps(sqrt_ab: Any, sqrt_1m: Any, x_t: Tensor, out: Tensor, prediction: str) -> Tensor:
    """ε̂ from the output, given √ᾱ and √(1 − ᾱ) broadcastable to x_t (the table's row)."""
    return combine(PREDICTION_TABLE[prediction].eps(sqrt_ab, sqrt_1m), x_t, out)


def _check_shapes(x_t: Tensor, out: Tensor) -> None:
    if tuple(out.shape) != tuple(x_t.shape):
        raise ValueError(f"out must have the shape of x_t {tuple(x_t.shape)}, got {tuple(out.shape)}")


def _roots(ab: Tensor | float, like: Tensor) -> tuple[Tensor, Tensor]:
    """(√ᾱ, √(1 − ᾱ)) computed in the coefficient dtype, cast to like's working dtype."""
    ab = torch.as_tensor(ab, dtype=coef_dtype(like.device), device=like.device)
    ab = ab.reshape(ab.shape + (1,) * (like.ndim - ab.ndim)) if ab.ndim else ab
    wd = work_dtype(like.dtype)
    return sqrt_nonneg(ab).to(wd), sqrt_nonneg(1.0 - ab).to(wd)


def x0_from_output(ab: Tensor | float, x_t: Tensor, out: Tensor, prediction: str) -> Tensor:
    """x̂0 from the output at ᾱ = ab (a float, 0-d or (B,) tensor). A prediction whose x̂0 does
    not exist at ᾱ = 0 (ε) at a float ab = 0 is a ValueError (a tensor ab is not checked).
    Shapes: (B, …) -> (B, …) in x_t's dtype."""
    check_prediction(prediction)
    _check_shapes(x_t, out)
    if not PREDICTION_TABLE[prediction].x0_at_zero_snr and not isinstance(ab, Tensor) and ab == 0:
        raise _zero_snr_error(prediction)
    sqrt_ab, sqrt_1m = _roots(ab, x_t)
    wd = work_dtype(x_t.dtype)
    return _x0(sqrt_ab, sqrt_1m, x_t.to(wd), out.to(wd), prediction).to(x_t.dtype)


def eps_from_output(ab: Tensor | float, x_t: Tensor, out: Tensor, prediction: str) -> Tensor:
    """ε̂ from the output at ᾱ = ab (a float, 0-d or (B,) tensor).
    Shapes: (B, …) -> (B, …) in x_t's dtype."""
    check_prediction(prediction)
    _check_shapes(x_t, out)
    sqrt_ab, sqrt_1m = _roots(ab, x_t)
    wd = work_dtype(x_t.dtype)
    return _eps(sqrt_ab, sqrt_1m, x_t.to(wd), out.to(wd), prediction).to(x_t.dtype)


def _check_zero_snr(sched: Schedule, t: TimeIndex, prediction: str) -> None:
    if PREDICTION_TABLE[prediction].x0_at_zero_snr or sched.first_zero_alpha_bar is None:
        return
    first = sched.first_zero_alpha_bar
    hit = bool((t >= first).any()) if isinstance(t, Tensor) else t >= first
    if hit:
        raise _zero_snr_error(prediction)


def _table_roots(sched: Schedule, t: TimeIndex, like: Tensor) -> tuple[Tensor, Tensor]:
    return (sched.sqrt_alpha_bar.at(t, like), sched.sqrt_one_minus_alpha_bar.at(t, like))


def predict_x0(sched: Schedule, x_t: Tensor, out: Tensor, t: TimeIndex,
               prediction: str = "eps") -> Tensor:
    """x̂0 at time t from the output (schedule tables; spec.prediction.predict_x0).
    Shapes: x_t, out (B, …); t int or (B,) -> (B, …) in x_t's dtype."""
    check_prediction(prediction)
    _check_shapes(x_t, out)
    _check_zero_snr(sched, t, prediction)
    wd = work_dtype(x_t.dtype)
    sqrt_ab, sqrt_1m = _table_roots(sched, t, x_t)
    return _x0(sqrt_ab, sqrt_1m, x_t.to(wd), out.to(wd), prediction).to(x_t.dtype)


def predict_eps(sched: Schedule, x_t: Tensor, out: Tensor, t: TimeIndex,
                prediction: str = "eps") -> Tensor:
    """ε̂ at time t from the output (schedule tables; spec.prediction.predict_eps).
    Shapes: x_t, out (B, …); t int or (B,) -> (B, …) in x_t's dtype."""
    check_prediction(prediction)
    _check_shapes(x_t, out)
    wd = work_dtype(x_t.dtype)
    sqrt_ab, sqrt_1m = _table_roots(sched, t, x_t)
    return _eps(sqrt_ab, sqrt_1m, x_t.to(wd), out.to(wd), prediction).to(x_t.dtype)


def v_target(sched: Schedule, x0: Tensor, t: TimeIndex, eps: Tensor) -> Tensor:
    """v = √ᾱ_t·ε − √(1 − ᾱ_t)·x0 (Salimans & Ho 2022, §4): prediction_target's "v".
    Shapes: (B, …) -> (B, …)."""
    return prediction_target(sched, x0, t, eps, "v")


def prediction_target(sched: Schedule, x0: Tensor, t: TimeIndex, eps: Tensor,
                      prediction: str) -> Tensor:
    """The training target of a `prediction` model (ε, x0 or v), the table's `target` row of
    x0 and eps in the working dtype. Shapes: (B, …) -> (B, …) in x0's dtype."""
    check_prediction(prediction)
    wd = work_dtype(x0.dtype)
    sqrt_ab, sqrt_1m = _table_roots(sched, t, x0)
    target = PREDICTION_TABLE[prediction].target(sqrt_ab, sqrt_1m)
    return combine(target, x0.to(wd), eps.to(wd)).to(x0.dtype)


def denoise(sched: Schedule, model: Any, x_t: Tensor, t: TimeIndex) -> tuple[Tensor, Tensor]:
    """(x̂0, ε̂) of `model` at (x_t, t): one model call at t/T on x_t (in x_t's dtype), converted
    as the model predicts. Shapes: x_t (B, …); t int or (B,) -> ((B, …), (B, …)) in the working
    dtype (float32 for 16-bit x_t), unclipped."""
    wd = work_dtype(x_t.dtype)
    prediction = prediction_of(model)
    out = model(x_t, time_of_index(t, sched.T, dtype=wd)).to(wd)
    x_t = x_t.to(wd)
    return (predict_x0(sched, x_t, out, t, prediction), predict_eps(sched, x_t, out, t, prediction))


def snr(sched: Schedule, t: TimeIndex) -> Tensor:
    """SNR(t) = ᾱ_t/(1 − ᾱ_t) (safe_div; 0 exactly at ᾱ_t = 0), from the float64 table: a 0-d
    float64 tensor for an int t, a (B,) float64 tensor for a tensor t (on t's device)."""
    if isinstance(t, Tensor):
        return sched.snr.cast(coef_dtype(t.device), t.device)[t]
    return sched.snr.coef(t, torch.zeros(()))


def min_snr_weight(sched: Schedule, t: TimeIndex, gamma: float, prediction: str) -> Tensor:
    """Min-SNR-γ weight of a prediction's own loss (Hang et al. 2023), the table's `min_snr`:
    eps min(1, γ/SNR), x0 min(SNR, γ), v min(SNR, γ)/(SNR + 1); γ > 0, math.inf allowed.
    Shapes: t int -> 0-d, (B,) -> (B,); float64 (float32 on MPS)."""
    check_prediction(prediction)
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0 (math.inf for no clipping), got gamma = {gamma!r}")
    s = snr(sched, t)
    g = torch.full_like(s, float(gamma))
    return PREDICTION_TABLE[prediction].min_snr(s, g)


__all__ = [
    "PREDICTION_TABLE",
    "PREDICTIONS",
    "Denoiser",
    "check_prediction",
    "denoise",
    "eps_from_output",
    "min_snr_weight",
    "predict_eps",
    "predict_x0",
    "prediction_of",
    "prediction_target",
    "snr",
    "v_target",
    "x0_from_output",
]
