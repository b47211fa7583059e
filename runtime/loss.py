"""The training objectives: the twins of `spec.loss`, batched.

eps_pred_loss = mean over the batch of the per-sample spec losses (all samples have the same
number of elements, so it is also the mean over every element). prediction_loss is the same for
an ε-, x0- or v-model, each sample's MSE multiplied by its min-SNR-γ weight when γ is given.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from runtime.core import EpsModel, mse, work_dtype
from runtime.forward import q_sample
from runtime.prediction import min_snr_weight, prediction_of, prediction_target
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


def prediction_loss(
    sched: Schedule,
    model: Any,
    x0: Tensor,
    t: TimeIndex,
    eps: Tensor,
    min_snr_gamma: float | None = None,
    prediction: str | None = None,
    reduction: str = "mean",
) -> Tensor:
    """mean_i w_i·mean‖target_i − out_i‖², out = model(√ᾱ_t·x0 + √(1 − ᾱ_t)·ε, t/T), target ε, x0 or
    v as the model predicts (`prediction`, default `prediction_of(model)`), w_i = 1 or the
    min-SNR-γ weight (Hang et al. 2023) when `min_snr_gamma` is given.
    `reduction` as in torch.nn.functional: "mean" (the batch mean) or "none" (each sample's
    weighted loss, w_i·mean‖target_i − out_i‖²; their mean is the "mean" loss up to rounding).
    Shapes: x0, eps (B, C, H, W); t int or (B,) -> () in the working dtype ((B,) with
    reduction="none")."""
    if reduction not in ("mean", "none"):
        raise ValueError(f'reduction must be "mean" or "none", got {reduction!r}')
    prediction = prediction_of(model) if prediction is None else prediction
    wd = work_dtype(x0.dtype)
    x_t = q_sample(sched, x0, t, eps)
    out = model(x_t, time_of_index(t, sched.T, dtype=wd))
    target = prediction_target(sched, x0, t, eps, prediction)
    if min_snr_gamma is None and reduction == "mean":  # as eps_pred_loss computes it, bit for bit
        return mse(out, target)
    losses = torch.square(out.to(wd) - target.to(wd)).flatten(1).mean(1)  # (B,)
    if min_snr_gamma is not None:
        weight = min_snr_weight(sched, t, min_snr_gamma, prediction)
        losses = losses * weight.to(device=losses.device, dtype=wd)
    return losses if reduction == "none" else losses.mean()


__all__ = ["eps_pred_loss", "prediction_loss"]
