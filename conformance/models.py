"""The spec forward of each network kind: the spec side of `runtime.model.MODELS`.

Runtime never imports spec, so the table of kinds (kind -> config class, module class) lives in
`runtime.model` and its spec half lives here: kind -> (spec config class, spec forward). A spec
forward takes (spec config, params) and returns the spec's model (`.eps(x, t_norm[, y])`).
`conformance/test_models.py` checks that the two tables have the same kinds and that each
kind's runtime module computes its spec forward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import spec.model

SpecForward = Callable[[Any, dict[str, Any]], Any]

SPEC_MODELS: dict[str, tuple[type, SpecForward]] = {
    "conv": (spec.model.EpsConvNetConfig, lambda cfg, params: spec.model.eps_conv_net(params)),
    "residual": (spec.model.EpsConvNetConfig,
                 lambda cfg, params: spec.model.eps_residual_conv_net(params)),
    "film": (spec.model.EpsFiLMNetConfig, spec.model.eps_film_net),
    "cond_film": (spec.model.CondFiLMNetConfig, spec.model.cond_film_net),
}


def spec_forward(kind: str, cfg: Any, params: dict[str, Any]) -> Any:
    """The spec model of `kind` with config `cfg` and parameters `params`."""
    return SPEC_MODELS[kind][1](cfg, params)
