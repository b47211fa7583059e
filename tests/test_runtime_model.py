"""runtime.model beyond conformance: the parameter bridge, the FiLM net's fast paths."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from runtime.model import (
    EpsConvNet,
    EpsConvNetConfig,
    EpsFiLMNet,
    EpsFiLMNetConfig,
    EpsResidualConvNet,
    append_time_channel,
    from_spec_params,
    init_film_params,
    init_params,
    sinusoidal_embedding,
    to_spec_params,
)


def test_spec_params_round_trip_through_every_module() -> None:
    for cfg, params in [
        (EpsConvNetConfig(2, 8, 2), init_params(EpsConvNetConfig(2, 8, 2), 0)),
        (EpsFiLMNetConfig(2, 8, 2, 8, 4), init_film_params(EpsFiLMNetConfig(2, 8, 2, 8, 4), 0)),
    ]:
        module = from_spec_params(cfg, {k: v.numpy() for k, v in params.items()})
        back = to_spec_params(module)
        assert list(back) == list(params)
        assert all(np.array_equal(back[k], params[k].numpy()) for k in back)
        assert all(v.dtype == np.float64 for v in back.values())


def test_from_spec_params_picks_the_class_and_copies() -> None:
    conv_cfg = EpsConvNetConfig(1, 8, 0)
    params = {k: v.numpy() for k, v in init_params(conv_cfg, 1).items()}
    module = from_spec_params(conv_cfg, params, dtype=torch.float32)
    assert isinstance(module, EpsConvNet) and module.stem.weight.dtype == torch.float32
    module.stem.weight.data.zero_()
    assert params["stem.weight"].any()  # the spec's arrays are not aliased
    res = from_spec_params(EpsConvNetConfig(1, 8, 2), init_params(EpsConvNetConfig(1, 8, 2), 1))
    assert isinstance(res, EpsResidualConvNet)
    film = from_spec_params(EpsFiLMNetConfig(1, 8, 1, 8, 2),
                            init_film_params(EpsFiLMNetConfig(1, 8, 1, 8, 2), 1))
    assert isinstance(film, EpsFiLMNet)
    with pytest.raises(RuntimeError):  # strict: keys must match
        from_spec_params(EpsFiLMNetConfig(1, 8, 2, 8, 2), init_film_params(EpsFiLMNetConfig(1, 8, 1, 8, 2), 1))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="groups"):
        EpsFiLMNetConfig(1, 6, 1, 8, 4)
    with pytest.raises(ValueError, match="embed_dim"):
        EpsFiLMNetConfig(1, 8, 1, 7, 4)


def _film(down_blocks: int = 0) -> EpsFiLMNet:
    cfg = EpsFiLMNetConfig(3, 16, 2, 16, 4, down_blocks)
    return from_spec_params(cfg, init_film_params(cfg, 0), dtype=torch.float32).eval()


@pytest.mark.parametrize("down_blocks", [0, 1])
def test_film_runs_channels_last_and_under_bf16_autocast(down_blocks: int) -> None:
    model = _film(down_blocks)
    x = torch.randn(4, 3, 8, 8)
    t = torch.rand(4)
    ref = model(x, t)
    model_cl = model.to(memory_format=torch.channels_last)
    out_cl = model_cl(x.to(memory_format=torch.channels_last), t)
    assert torch.allclose(out_cl, ref, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_bf16 = model_cl(x.to(memory_format=torch.channels_last), t)
    assert out_bf16.shape == ref.shape and torch.isfinite(out_bf16).all()
    assert (out_bf16.float() - ref).abs().max() < 0.1


def test_film_time_argument_forms_agree() -> None:
    model = _film()
    x = torch.randn(2, 3, 8, 8)
    a = model(x, 0.25)
    b = model(x, torch.tensor(0.25))
    c = model(x, torch.tensor([0.25, 0.25]))
    assert torch.allclose(a, b) and torch.allclose(a, c)
    assert torch.allclose(model.eps(x, 0.25), a)


def test_film_sample_outputs_do_not_depend_on_the_batch() -> None:
    model = _film()
    x = torch.randn(5, 3, 8, 8)
    t = torch.rand(5)
    full = model(x, t)
    for i in range(5):
        assert torch.allclose(full[i : i + 1], model(x[i : i + 1], t[i : i + 1]), atol=1e-5)


@pytest.mark.parametrize("down_blocks", [0, 2])
def test_film_backward_reaches_every_parameter(down_blocks: int) -> None:
    model = _film(down_blocks).train()
    model(torch.randn(2, 3, 8, 8), torch.rand(2)).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_no_down_blocks_is_the_plain_stack_of_blocks() -> None:
    """down_blocks = 0 is the FiLM net from before the half-resolution stage: the same parameter
    names in the same order, the same init draws, the output of the plain stack of B blocks bit
    for bit. A stage's parameters come after all of those, so its draws come last."""
    cfg = EpsFiLMNetConfig(1, 8, 3, 8, 2)
    params = init_film_params(cfg, 0)
    parts = ("norm1", "conv1", "film", "norm2", "conv2")
    layers = ["time_mlp.0", "time_mlp.2", "stem",
              *(f"blocks.{i}.{part}" for i in range(3) for part in parts), "out_norm", "out"]
    assert list(params) == [f"{layer}.{p}" for layer in layers for p in ("weight", "bias")]
    staged = init_film_params(dataclasses.replace(cfg, down_blocks=2), 0)
    assert list(staged)[: len(params)] == list(params)
    assert all(torch.equal(staged[k], v) for k, v in params.items())
    assert list(staged)[len(params)] == "down.0.norm1.weight"
    model = from_spec_params(cfg, params)
    x, t = torch.randn(2, 1, 8, 8, dtype=torch.float64), torch.rand(2, dtype=torch.float64)
    silu_e = F.silu(model.time_mlp(sinusoidal_embedding(t, 8)))  # (B, E)
    h = model.stem(append_time_channel(x, t))
    for block in model.blocks:
        h = block(h, silu_e)
    with torch.no_grad():
        assert torch.equal(model(x, t), model.out(F.silu(model.out_norm(h))))


def _step_flops(cfg: EpsFiLMNetConfig, batch: int) -> int:
    """Model FLOPs of a training step (forward + backward), as scripts/sweep.py counts them."""
    model = EpsFiLMNet(cfg).train()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(batch, 1, 8, 8), torch.zeros(batch)).square().mean().backward()
    return counter.get_total_flops()


def test_a_block_at_half_resolution_costs_a_quarter_of_its_convolutions() -> None:
    hidden, embed, batch = 16, 16, 4
    base = _step_flops(EpsFiLMNetConfig(1, hidden, 2, embed, 2), batch)
    full = _step_flops(EpsFiLMNetConfig(1, hidden, 4, embed, 2), batch) - base  # 2 blocks, 8×8
    half = _step_flops(EpsFiLMNetConfig(1, hidden, 2, embed, 2, 2), batch) - base  # 2 at 4×4
    # forward FLOPs of one block at 8×8: two 3×3 convs (2·N·H·W·C·C·9 each) and the FiLM linear
    # (2·N·E·2C), which does not see the pixels; the backward doubles both
    conv, film = 2 * 2 * batch * 64 * hidden * hidden * 9, 2 * batch * embed * 2 * hidden
    assert full == 2 * 3 * (conv + film)
    assert half == 2 * 3 * (conv // 4 + film)
    assert 0.25 < half / full < 0.26
