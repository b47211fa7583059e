"""The variance schedule β_1..β_T and its tables β_t, α_t, ᾱ_t (DDPM, Ho et al. 2020, §2).

Every table is indexed by the time t and has T + 1 entries (the time convention of
`spec/__init__.py`); `linear_betas` and `cosine_betas` return the T inputs β_1..β_T.
"""

import math

import numpy as np
from jaxtyping import Float, Int

from spec.core import Index, Scalar, check, holds, in_range

__all__ = [
    "VPSchedule",
    "linear_betas",
    "cosine_betas",
    "time_of_index",
    "rescale_zero_terminal_snr",
    "SPACINGS",
    "timestep_grid",
]


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class VPSchedule:
    """A discrete variance-preserving schedule, its tables indexed by t (DDPM Eq. 2 and 4).

    Formula: from betas = (β_1, …, β_T): beta[t] = β_t, alpha[t] = α_t = 1 − β_t,
    alpha_bar[t] = ᾱ_t = Π_{s=1..t} α_s, for t ∈ {0..T}; entry t = 0 is β_0 = 0, α_0 = 1,
    ᾱ_0 = 1 (nothing is noised at t = 0; no step reads β_0 or α_0).
    Every beta must lie in [0, 1] (ValueError naming the index and value otherwise); β_t = 1
    makes ᾱ_s = 0 for s ≥ t (zero terminal SNR: `rescale_zero_terminal_snr` ends with β_T = 1).
    The tables are read-only arrays in betas' dtype.
    Shapes: betas (T,) -> beta, alpha, alpha_bar (T + 1,).
    """

    beta: Float[np.ndarray, " T_plus_1"]
    alpha: Float[np.ndarray, " T_plus_1"]
    alpha_bar: Float[np.ndarray, " T_plus_1"]

    def __init__(self, betas: Float[np.ndarray, " T"]) -> None:
        if betas.ndim != 1:
            raise ValueError(f"betas must be a 1-d array of length T, got shape {betas.shape}")
        bad = np.flatnonzero(~((betas >= 0) & (betas <= 1)))
        if bad.size:
            k = int(bad[0])
            raise ValueError(
                f"betas must lie in [0, 1], got betas[{k}] = {betas[k]!r} "
                f"({bad.size} value(s) outside the range)"
            )
        self.beta = _read_only(np.concatenate([np.zeros(1, dtype=betas.dtype), betas]))
        self.alpha = _read_only(1 - self.beta)
        self.alpha_bar = _read_only(np.cumprod(self.alpha))  # ᾱ_t = ᾱ_{t−1}·α_t, ᾱ_0 = α_0 = 1

    @property
    def T(self) -> int:
        """Number of diffusion steps T = len(beta) − 1."""
        return len(self.beta) - 1

    def __repr__(self) -> str:
        return f"VPSchedule(T={self.T})"


def linear_betas(T: Index, beta_start: Scalar, beta_end: Scalar) -> Float[np.ndarray, " T"]:
    """Linearly spaced betas (DDPM §4: β from 1e-4 to 0.02 with T = 1000).

    Formula: β_t = beta_start + (beta_end − beta_start)·(t − 1)/(T − 1), t = 1..T, with
    β_T set to exactly beta_end; T = 1 gives [beta_end]. Returns (β_1, …, β_T).
    Shapes: -> (T,), float64.
    """
    T = check(in_range("T", T, 1, 2**62))
    if T == 1:
        return np.array([beta_end], dtype=np.float64)
    k = np.arange(T, dtype=np.float64)
    betas = beta_start + (beta_end - beta_start) * k / (T - 1)
    betas[-1] = beta_end
    return betas


def cosine_betas(T: Index, s: Scalar = 0.008, max_beta: Scalar = 0.999) -> Float[np.ndarray, " T"]:
    """Cosine schedule (Nichol & Dhariwal 2021, Eq. 17).

    Formula: f(t) = cos²(((t/T) + s)/(1 + s) · π/2); ᾱ_t = f(t)/f(0);
    β_t = min(1 − f(t)/f(t − 1), max_beta), t = 1..T. Returns (β_1, …, β_T).
    Shapes: -> (T,), float64.
    """
    T = check(in_range("T", T, 1, 2**62))
    t = np.arange(T + 1, dtype=np.float64)
    f = np.cos(((t / T) + s) / (1 + s) * math.pi / 2) ** 2
    return np.minimum(1 - f[1:] / f[:-1], max_beta)


def time_of_index(t: Index, T: Index) -> float:
    """The model's time input t_norm: t / T, and 0 when T = 0 (the time convention).

    Formula: t_norm = time_of_index(t, T) = t / T ∈ [0, 1], t ∈ {0..T}.
    Shapes: scalars -> float.
    """
    T, t = check(in_range("T", T, 0, 2**62), in_range("t", t, 0, T))
    return 0.0 if T == 0 else t / T


