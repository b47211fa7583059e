"""Variance schedules: the twins of `spec.schedule`, plus the runtime's `Schedule` class.

Notation and time convention as in `spec` (spec/__init__.py, docs/conventions.md): t ∈ {0..T},
β_t, α_t = 1 − β_t, ᾱ_t = Π_{s≤t} α_s. The model is fed t/T.

`Schedule` computes every coefficient table once, in float64 on the CPU, with the spec's formulas
(EPS, `sqrt_nonneg` and `safe_div` at the spec's places). Every table has T + 1 entries and is
indexed by the time t; it is an attribute named after its formula (`sched.alpha_bar`,
`sched.sqrt_one_minus_alpha_bar`, `sched.beta_tilde`, …), a `Table`. Entry t = 0 is defined as
β_0 = 0, α_0 = 1, ᾱ_0 = 1, ᾱ_{−1} := 1 (so β̃_0 = 0 and the μ̃ coefficients are 0 there); no
step reads it except through ᾱ_0 = 1.

A step reads a coefficient with `sched.<table>.at(t, like)`, which gathers table[t] for an int t
or a (B,) LongTensor t, cast once per (dtype, device) and cached, and reshapes it to broadcast
over `like` (B, 1, 1, 1). Nothing in it synchronises with the device: int t is range-checked on
the host, tensor t is not checked.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import torch
from torch import Tensor

from runtime.core import EPS, coef_dtype, safe_div, sqrt_nonneg, work_dtype

TimeIndex = int | Tensor
"""A time index: a Python int (one time for the whole batch) or a (B,) LongTensor (per sample)."""


def check_step_time(t: TimeIndex, T: int) -> None:
    """A reverse step x_t → x_(t−1) needs t ∈ {1..T}: checked for an int t on the host (a
    tensor t is not checked: that would synchronise with the device)."""
    if not isinstance(t, Tensor) and not 1 <= t <= T:
        raise ValueError(f"t = {t} is outside 1..{T} (the step at time t maps x_t to x_(t-1))")

TABLES = (
    "beta",
    "alpha",
    "alpha_bar",
    "alpha_bar_prev",
    "one_minus_alpha_bar",
    "sqrt_alpha_bar",
    "sqrt_one_minus_alpha_bar",
    "beta_tilde",
    "sqrt_beta_tilde",
    "sqrt_beta_large",
    "mu_tilde_coef_x0",
    "mu_tilde_coef_x_t",
    "snr",
)
"""The coefficient tables of a `Schedule`, each of length T + 1, indexed by t."""


def _coefficient_tables(betas: Tensor) -> dict[str, Tensor]:
    """Every table a step needs, in float64. Shapes: betas (T,) -> every table (T + 1,)."""
    one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    beta = torch.cat([zero, betas])  # β_t, β_0 = 0
    alpha = 1.0 - beta  # α_t, α_0 = 1
    alpha_bar = torch.cat([one, torch.cumprod(1.0 - betas, 0)])  # ᾱ_t, ᾱ_0 = 1
    alpha_bar_prev = torch.cat([one, alpha_bar[:-1]])  # ᾱ_{t−1}, ᾱ_{−1} := 1
    one_minus_alpha_bar = 1.0 - alpha_bar
    # β̃_t = (1 − ᾱ_{t−1})·β_t / (1 − ᾱ_t)   (DDPM Eq. 7, "fixed small" reverse variance)
    beta_tilde = safe_div((1.0 - alpha_bar_prev) * beta, one_minus_alpha_bar)
    return {
        "beta": beta,
        "alpha": alpha,
        "alpha_bar": alpha_bar,
        "alpha_bar_prev": alpha_bar_prev,
        "one_minus_alpha_bar": one_minus_alpha_bar,
        "sqrt_alpha_bar": sqrt_nonneg(alpha_bar),
        "sqrt_one_minus_alpha_bar": sqrt_nonneg(one_minus_alpha_bar),
        "beta_tilde": beta_tilde,
        # σ_t = √β̃_t, DDPM's reverse-step noise scale (Algorithm 2)
        "sqrt_beta_tilde": sqrt_nonneg(beta_tilde),
        # σ_t = √β_t, DDPM §3.2's "fixed large" noise scale, 0 at t ≤ 1 (Algorithm 2: z = 0 at t = 1)
        "sqrt_beta_large": torch.cat([zero, zero, sqrt_nonneg(betas[1:])]),
        # DDPM Eq. 7: μ̃_t = mu_tilde_coef_x0·x0 + mu_tilde_coef_x_t·x_t
        "mu_tilde_coef_x0": safe_div(sqrt_nonneg(alpha_bar_prev) * beta, one_minus_alpha_bar),
        "mu_tilde_coef_x_t": safe_div(sqrt_nonneg(alpha) * (1.0 - alpha_bar_prev), one_minus_alpha_bar),
        # SNR(t) = ᾱ_t / (1 − ᾱ_t) (Kingma et al. 2021), 0 exactly where ᾱ_t = 0
        "snr": safe_div(alpha_bar, one_minus_alpha_bar),
    }


def _check_betas(betas: Tensor) -> None:
    if betas.ndim != 1:
        raise ValueError(f"betas must be a 1-d sequence, got shape {tuple(betas.shape)}")
    bad = ~((betas >= 0.0) & (betas <= 1.0))
    if bool(bad.any()):
        k = int(torch.nonzero(bad)[0, 0])
        raise ValueError(
            f"betas[{k}] = {float(betas[k])!r} is outside [0, 1]: every beta must be in [0, 1]"
        )


class _Casts:
    """The float64 tables of one schedule and their casts, shared by its `.to()` copies."""

    def __init__(self, tables64: dict[str, Tensor]) -> None:
        self.tables64 = tables64
        self.cache: dict[tuple[str, torch.dtype, torch.device], Tensor] = {}

    def cast(self, name: str, dtype: torch.dtype, device: str | torch.device) -> Tensor:
        """The float64 table `name` cast to (dtype, device); each cast is made once and cached."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        key = (name, dtype, device)
        if key not in self.cache:  # first use of (dtype, device): cast every table, once
            for other, table64 in self.tables64.items():
                self.cache[(other, dtype, device)] = table64.to(dtype=dtype).to(device=device)
        return self.cache[key]


