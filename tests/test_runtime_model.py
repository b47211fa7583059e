"""runtime.model beyond conformance: the parameter bridge, the FiLM net's fast paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runtime.model import (
    EpsConvNet,
    EpsConvNetConfig,
    EpsFiLMNet,
    EpsFiLMNetConfig,
    EpsResidualConvNet,
    from_spec_params,
    init_film_params,
    init_params,
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


def _film() -> EpsFiLMNet:
    cfg = EpsFiLMNetConfig(3, 16, 2, 16, 4)
    return from_spec_params(cfg, init_film_params(cfg, 0), dtype=torch.float32).eval()


def test_film_runs_channels_last_and_under_bf16_autocast() -> None:
    model = _film()
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


def test_film_backward_reaches_every_parameter() -> None:
    model = _film().train()
    model(torch.randn(2, 3, 8, 8), torch.rand(2)).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