def rescale_zero_terminal_snr(betas: Float[np.ndarray, " T"]) -> Float[np.ndarray, " T"]:
    """Rescale betas to zero terminal SNR (Lin et al. 2023, "Common Diffusion Noise Schedules and
    Sample Steps are Flawed", Algorithm 1).

    Formula: s_t = √ᾱ_t (t = 1..T, from betas); s'_t = s_1·(s_t − s_T)/(s_1 − s_T), so s'_1 = s_1
    exactly and s'_T = 0; ᾱ'_t = s'_t²; β'_1 = 1 − ᾱ'_1,
    β'_t = 1 − ᾱ'_t/ᾱ'_{t−1} (t = 2..T), hence β'_T = 1 and SNR(T) = 0. The division is exact
    (no safe_div: ᾱ'_{T−1} is 4.2e-9 on DDPM's linear schedule, where EPS would move β'_998 by
    2e-5 and ᾱ'_999 by 1.4e-4 relative); ᾱ'_{t−1} = 0 happens only when β_t = … = β_T = 0, and
    there ᾱ'_t = 0 too and β'_t = 1 (the chain has reached pure noise).
    Needs T ≥ 2, betas in [0, 1] and ᾱ_1 > ᾱ_T (ValueError otherwise); betas in (0, 1) give
    betas' in (0, 1].
    Shapes: betas (T,) -> (T,), float64.
    """
    betas = np.asarray(betas, dtype=np.float64)
    VPSchedule(betas)  # validates: 1-d, every beta in [0, 1]
    if betas.shape[0] < 2:
        raise ValueError(f"zero terminal SNR needs T >= 2 steps, got T = {betas.shape[0]}")
    s = np.sqrt(np.cumprod(1 - betas))  # √ᾱ_1 .. √ᾱ_T
    s1, sT = s[0], s[-1]
    if not s1 > sT:
        raise ValueError(
            f"zero terminal SNR needs alpha_bar_1 > alpha_bar_T, got sqrt(alpha_bar_1) = {s1!r} "
            f"and sqrt(alpha_bar_T) = {sT!r}"
        )
    ab = (s1 * ((s - sT) / (s1 - sT))) ** 2  # ᾱ'_1 .. ᾱ'_T
    prev = ab[:-1]  # ᾱ'_{t−1}, t = 2..T: ≥ 0, and 0 only where β_t..β_T are all 0
    ratio = np.divide(ab[1:], prev, out=np.zeros_like(prev), where=prev > 0)  # ᾱ'_t/ᾱ'_{t−1}
    return 1 - np.concatenate([ab[:1], ratio])


SPACINGS: tuple[str, ...] = ("even", "leading", "linspace", "trailing")
"""The sampling grids of `timestep_grid`: DDIM's even stride and Lin et al. 2023's three."""


def _round_half_even(num: int, den: int) -> int:
    """round(num/den) with ties to even (NumPy's np.round), in exact integer arithmetic."""
    q, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and q % 2 == 1):
        return q + 1
    return q


def timestep_grid(T: Index, n: Index, spacing: str = "even") -> Int[np.ndarray, " n_plus_1"]:
    """The n model-evaluation times of a strided sampler, then 0 (Lin et al. 2023, Table 2).

    Formula (our convention: ᾱ_t after t noising steps, so Lin et al.'s 1-based t is our t and
    diffusers' 0-based timestep τ is our t = τ + 1; rounding is to nearest with ties to even,
    in exact integer arithmetic), for i = 0..n−1, then τ_n = 0:
      even:     τ_i = ⌊(T·(n − i) + ⌊n/2⌋)/n⌋   (round half up of T·(n − i)/n; `ddim_timesteps`)
      trailing: τ_i = round(T·(n − i)/n)          (starts at T: 1000, 900, …, 100 for T=1000, n=10)
      leading:  τ_i = 1 + (n − 1 − i)·⌊T/n⌋       (901, 801, …, 1: never visits T; the DDIM
                                                  paper's grid, its code's range(0, T, T // n))
      linspace: τ_i = round(1 + (n − 1 − i)·(T − 1)/(n − 1)), and [1] for n = 1
                                                  (1000, 889, …, 112, 1)
    Every grid is n + 1 strictly decreasing ints in {0..T} ending at 0, for every n ∈ {1..T}.
    Shapes: -> (n + 1,), int64.
    """
    T, n = check(
        in_range("T", T, 1, 2**62),
        in_range("n", n, 1, T),
        holds(spacing in SPACINGS, f"spacing must be one of {', '.join(SPACINGS)}, got {spacing!r}"),
    )
    if spacing == "even":
        times = [(T * (n - i) + n // 2) // n for i in range(n)]
    elif spacing == "trailing":
        times = [_round_half_even(T * (n - i), n) for i in range(n)]
    elif spacing == "leading":
        times = [1 + (n - 1 - i) * (T // n) for i in range(n)]
    elif n == 1:  # linspace(1, T, 1) = [1]
        times = [1]
    else:
        times = [_round_half_even((n - 1) + (n - 1 - i) * (T - 1), n - 1) for i in range(n)]
    return np.array([*times, 0], dtype=np.int64)
