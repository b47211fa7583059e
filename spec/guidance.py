"""Classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", Eq. 6).

One network is trained with the class label c and, with probability p_uncond (label dropout),
with the null label ∅; at sampling the two outputs are mixed:

    ε̃(x, c) = ε(x, ∅) + s·(ε(x, c) − ε(x, ∅))

Scale convention: s is the weight of the conditional output. The paper writes
ε̃ = (1 + w)·ε(x, c) − w·ε(x, ∅), i.e. s = 1 + w: s = 1 (w = 0) is the conditional model alone,
s = 0 the unconditional one, s > 1 guides beyond it. The same mix is applied to an x0- or
v-network's output: the conversions of `spec.prediction` are affine in the output with weights
that do not depend on it, and (1 − s) + s = 1, so guiding v̂ and converting equals converting
and guiding ε̂ (a law in tests/test_spec_laws.py).
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
from jaxtyping import Float

from spec.core import Scalar, check, same_shape
from spec.prediction import check_prediction

__all__ = ["guided_output", "GuidedModel"]


def guided_output(
    out_uncond: Float[np.ndarray, "*shape"], out_cond: Float[np.ndarray, "..."], scale: Scalar
) -> Float[np.ndarray, "*shape"]:
    """The guided output (Ho & Salimans 2022, Eq. 6 with s = 1 + w).

    Formula: out_uncond + scale·(out_cond − out_uncond); scale = 1 returns out_cond itself.
    Shapes: out_uncond (*shape), out_cond (*shape), scale scalar -> (*shape).
    """
    check(same_shape("out_cond", out_cond, "out_uncond", out_uncond.shape))
    if scale == 1:
        return out_cond
    return out_uncond + scale * (out_cond - out_uncond)


@dataclass(frozen=True)
class GuidedModel:
    """A class-conditional network with a label and a guidance scale, as a Denoiser.

    Formula: output(x, t) = guided_output(net.eps(x, t, ∅), net.eps(x, t, label), scale), ∅ =
    net.num_classes (the null label); prediction is what the network was trained to predict.
    Labels: an int for one image (C, H, W), or (N,) ints for a batch. Samplers take it as any
    other Denoiser.
    Shapes: x (…, C, H, W) -> (…, C, H, W).
    """

    net: Any  # a LabelModel (spec.model.cond_film_net)
    label: Any
    scale: Scalar = 1.0
    prediction: str = "eps"

    def __post_init__(self) -> None:
        check_prediction(self.prediction)

    def output(
        self, x: Float[np.ndarray, "*batch c h w"], t_norm: Scalar
    ) -> Float[np.ndarray, "*batch c h w"]:
        """The guided output at x, t_norm. Shapes: (…, C, H, W) -> (…, C, H, W)."""
        label = np.asarray(self.label)
        null = np.full_like(label, self.net.num_classes)
        if self.scale == 1:
            return self.net.eps(x, t_norm, label)
        return guided_output(self.net.eps(x, t_norm, null), self.net.eps(x, t_norm, label),
                             self.scale)
