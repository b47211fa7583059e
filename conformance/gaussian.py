"""The exact ε-predictor of Gaussian data, written once in NumPy and once in torch.

Data x0 ~ N(μ, s²) independently per element (μ, s² per channel, shape (C, 1, 1)). With
x_t = √ᾱ·x0 + √(1 − ᾱ)·ε, E[ε | x_t] is linear in x_t:

    ε*(x_t) = √(1 − ᾱ)·(x_t − √ᾱ·μ) / (ᾱ·s² + 1 − ᾱ)

and so are the optimal x0- and v-predictors (E[x0 | x_t] and E[v | x_t] = √ᾱ·ε* − √(1 − ᾱ)·x0*):

    x0*(x_t) = μ + √ᾱ·s²·(x_t − √ᾱ·μ) / (ᾱ·s² + 1 − ᾱ)

`GaussianData.prediction` (a name of the prediction table: "eps", "x0" or "v") chooses which one
the denoiser outputs, E[target | x_t] = the target's coefficients applied to (x0*, ε*) (the
target is linear in (x0, ε)); it then also carries `prediction`, as a Denoiser does.
The model is fed the normalised time t_norm, so each denoiser carries its own ᾱ(t_norm):
a discrete schedule reads ᾱ at index round(t_norm·T); the PF ODE's continuous schedules use
ᾱ(t) = exp(−(β0·t + ½(β1 − β0)·t²)) ("continuous", linear) or cos²u(t)/cos²u(0) with
u(t) = (t + s)/(1 + s)·π/2 ("cosine"). The two versions share no code: each is a closed form,
so samplers can be compared with a model whose every output is known exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

import runtime.prediction
import spec.prediction


@dataclass(frozen=True)
class GaussianData:
    """μ and s² (each (C, 1, 1)) and the schedule ᾱ(t_norm) is read from: ("discrete", betas),
    ("continuous", beta0, beta1) or ("cosine", s)."""

    mu: np.ndarray
    var: np.ndarray
    schedule: tuple
    prediction: str = "eps"

    def __post_init__(self) -> None:
        spec.prediction.check_prediction(self.prediction)


class GaussianDenoiserNumpy:
    """spec side: `eps(x, t_norm)` with x (C, H, W) or (N, C, H, W) and a scalar t_norm."""

    def __init__(self, data: GaussianData) -> None:
        self.data = data
        self.prediction = data.prediction
        if data.schedule[0] == "discrete":
            betas = np.asarray(data.schedule[1], dtype=np.float64)
            self.alpha_bars = np.concatenate([[1.0], np.cumprod(1.0 - betas)])

    def alpha_bar(self, t_norm: float) -> float:
        if self.data.schedule[0] == "discrete":
            T = len(self.alpha_bars) - 1
            return float(self.alpha_bars[int(round(float(t_norm) * T))])
        if self.data.schedule[0] == "cosine":
            s = self.data.schedule[1]
            return (math.cos((t_norm + s) / (1 + s) * math.pi / 2) / math.cos(s / (1 + s) * math.pi / 2)) ** 2
        _, b0, b1 = self.data.schedule
        return math.exp(-(b0 * t_norm + 0.5 * (b1 - b0) * t_norm**2))

    def eps(self, x: np.ndarray, t_norm: float) -> np.ndarray:
        ab = self.alpha_bar(t_norm)
        mu, var = self.data.mu, self.data.var
        return np.sqrt(1.0 - ab) * (x - np.sqrt(ab) * mu) / (ab * var + 1.0 - ab)

    def x0(self, x: np.ndarray, t_norm: float) -> np.ndarray:
        ab = self.alpha_bar(t_norm)
        mu, var = self.data.mu, self.data.var
        return mu + np.sqrt(ab) * var * (x - np.sqrt(ab) * mu) / (ab * var + 1.0 - ab)

    def output(self, x: np.ndarray, t_norm: float) -> np.ndarray:
        """The optimal output of kind `prediction`: its target row of (x0*, ε*)."""
        ab = self.alpha_bar(t_norm)
        target = spec.prediction.PREDICTION_TABLE[self.prediction].target
        return spec.prediction.combine(target(np.sqrt(ab), np.sqrt(1.0 - ab)),
                                       self.x0(x, t_norm), self.eps(x, t_norm))


class GaussianDenoiserTorch(torch.nn.Module):
    """runtime side: `model(x, t_norm)` with x (B, C, H, W), t_norm a float or a (B,) tensor.
    ᾱ is evaluated in float64 and the result returned in x's dtype."""

    def __init__(self, data: GaussianData, device: str | torch.device) -> None:
        super().__init__()
        self.data = data
        self.prediction = data.prediction
        self.kind = data.schedule[0]
        self.mu = torch.tensor(data.mu, dtype=torch.float64, device=device)
        self.var = torch.tensor(data.var, dtype=torch.float64, device=device)
        if self.kind == "discrete":
            betas = torch.tensor(np.asarray(data.schedule[1]), dtype=torch.float64, device=device)
            ones = torch.ones(1, dtype=torch.float64, device=device)
            self.alpha_bars = torch.cat([ones, torch.cumprod(1.0 - betas, 0)])

    def _alpha_bar(self, t: Tensor) -> Tensor:
        if self.kind == "discrete":
            T = self.alpha_bars.shape[0] - 1
            return self.alpha_bars[torch.round(t * T).long()]
        if self.kind == "cosine":
            s = self.data.schedule[1]
            return (torch.cos((t + s) / (1 + s) * math.pi / 2) / math.cos(s / (1 + s) * math.pi / 2)) ** 2
        _, b0, b1 = self.data.schedule
        return torch.exp(-(b0 * t + 0.5 * (b1 - b0) * t**2))

    def forward(self, x: Tensor, t_norm: Tensor | float) -> Tensor:
        t = torch.as_tensor(t_norm, dtype=torch.float64, device=x.device)
        ab = self._alpha_bar(t.reshape(-1))  # (B,) or (1,)
        ab = ab.reshape(-1, 1, 1, 1)  # broadcast over (C, H, W)
        x64 = x.to(torch.float64)
        denom = ab * self.var + 1.0 - ab
        eps = torch.sqrt(1.0 - ab) * (x64 - torch.sqrt(ab) * self.mu) / denom
        x0 = self.mu + torch.sqrt(ab) * self.var * (x64 - torch.sqrt(ab) * self.mu) / denom
        target = runtime.prediction.PREDICTION_TABLE[self.prediction].target
        out = runtime.prediction.combine(target(torch.sqrt(ab), torch.sqrt(1.0 - ab)), x0, eps)
        return out.to(x.dtype)
