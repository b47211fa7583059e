"""The training objective: the twin of `spec.loss`, batched.

eps_pred_loss = mean over the batch of the per-sample spec losses (all samples have the same
number of elements, so it is also the mean over every element).
"""

from __future__ import annotations

from torch import Tensor

from runtime.core import EpsModel, mse, work_dtype
from runtime.forward import q_sample
from runtime.schedule import Schedule, TimeIndex, time_of_index


def eps_pred_loss(
    sched: Schedule, model: EpsModel, x0: Tensor, t: TimeIndex, eps: Tensor
) -> Tensor:
    """mean‖ε − ε̂(√ᾱ_t·x0 + √(1 − ᾱ_t)·ε, t/T)‖²   (DDPM Eq. 14, Algorithm 1).

    Shapes: x0, eps (B, C, H, W); t int or (B,) LongTensor -> () in x0's dtype (a float32 x0 under
    bf16 autocast gives a float32 loss).
    """
    x_t = q_sample(sched, x0, t, eps)
    t_norm = time_of_index(t, sched.T, dtype=work_dtype(x0.dtype))
    return mse(model(x_t, t_norm), eps)


__all__ = ["eps_pred_loss"]
