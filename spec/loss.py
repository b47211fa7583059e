"""The simplified training objective L_simple (DDPM, Ho et al. 2020, Eq. 14 / Algorithm 1)."""

import numpy as np
from jaxtyping import Float

from spec.core import EpsModel, Index, Scalar, mse
from spec.forward import q_sample
from spec.schedule import VPSchedule, time_of_index

__all__ = ["eps_pred_loss"]


def eps_pred_loss(
    sched: VPSchedule,
    model: EpsModel,
    x0: Float[np.ndarray, "*shape"],
    t: Index,
    eps: Float[np.ndarray, "..."],
) -> Scalar:
    """ε-prediction loss of one sample at one time (DDPM Eq. 14; TorchLean `epsPredLoss`).

    Formula: L = mse(ε_θ(x_t, t/T), ε)  with  x_t = q_sample(sched, x0, t, ε),  t ∈ {0..T}.
    Shapes: x0 (*shape), eps (*shape) -> scalar.
    """
    x_t = q_sample(sched, x0, t, eps)
    return mse(model.eps(x_t, time_of_index(t, sched.T)), eps)
