"""UniPC (Zhao et al. 2023), data prediction, on the table-time grid: the twins of `spec.unipc`,
batched.

A step t → t_next from the x̂_0 history (oldest first, the last at t) is the DDIM part
x_base = (σ_n/σ_t)·(x_t − √ᾱ_t·m_0) + √ᾱ_n·m_0 minus √ᾱ_n·B(h)·Σ ρ_k·D_k, D_k = (m_k − m_0)/r_k,
r_k = (λ_{t_k} − λ_t)/h, with ρ solving the Vandermonde system R·ρ = b (b_k = k!·ψ_k/B(h)), or ½
for UniP-2 and UniC-1; the corrector adds the point m_next = x̂_0(x_pred, t_next) at r = 1. Into
ᾱ_next = 1 and from ᾱ_t = 0 a step is DDIM's. r, B(h), b and ρ are computed in float64 on the host from the
schedule's float64 ᾱ table and cast once; times are ints (one grid for the batch).
Shapes: x_t, every x̂_0 (B, C, H, W); x0_hats a sequence of p tensors or one (p, B, C, H, W).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from runtime.core import check_deterministic, decreasing_grid
from runtime.ddpm import x0_pred
from runtime.dpm_solver import _data_step
from runtime.schedule import Schedule

UNIPC_VARIANTS = ("bh1", "bh2")
"""B(h) = h ("bh1") or e^h − 1 ("bh2"), in the data-prediction sign h → −h."""


def _check(sched: Schedule, x_t: Tensor, x0_hats: Sequence[Tensor] | Tensor,
           times: Sequence[int], t_next: int, variant: str) -> list[int]:
    if variant not in UNIPC_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(UNIPC_VARIANTS)}, got {variant!r}")
    ts = [int(s) for s in times]
    if not 1 <= len(ts) <= 3:
        raise ValueError(f"times must hold 1 to 3 grid times, got {ts}")
    if len(x0_hats) != len(ts):
        raise ValueError(f"x0_hats and times must have the same length, got {len(x0_hats)} and "
                         f"{len(ts)}")
    for k, m in enumerate(x0_hats):
        if tuple(m.shape) != tuple(x_t.shape):
            raise ValueError(f"x0_hats[{k}] must have the shape of x_t {tuple(x_t.shape)}, got "
                             f"{tuple(m.shape)}")
    if not (ts[0] <= sched.T and ts[-1] >= 1
            and all(a > b for a, b in zip(ts, ts[1:], strict=False))):
        raise ValueError(f"times must be strictly decreasing in 1..{sched.T}, got {ts}")
    if not 0 <= t_next < ts[-1]:
        raise ValueError(f"t_next must be in 0..{ts[-1] - 1}, got t_next = {t_next}")
    return ts


def _lam(sched: Schedule, t: int) -> float:
    ab = float(sched.alpha_bar.float64[t])
    if ab == 0.0:
        return -math.inf
    return 0.5 * (math.log(ab) - math.log1p(-ab))


def _rho(sched: Schedule, ts: list[int], t_next: int, variant: str,
         corrector: bool) -> tuple[list[float], list[float], float]:
    """(r_k most recent first, with r = 1 appended for the corrector; ρ; √ᾱ_n·B(h)), float64."""
    lam_t, lam_n = _lam(sched, ts[-1]), _lam(sched, t_next)
    h = lam_n - lam_t
    r = [(_lam(sched, ts[k]) - lam_t) / h for k in range(len(ts) - 2, -1, -1)]
    z = -h
    B = z if variant == "bh1" else math.expm1(z)
    psi, b = math.expm1(z) / z - 1.0, []
    for k in range(1, len(ts) + 1):
        b.append(math.factorial(k) * psi / B)
        psi = psi / z - 1.0 / math.factorial(k + 1)
    if corrector:
        r = [*r, 1.0]
    else:
        b = b[:-1]
    if len(r) == 1:
        rho = [0.5]
    else:
        rho = np.linalg.solve(np.vander(np.array(r), increasing=True).T, np.array(b)).tolist()
    return r, rho, math.sqrt(float(sched.alpha_bar.float64[t_next])) * B


def _update(sched: Schedule, x_t: Tensor, m: list[Tensor], ts: list[int], t_next: int,
            variant: str, m_next: Tensor | None) -> Tensor:
    x_next = _data_step(sched, x_t, m[-1], ts[-1], t_next)  # working dtype
    infinite = (float(sched.alpha_bar.float64[t_next]) == 1.0
                or float(sched.alpha_bar.float64[ts[-1]]) == 0.0)  # h = ∞: first order
    if infinite or (m_next is None and len(ts) == 1):
        return x_next.to(x_t.dtype)
    r, rho, aB = _rho(sched, ts, t_next, variant, m_next is not None)
    wd = x_next.dtype
    m0 = m[-1].to(wd)
    D = [(m[-2 - k].to(wd) - m0) * (1.0 / r[k]) for k in range(len(ts) - 1)]
    if m_next is not None:
        D.append(m_next.to(wd) - m0)
    correction = sum(rho[k] * D[k] for k in range(len(D)))
    return (x_next - aB * correction).to(x_t.dtype)


def unip_step(sched: Schedule, x_t: Tensor, x0_hats: Sequence[Tensor] | Tensor,
              times: Sequence[int], t_next: int, variant: str = "bh2") -> Tensor:
    """UniP-p, p = len(times) ∈ {1, 2, 3} (times oldest first, the last the current t).
    Shapes: x_t (B, C, H, W), x0_hats p × (B, C, H, W) -> (B, C, H, W)."""
    ts = _check(sched, x_t, x0_hats, times, t_next, variant)
    return _update(sched, x_t, list(x0_hats), ts, t_next, variant, None)


def unic_step(sched: Schedule, x_t: Tensor, x0_hats: Sequence[Tensor] | Tensor,
              times: Sequence[int], t_next: int, x0_hat_next: Tensor,
              variant: str = "bh2") -> Tensor:
    """UniC-p with m_next = x0_hat_next at r = 1, p = len(times) ∈ {1, 2, 3}.
    Shapes: x_t, x0_hat_next (B, C, H, W), x0_hats p × (B, C, H, W) -> (B, C, H, W)."""
    ts = _check(sched, x_t, x0_hats, times, t_next, variant)
    if tuple(x0_hat_next.shape) != tuple(x_t.shape):
        raise ValueError(f"x0_hat_next must have the shape of x_t {tuple(x_t.shape)}, got "
                         f"{tuple(x0_hat_next.shape)}")
    return _update(sched, x_t, list(x0_hats), ts, t_next, variant, x0_hat_next)


@torch.no_grad()
def unipc_sample(sched: Schedule, model: torch.nn.Module, x_T: Tensor,
                 grid: Sequence[int] | Tensor, noise: None = None, order: int = 2,
                 variant: str = "bh2", corrector: bool = True, progress: bool = False) -> Tensor:
    """UniPC-p on τ_0 > … > τ_M = 0: step i at order min(p, i, M + 1 − i), the corrector on all
    steps but the last (M model evaluations); noise must be None.
    Shapes: x_T (B, C, H, W) -> (B, C, H, W). Runs under torch.no_grad()."""
    ts = decreasing_grid("grid", grid, 0, sched.T, end=0, integers=True)
    check_deterministic(noise)
    if isinstance(order, bool) or order not in (1, 2, 3):
        raise ValueError(f"order must be in {{1..3}}, got order = {order!r}")
    if variant not in UNIPC_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(UNIPC_VARIANTS)}, got {variant!r}")
    M = len(ts) - 1
    x, m = x_T, [x0_pred(sched, model, x_T, ts[0])]
    for i in tqdm(range(1, M + 1), desc="unipc", disable=not progress):
        q = min(order, i, M + 1 - i)
        history, times = m[-q:], ts[i - q:i]
        x_pred = unip_step(sched, x, history, times, ts[i], variant)
        if i == M:
            return x_pred
        m.append(x0_pred(sched, model, x_pred, ts[i]))
        x = unic_step(sched, x, history, times, ts[i], m[-1], variant) if corrector else x_pred
    return x


__all__ = ["UNIPC_VARIANTS", "unic_step", "unip_step", "unipc_sample"]
