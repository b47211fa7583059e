"""Classifier-free guidance (Ho & Salimans 2022): the twins of `spec.guidance`, batched.

    out̃ = out(x, ∅) + s·(out(x, c) − out(x, ∅))      s = 1 + w of the paper; s = 1: out(x, c)

`GuidedModel(net, labels, scale)` is a model `model(x, t_norm)` for every sampler: one forward of
the conditional net on the doubled batch [x, x] with labels [c, ∅] (a single forward of [x] with
c when s = 1), `prediction` taken from the net.
Shapes: x (B, C, H, W); labels (B,) LongTensor or an int; t_norm float, 0-d or (B,).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from runtime.prediction import prediction_of


def guided_output(out_uncond: Tensor, out_cond: Tensor, scale: float) -> Tensor:
    """out_uncond + scale·(out_cond − out_uncond); scale = 1 returns out_cond itself.
    Shapes: (B, …), (B, …) -> (B, …)."""
    if tuple(out_cond.shape) != tuple(out_uncond.shape):
        raise ValueError(f"out_cond must have the shape of out_uncond {tuple(out_uncond.shape)}, "
                         f"got {tuple(out_cond.shape)}")
    if scale == 1:
        return out_cond
    return out_uncond + scale * (out_cond - out_uncond)


class GuidedModel(nn.Module):
    """A class-conditional net with labels and a guidance scale, as a plain model(x, t_norm)."""

    def __init__(self, net: Any, label: Tensor | int, scale: float = 1.0,
                 prediction: str | None = None) -> None:
        super().__init__()
        self.net = net
        self.label = label
        self.scale = float(scale)
        self.prediction = prediction_of(net) if prediction is None else prediction

    def forward(self, x: Tensor, t_norm: Tensor | float) -> Tensor:
        label = torch.as_tensor(self.label, dtype=torch.long, device=x.device)
        label = label.expand(x.shape[0]) if label.ndim == 0 else label
        if self.scale == 1:
            return self.net(x, t_norm, label)
        null = torch.full_like(label, self.net.num_classes)
        t2 = torch.cat([t_norm, t_norm]) if isinstance(t_norm, Tensor) and t_norm.ndim else t_norm
        out = self.net(torch.cat([x, x]), t2, torch.cat([label, null]))
        cond, uncond = out.chunk(2)
        return guided_output(uncond, cond, self.scale)


__all__ = ["GuidedModel", "guided_output"]
