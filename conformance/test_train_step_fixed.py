"""Fixed cases of the training step that random draws reach only sometimes: an EMA decay
strictly between 0 and 1 on a finite step (with decay 0 the EMA is the new weights whichever
way the weights are mixed, and a NaN step leaves the EMA alone), so a step that mixes with
`decay` where 1 − decay belongs cannot pass.

The network is the plain convolution: the EMA mixes every named parameter the same way whatever
the network, and the spec's gradient (central differences, one coordinate at a time) of the FiLM
network's 105 parameters costs ten times the convolution's 29 (20 s a case against 2 s)."""

from __future__ import annotations

import pytest

from conformance.harness import run_case
from conformance.registry import REGISTRY


@pytest.mark.parametrize("decay", [0.9, 0.995])
def test_train_step_with_a_real_ema_decay(decay):
    plan = {"B": 2, "shape": [1, 3, 4], "schedule": {"kind": "linear", "T": 5,
                                                     "beta_start": 0.001, "beta_end": 0.2},
            "seed": 3, "kind": "conv", "blocks": 1, "step": 3, "lr": 0.05, "decay": decay,
            "sync_free": False, "nan": False, "t": [2, 5]}
    run_case(REGISTRY["train_step"], plan, "float64", "cpu")
