"""The variance schedule β_1..β_T and the cumulative products ᾱ_t (DDPM, Ho et al. 2020, §2).

`betas[k]` is β_{k+1}: the variance of the transition k → k+1. The cumulative product follows
the recursion ᾱ_0 = 1, ᾱ_{k+1} = ᾱ_k · (1 − betas[k]), evaluated in that order (np.cumprod).
The time convention is the one of `spec/__init__.py`.
"""

import math
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float

from spec.core import Index, Scalar, check_index

__all__ = ["VPSchedule", "linear_betas", "cosine_betas", "time_of_index"]


@dataclass(frozen=True, eq=False)
class VPSchedule:
    """A discrete variance-preserving schedule (DDPM Eq. 2 and 4).

    Formula: α_t = 1 − β_t, ᾱ_t = Π_{s=1..t} α_s, ᾱ_0 = 1; β_t = betas[t − 1].
    Every beta must lie in [0, 1) (ValueError naming the index and value otherwise).
    Shapes: betas (T,).
    """

    betas: Float[np.ndarray, " T"]

    def __post_init__(self) -> None:
        betas = self.betas
        if betas.ndim != 1:
            raise ValueError(f"betas must be a 1-d array of length T, got shape {betas.shape}")
        bad = np.flatnonzero(~((betas >= 0) & (betas < 1)))
        if bad.size:
            k = int(bad[0])
            raise ValueError(
                f"betas must lie in [0, 1), got betas[{k}] = {betas[k]!r} "
                f"({bad.size} value(s) outside the range)"
            )

    @property
    def T(self) -> int:
        """Number of diffusion steps T = len(betas)."""
        return len(self.betas)

    def beta(self, k: Index) -> Scalar:
        """β_{k+1} = betas[k], the variance of the transition k → k+1, k ∈ {0..T−1}.

        Shapes: k scalar -> scalar.
        """
        return self.betas[check_index("k", k, 0, self.T - 1)]

    def alpha(self, k: Index) -> Scalar:
        """α_{k+1} = 1 − betas[k], k ∈ {0..T−1} (DDPM notation α_t = 1 − β_t).

        Shapes: k scalar -> scalar.
        """
        return 1 - self.beta(k)

    def alpha_bars(self) -> Float[np.ndarray, " T_plus_1"]:
        """ᾱ_0..ᾱ_T: ᾱ_0 = 1, ᾱ_{k+1} = ᾱ_k · (1 − betas[k]) (DDPM Eq. 4; DDIM calls it α_t).

        Shapes: () -> (T + 1,).
        """
        one = np.ones(1, dtype=self.betas.dtype)
        return np.cumprod(np.concatenate([one, 1 - self.betas]))

    def alpha_bar(self, t: Index) -> Scalar:
        """ᾱ_t = Π_{s=1..t} (1 − β_s), t ∈ {0..T}; ᾱ_0 = 1 (DDPM Eq. 4).

        Shapes: t scalar -> scalar.
        """
        return self.alpha_bars()[check_index("t", t, 0, self.T)]


def linear_betas(T: Index, beta_start: Scalar, beta_end: Scalar) -> Float[np.ndarray, " T"]:
    """Linearly spaced betas (DDPM §4: β from 1e-4 to 0.02 with T = 1000).

    Formula: betas[k] = beta_start + (beta_end − beta_start)·k/(T − 1), k = 0..T−1, with
    betas[T−1] set to exactly beta_end; T = 1 gives [beta_end].
    Shapes: -> (T,), float64.
    """
    T = check_index("T", T, 1, 2**62)
    if T == 1:
        return np.array([beta_end], dtype=np.float64)
    k = np.arange(T, dtype=np.float64)
    betas = beta_start + (beta_end - beta_start) * k / (T - 1)
    betas[-1] = beta_end
    return betas


def cosine_betas(T: Index, s: Scalar = 0.008, max_beta: Scalar = 0.999) -> Float[np.ndarray, " T"]:
    """Cosine schedule (Nichol & Dhariwal 2021, Eq. 17).

    Formula: f(t) = cos²(((t/T) + s)/(1 + s) · π/2); ᾱ_t = f(t)/f(0);
    betas[k] = min(1 − f(k+1)/f(k), max_beta), k = 0..T−1.
    Shapes: -> (T,), float64.
    """
    T = check_index("T", T, 1, 2**62)
    t = np.arange(T + 1, dtype=np.float64)
    f = np.cos(((t / T) + s) / (1 + s) * math.pi / 2) ** 2
    return np.minimum(1 - f[1:] / f[:-1], max_beta)


def time_of_index(t: Index, T: Index) -> float:
    """The model's time input: t / T, and 0 when T = 0 (the one time convention).

    Formula: time_of_index(t, T) = t / T ∈ [0, 1], t ∈ {0..T}.
    Shapes: scalars -> float.
    """
    T = check_index("T", T, 0, 2**62)
    t = check_index("t", t, 0, T)
    return 0.0 if T == 0 else t / T