class Table:
    """One coefficient table c_t, t = 0..T (T + 1 entries), computed in float64 and cast once
    per (dtype, device). `table[t]` reads it in the schedule's default dtype and device (any
    index or slice); `table.at(t, like)` is what a step uses; `table.float64` is the master copy.
    """

    def __init__(self, name: str, casts: _Casts, dtype: torch.dtype, device: torch.device) -> None:
        self.name, self._casts, self._dtype, self._device = name, casts, dtype, device

    @property
    def float64(self) -> Tensor:
        """The table in float64 on the CPU, as computed. Shapes: (T + 1,)."""
        return self._casts.tables64[self.name]

    def cast(self, dtype: torch.dtype, device: str | torch.device) -> Tensor:
        """The whole table in (dtype, device), cached. Shapes: (T + 1,)."""
        return self._casts.cast(self.name, dtype, device)

    def __getitem__(self, t: int | slice | Tensor) -> Tensor:
        return self.cast(self._dtype, self._device)[t]

    def __len__(self) -> int:
        return int(self.float64.shape[0])

    def at(self, t: TimeIndex, like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """table[t] in `dtype` (default: like's working dtype), shaped to broadcast over like:
        a 0-d CPU tensor for int t, (B, 1, …, 1) on like's device for a (B,) tensor t."""
        if dtype is None:
            dtype = work_dtype(like.dtype)
        if isinstance(t, Tensor):
            values = self.cast(dtype, like.device)[t.to(device=like.device)]  # (B,)
            return values.reshape(values.shape + (1,) * (like.ndim - values.ndim))
        # An int t gives a 0-d CPU tensor: PyTorch passes it to a kernel on any device as a
        # scalar, so the coefficient arithmetic of a step runs on the host and launches nothing.
        table = self.cast(dtype, "cpu")
        t = operator.index(t)
        if not 0 <= t < table.shape[0]:
            raise ValueError(f"time index {t} is outside 0..{table.shape[0] - 1} for {self.name}")
        return table[t]

    def coef(self, t: TimeIndex, like: Tensor) -> Tensor:
        """table[t] in the coefficient dtype (float64 where the device has it), shaped like `at`."""
        return self.at(t, like, dtype=coef_dtype(like.device))

    def __repr__(self) -> str:
        return f"Table({self.name}, T + 1 = {len(self)})"


class Schedule:
    """A discrete VP schedule with precomputed coefficient tables (float64, cast once).

    Schedule(betas, dtype=torch.float32, device="cpu"): `betas` is any 1-d sequence or tensor
    (β_1, …, β_T) with every value in [0, 1] (ValueError otherwise, naming `betas`, the index and
    the value; β = 1 ends a zero-terminal-SNR schedule). Every name of `TABLES` is an attribute,
    a `Table` of T + 1 entries indexed by t (`sched.alpha_bar[t]`, `sched.beta[t]`,
    `sched.sqrt_one_minus_alpha_bar.at(t, x)`). `first_zero_alpha_bar` is the first t with
    ᾱ_t = 0 exactly, or None (known on the host). `.to()` returns a schedule with the same
    float64 tables and another default dtype/device.
    """

    beta: Table
    alpha: Table
    alpha_bar: Table
    alpha_bar_prev: Table
    one_minus_alpha_bar: Table
    sqrt_alpha_bar: Table
    sqrt_one_minus_alpha_bar: Table
    beta_tilde: Table
    sqrt_beta_tilde: Table
    sqrt_beta_large: Table
    mu_tilde_coef_x0: Table
    mu_tilde_coef_x_t: Table
    snr: Table

    def __init__(
        self,
        betas: Sequence[float] | Tensor,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        if isinstance(betas, Tensor):
            betas64 = betas.detach().to(device="cpu", dtype=torch.float64).clone()
        else:
            betas64 = torch.tensor(list(betas), dtype=torch.float64)
        _check_betas(betas64)
        self._init(_Casts(_coefficient_tables(betas64)), dtype, torch.device(device))

    def _init(self, casts: _Casts, dtype: torch.dtype, device: torch.device) -> None:
        self._casts = casts
        self.T = int(casts.tables64["beta"].shape[0]) - 1
        zeros = torch.nonzero(casts.tables64["alpha_bar"] == 0.0)
        self.first_zero_alpha_bar = int(zeros[0, 0]) if zeros.numel() else None
        self.dtype = dtype
        self.device = device
        for name in TABLES:
            setattr(self, name, Table(name, casts, dtype, device))

    def to(
        self, dtype: torch.dtype | None = None, device: str | torch.device | None = None
    ) -> Schedule:
        """The same schedule with another default dtype and/or device (tables re-cast from float64)."""
        new = Schedule.__new__(Schedule)
        new._init(
            self._casts,
            self.dtype if dtype is None else dtype,
            self.device if device is None else torch.device(device),
        )
        return new

    def __repr__(self) -> str:
        return f"Schedule(T={self.T}, dtype={self.dtype}, device={self.device})"


VPSchedule = Schedule
"""The spec's name for the schedule class (`spec.schedule.VPSchedule`)."""


def linear_betas(T: int, beta_start: float, beta_end: float) -> Tensor:
    """β_t = beta_start + (beta_end − beta_start)·(t − 1)/(T − 1), t = 1..T, β_T exactly beta_end
    (DDPM §4); returns (β_1, …, β_T). T = 1 gives [beta_end]. Shapes: -> (T,) float64."""
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    if T == 1:
        return torch.tensor([beta_end], dtype=torch.float64)
    k = torch.arange(T, dtype=torch.float64)
    betas = beta_start + (beta_end - beta_start) * k / (T - 1)
    betas[T - 1] = beta_end
    return betas


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """f(t) = cos²(((t/T) + s)/(1 + s)·π/2); β_t = min(1 − f(t)/f(t − 1), max_beta), t = 1..T
    (Nichol & Dhariwal 2021, Eq. 17); returns (β_1, …, β_T). Shapes: -> (T,) float64."""
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    steps = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos(((steps / T) + s) / (1 + s) * math.pi / 2) ** 2
    return torch.clamp(1.0 - f[1:] / f[:-1], max=max_beta)


def time_of_index(t: TimeIndex, T: int, dtype: torch.dtype = torch.float64) -> Tensor | float:
    """t / T, the time fed to the model (0 when T = 0). An int t gives a float; a tensor t gives
    a tensor of `dtype`. Never t/(T − 1)."""
    if isinstance(t, Tensor):
        t = t.to(dtype)
    elif not 0 <= t <= T:
        raise ValueError(f"t must be in 0..T = {T}, got t = {t}")
    if T == 0:
        return t * 0.0
    return t / T


def rescale_zero_terminal_snr(betas: Tensor | Sequence[float]) -> Tensor:
    """Lin et al. 2023, Algorithm 1, in our convention: s_t = √ᾱ_t (t = 1..T);
    s'_t = s_1·(s_t − s_T)/(s_1 − s_T) (s'_1 = s_1 exactly, s'_T = 0); ᾱ' = s'²;
    β'_1 = 1 − ᾱ'_1, β'_t = 1 − ᾱ'_t/ᾱ'_{t−1} (t = 2..T, exact; β'_t = 1 where ᾱ'_{t−1} = 0),
    so β'_T = 1. Needs T ≥ 2 and ᾱ_1 > ᾱ_T. Shapes: (T,) -> (T,) float64."""
    b = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
    _check_betas(b)
    if b.shape[0] < 2:
        raise ValueError(f"zero terminal SNR needs T >= 2 steps, got T = {b.shape[0]}")
    s = torch.sqrt(torch.cumprod(1.0 - b, 0))
    s1, sT = s[0].clone(), s[-1].clone()
    if not bool(s1 > sT):
        raise ValueError(f"zero terminal SNR needs alpha_bar_1 > alpha_bar_T, got "
                         f"sqrt(alpha_bar_1) = {float(s1)!r} and sqrt(alpha_bar_T) = {float(sT)!r}")
    ab = (s1 * ((s - sT) / (s1 - sT))) ** 2
    prev = ab[:-1]  # ᾱ'_{t−1}, t = 2..T: 0 only where β_t..β_T are all 0 (then ᾱ'_t = 0 too)
    ratio = torch.where(prev > 0, ab[1:] / torch.where(prev > 0, prev, 1.0), 0.0)
    return 1.0 - torch.cat([ab[:1], ratio])


SPACINGS = ("even", "leading", "linspace", "trailing")
"""The sampling grids of `timestep_grid` (DDIM's even stride and Lin et al. 2023's three)."""


def _round_half_even(num: int, den: int) -> int:
    q, r = divmod(num, den)
    return q + 1 if 2 * r > den or (2 * r == den and q % 2 == 1) else q


def timestep_grid(T: int, n: int, spacing: str = "even") -> list[int]:
    """n model-evaluation times, then 0 (Lin et al. 2023, Table 2, in our t ∈ {0..T}; diffusers'
    0-based timestep τ is t = τ + 1). For i = 0..n−1, rounding to nearest with ties to even:
    even τ_i = ⌊(T(n − i) + ⌊n/2⌋)/n⌋; trailing round(T(n − i)/n); leading 1 + (n − 1 − i)⌊T/n⌋;
    linspace round(1 + (n − 1 − i)(T − 1)/(n − 1)) ([1] for n = 1). n + 1 strictly decreasing
    ints ending at 0, for every 1 ≤ n ≤ T."""
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be an integer >= 1, got T = {T!r}")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= T:
        raise ValueError(f"n must be an integer in 1..T = {T}, got n = {n!r}")
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {', '.join(SPACINGS)}, got {spacing!r}")
    if spacing == "even":
        times = [(T * (n - i) + n // 2) // n for i in range(n)]
    elif spacing == "trailing":
        times = [_round_half_even(T * (n - i), n) for i in range(n)]
    elif spacing == "leading":
        times = [1 + (n - 1 - i) * (T // n) for i in range(n)]
    elif n == 1:
        times = [1]
    else:
        times = [_round_half_even((n - 1) + (n - 1 - i) * (T - 1), n - 1) for i in range(n)]
    return [*times, 0]


__all__ = [
    "EPS",
    "SPACINGS",
    "Schedule",
    "TABLES",
    "Table",
    "TimeIndex",
    "check_step_time",
    "VPSchedule",
    "cosine_betas",
    "linear_betas",
    "rescale_zero_terminal_snr",
    "time_of_index",
    "timestep_grid",
]
