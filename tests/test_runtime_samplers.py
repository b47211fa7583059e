"""runtime samplers beyond conformance: generators, progress bars, errors, no host syncs."""

from __future__ import annotations

import pytest
import torch

from runtime.ddim import ddim_sample, ddim_sample_strided, ddim_step_between, ddim_timesteps
from runtime.ddpm import ddpm_sample, ddpm_step
from runtime.forward import q_sample
from runtime.loss import eps_pred_loss
from runtime.model import EpsFiLMNetConfig, from_spec_params, init_film_params
from runtime.pf_ode import VPLinearSchedule, pf_ode_sample_euler, pf_ode_uniform_grid
from runtime.schedule import Schedule, linear_betas


def _setup(device: str = "cpu") -> tuple[Schedule, torch.nn.Module]:
    cfg = EpsFiLMNetConfig(1, 8, 1, 8, 4)
    model = from_spec_params(cfg, init_film_params(cfg, 0), dtype=torch.float32, device=device)
    return Schedule(linear_betas(20, 1e-4, 0.2), device=device), model.eval()


def test_generator_makes_samplers_reproducible() -> None:
    sched, model = _setup()
    x = torch.randn(2, 1, 4, 4)
    every = list(range(sched.T, -1, -1))
    a = ddpm_sample(sched, model, x, every, torch.Generator().manual_seed(3))
    b = ddpm_sample(sched, model, x, every, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    grid = ddim_timesteps(20, 5)
    c = ddim_sample_strided(sched, model, x, grid, torch.Generator().manual_seed(4), eta=1.0)
    d = ddim_sample_strided(sched, model, x, grid, torch.Generator().manual_seed(4), eta=1.0)
    assert torch.equal(c, d)


def test_generator_draws_noise_in_step_order() -> None:
    sched, model = _setup()
    x = torch.randn(2, 1, 4, 4)
    gen = torch.Generator().manual_seed(5)
    noise = torch.stack([torch.randn(x.shape, generator=gen) for _ in range(sched.T)])
    # step k = T-1 runs first and draws first
    every = list(range(sched.T, -1, -1))
    explicit = ddpm_sample(sched, model, x, every, noise.flip(0))
    drawn = ddpm_sample(sched, model, x, every, torch.Generator().manual_seed(5))
    assert torch.equal(explicit, drawn)


def test_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    sched, model = _setup()
    ddim_sample(sched, model, torch.randn(1, 1, 4, 4), progress=True)
    assert "ddim" in capsys.readouterr().err
    pf_ode_sample_euler(VPLinearSchedule(), model, torch.randn(1, 1, 4, 4),
                        pf_ode_uniform_grid(3), progress=True)
    assert "pf-ode" in capsys.readouterr().err


def test_sampler_errors_are_actionable() -> None:
    sched, model = _setup()
    x = torch.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match="noise must have shape"):
        ddpm_sample(sched, model, x, list(range(20, -1, -1)), torch.zeros(3, 1, 1, 4, 4))
    with pytest.raises(ValueError, match="every time"):
        ddpm_sample(sched, model, x, [20, 10, 0])
    with pytest.raises(ValueError, match="deterministic"):
        pf_ode_sample_euler(VPLinearSchedule(), model, x, [1.0, 0.0], torch.Generator())
    with pytest.raises(ValueError, match="strictly decreasing"):
        ddim_sample_strided(sched, model, x, [10, 10, 0])
    with pytest.raises(ValueError, match="eta"):
        ddim_step_between(sched, model, 5, 2, x, eta=0.5)
    with pytest.raises(ValueError, match="eta"):
        ddim_step_between(sched, model, 5, 2, x, eta=-1.0, z=x)
    with pytest.raises(ValueError, match="outside 1..20"):
        ddpm_step(sched, model, 21, x, x)


def test_samplers_keep_dtype_and_do_not_track_gradients() -> None:
    sched, model = _setup()
    x = torch.randn(1, 1, 4, 4, dtype=torch.bfloat16)
    model_bf16 = model.to(torch.bfloat16)
    out = ddim_sample(sched, model_bf16, x)
    assert out.dtype == torch.bfloat16 and not out.requires_grad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_hot_paths_do_not_synchronise_on_cuda() -> None:
    sched, model = _setup("cuda")
    x = torch.randn(4, 1, 4, 4, device="cuda")
    t = torch.randint(0, 21, (4,), device="cuda")
    t_step = torch.randint(1, 21, (4,), device="cuda")
    eps = torch.randn_like(x)
    noise = torch.randn(20, 4, 1, 4, 4, device="cuda")

    def hot_paths() -> None:
        eps_pred_loss(sched, model, x, t, eps).backward()
        q_sample(sched, x, t, eps)
        ddpm_step(sched, model, 8, x, eps)
        ddpm_step(sched, model, t_step, x, eps)
        ddim_step_between(sched, model, 9, 3, x, eta=0.5, z=eps, clip=True)
        ddim_step_between(sched, model, t_step, t_step - 1, x)
        ddpm_sample(sched, model, x, list(range(20, -1, -1)), noise)

    hot_paths()  # first use: the schedule's tables are uploaded once per (dtype, device)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        hot_paths()
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_flow_euler_on_a_vp_network_is_ddim_on_the_same_times() -> None:
    """runtime.sample's flow view of a VP checkpoint (runtime.samplers.PROCESSES["vp"]["flow"]) is the
    exact VP → flow map: flow Euler from x_T/(√ᾱ + √(1 − ᾱ)) at t0 over the flow σ of the grid's
    table times, with v̂ = ε̂ − x̂_0 of the network there, is DDIM η = 0 on those times (at t = 0
    the flow state is the VP state)."""
    from runtime.flow import RectifiedFlow, flow_euler_sample, vp_to_flow
    from runtime.samplers import VPVelocity, flow_times

    sched, model = _setup()
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    model = model.double()
    grid = [17, 11, 6, 2, 0]
    x_flow = vp_to_flow(float(sched.alpha_bar.float64[17]), x)[0]
    out = flow_euler_sample(RectifiedFlow(), VPVelocity(sched, model), x_flow,
                            flow_times(sched, grid))
    torch.testing.assert_close(out, ddim_sample_strided(sched, model, x, grid), rtol=1e-10,
                               atol=1e-10)
    with pytest.raises(ValueError, match="not the flow noise level of a table time"):
        VPVelocity(sched, model)(x_flow, 0.5)
