"""runtime.schedule beyond conformance: caching, casting once, dtype/device rules, errors."""

from __future__ import annotations

import pytest
import torch

from runtime.forward import q_posterior_mean_variance, q_sample
from runtime.schedule import (
    TABLES,
    Schedule,
    VPSchedule,
    cosine_betas,
    linear_betas,
    time_of_index,
)


def test_tables_are_float64_masters_cast_once_and_cached() -> None:
    sched = Schedule(linear_betas(10, 1e-4, 0.02), dtype=torch.float32)
    assert sched.beta[:].dtype == torch.float32 and sched.alpha_bar[:].dtype == torch.float32
    a = sched.sqrt_alpha_bar.cast(torch.float32, "cpu")
    assert a is sched.sqrt_alpha_bar.cast(torch.float32, "cpu")  # cached: cast once
    b = sched.sqrt_alpha_bar.cast(torch.float64, "cpu")
    assert b.dtype == torch.float64 and torch.allclose(a.double(), b, atol=1e-7)
    assert sched.alpha_bar.float64.dtype == torch.float64


def test_every_table_has_T_plus_1_entries_indexed_by_t() -> None:
    betas = [0.1, 0.2, 0.3]
    sched = Schedule(betas, dtype=torch.float64)
    for name in TABLES:
        assert len(getattr(sched, name)) == sched.T + 1, name
    assert sched.beta[0] == 0.0 and sched.alpha[0] == 1.0 and sched.alpha_bar[0] == 1.0
    for t in range(1, 4):
        assert sched.beta[t] == betas[t - 1] and sched.alpha[t] == 1.0 - betas[t - 1]
        assert sched.alpha_bar_prev[t] == sched.alpha_bar[t - 1]
        assert sched.alpha_bar[t] == sched.alpha_bar[t - 1] * (1.0 - betas[t - 1])


def test_to_shares_the_float64_tables() -> None:
    sched = Schedule([0.1, 0.2, 0.3])
    other = sched.to(dtype=torch.float64)
    assert other.alpha_bar.float64 is sched.alpha_bar.float64
    assert other.alpha_bar[:].dtype == torch.float64 and other.T == 3
    assert VPSchedule is Schedule


def test_coefficients_follow_x_not_the_schedule_default_dtype() -> None:
    sched = Schedule(cosine_betas(50), dtype=torch.float32)
    x64 = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    out = q_sample(sched, x64, 30, torch.randn_like(x64))
    assert out.dtype == torch.float64  # float64 x gets float64 coefficients, not the float32 ones
    eps = torch.zeros_like(x64)
    exact = sched.sqrt_alpha_bar.cast(torch.float64, "cpu")[30] * x64
    assert torch.equal(q_sample(sched, x64, 30, eps), exact)


def test_per_sample_t_gathers_and_broadcasts() -> None:
    sched = Schedule(linear_betas(20, 1e-4, 0.02), dtype=torch.float64)
    x0 = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    eps = torch.randn_like(x0)
    t = torch.tensor([0, 7, 20])
    batched = q_sample(sched, x0, t, eps)
    for i in range(3):
        assert torch.equal(batched[i], q_sample(sched, x0[i : i + 1], int(t[i]), eps[i : i + 1])[0])
    _, var = q_posterior_mean_variance(sched, x0, x0, torch.tensor([1, 2, 3]))
    assert var.shape == (3, 1, 1, 1)


@pytest.mark.parametrize("bad", [[0.1, 1.5], [-0.01], [float("nan")], [[0.1, 0.2]]])
def test_invalid_betas_name_the_value(bad: list) -> None:
    with pytest.raises(ValueError, match="betas"):
        Schedule(bad)


def test_int_indices_are_range_checked_tensor_indices_are_not_synced() -> None:
    sched = Schedule([0.1, 0.2])
    with pytest.raises(ValueError):
        sched.beta.at(3, torch.zeros(1))
    with pytest.raises(ValueError):
        q_posterior_mean_variance(sched, torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), 0)
    assert sched.alpha_bar[torch.tensor([0, 2])].shape == (2,)


def test_time_of_index() -> None:
    assert time_of_index(3, 10) == 0.3 and time_of_index(0, 0) == 0.0
    t = time_of_index(torch.tensor([0, 5, 10]), 10)
    assert t.dtype == torch.float64 and torch.equal(t, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    assert time_of_index(torch.tensor([5]), 10, dtype=torch.float32).dtype == torch.float32
    with pytest.raises(ValueError):
        time_of_index(11, 10)


def test_schedule_betas_end_exactly() -> None:
    assert linear_betas(1, 1e-4, 0.02).tolist() == [0.02]
    assert linear_betas(1000, 1e-4, 0.02)[-1].item() == 0.02
    assert cosine_betas(10).max().item() <= 0.999
