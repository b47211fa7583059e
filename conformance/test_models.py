"""One table of network kinds: runtime.model.MODELS (config class, module class) and its spec
half conformance.models.SPEC_MODELS (spec config class, spec forward) name the same kinds, and
each kind's runtime module computes the spec forward of the same parameters."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import runtime.model
from conformance.models import SPEC_MODELS, spec_forward

CONFIGS = {  # a small config of each kind, as asdict(config)
    "conv": {"data_channels": 2, "hidden_channels": 4, "residual_blocks": 0},
    "residual": {"data_channels": 2, "hidden_channels": 4, "residual_blocks": 2},
    "film": {"data_channels": 2, "hidden_channels": 4, "residual_blocks": 1, "embed_dim": 6,
             "groups": 2},
    "cond_film": {"data_channels": 2, "num_classes": 3, "hidden_channels": 4,
                  "residual_blocks": 1, "embed_dim": 6, "groups": 2},
}


def test_the_spec_table_names_the_runtime_kinds():
    assert set(SPEC_MODELS) == set(runtime.model.MODELS)
    assert set(CONFIGS) == set(runtime.model.MODELS)  # this file covers every kind


@pytest.mark.parametrize("kind", sorted(runtime.model.MODELS))
def test_each_kind_computes_its_spec_forward(kind):
    config_cls, module_cls = runtime.model.MODELS[kind]
    spec_config_cls = SPEC_MODELS[kind][0]
    # the two config classes have the same fields (a checkpoint's asdict builds either)
    assert [f.name for f in dataclasses.fields(config_cls)] == \
        [f.name for f in dataclasses.fields(spec_config_cls)]
    torch.manual_seed(0)  # torch's default init: any weights will do
    module = runtime.model.build_model(kind, CONFIGS[kind]).double().eval()
    assert type(module) is module_cls and runtime.model.model_kind(module) == kind
    params = runtime.model.to_spec_params(module)
    net = spec_forward(kind, spec_config_cls(**CONFIGS[kind]), params)
    x = np.random.default_rng(1).standard_normal((3, 2, 5, 4))
    t_norm = 0.375
    if kind == "cond_film":
        labels = np.array([0, 2, 3])  # 3: the null label
        want = net.eps(x, t_norm, labels)
        got = module(torch.from_numpy(x), t_norm, torch.from_numpy(labels))
    else:
        want = net.eps(x, t_norm)
        got = module(torch.from_numpy(x), t_norm)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["film", "cond_film"])
def test_the_half_resolution_stage_passes_through_both_film_kinds(kind):
    config = {**CONFIGS[kind], "down_blocks": 1}
    torch.manual_seed(0)
    module = runtime.model.build_model(kind, config).double().eval()
    assert "down.0.conv2.weight" in module.state_dict()
    net = spec_forward(kind, SPEC_MODELS[kind][0](**config), runtime.model.to_spec_params(module))
    x, t_norm = np.random.default_rng(1).standard_normal((3, 2, 4, 6)), 0.625
    labels = (np.array([0, 2, 3]),) if kind == "cond_film" else ()
    want = net.eps(x, t_norm, *labels)
    got = module(torch.from_numpy(x), t_norm, *map(torch.from_numpy, labels))
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-10, atol=1e-12)
