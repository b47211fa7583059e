"""Training objectives: L_simple (DDPM, Ho et al. 2020, Eq. 14 / Algorithm 1) and its ε / x_0 / v
versions with optional min-SNR-γ weighting (Hang et al. 2023; see `spec.prediction`)."""

import numpy as np
from jaxtyping import Float

from spec.core import EpsModel, Index, Scalar, check, in_range, mse
from spec.forward import q_sample
from spec.prediction import AnyModel, min_snr_weight, model_output, prediction_target
from spec.schedule import VPSchedule, time_of_index

__all__ = ["eps_pred_loss", "prediction_loss"]


def eps_pred_loss(
    sched: VPSchedule,
    model: EpsModel,
    x0: Float[np.ndarray, "*shape"],
    t: Index,
    eps: Float[np.ndarray, "..."],
) -> Scalar:
    """ε-prediction loss of one sample at one time (DDPM Eq. 14).

    Formula: L = mse(ε_θ(x_t, t/T), ε)  with  x_t = q_sample(sched, x0, t, ε),  t ∈ {0..T}.
    Shapes: x0 (*shape), eps (*shape) -> scalar.
    """
    x_t = q_sample(sched, x0, t, eps)
    return mse(model.eps(x_t, time_of_index(t, sched.T)), eps)


def prediction_loss(
    sched: VPSchedule,
    model: AnyModel,
    x0: Float[np.ndarray, "*shape"],
    t: Index,
    eps: Float[np.ndarray, "..."],
    min_snr_gamma: Scalar | None = None,
) -> Scalar:
    """The loss of a model that predicts ε, x_0 or v, at one sample and time (Ho et al. 2020
    Eq. 14; Salimans & Ho 2022 §4; min-SNR-γ: Hang et al. 2023, Eq. 7–8).

    Formula: x_t = q_sample(sched, x0, t, ε); out, p = the model's output at (x_t, t/T) and what
    it predicts (ε for an EpsModel); w = 1 if min_snr_gamma is None, else
    min_snr_weight(sched, t, γ, p);  L = w·mse(out, prediction_target(sched, x0, t, ε, p)).
    For an ε-model without γ this is eps_pred_loss.
    Shapes: x0 (*shape), eps (*shape) -> scalar.
    """
    t = check(in_range("t", t, 0, sched.T))
    x_t = q_sample(sched, x0, t, eps)
    out, prediction = model_output(model, x_t, time_of_index(t, sched.T))
    weight = 1.0 if min_snr_gamma is None else min_snr_weight(sched, t, min_snr_gamma, prediction)
    return weight * mse(out, prediction_target(sched, x0, t, eps, prediction))
