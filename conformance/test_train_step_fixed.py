"""Fixed cases of the training step that random draws reach only sometimes: an EMA decay
strictly between 0 and 1 on a finite step (with decay 0 the EMA is the new weights whichever
way the weights are mixed, and a NaN step leaves the EMA alone), so a step that mixes with
`decay` where 1 − decay belongs cannot pass; and the same with the EMA warm-up (Adam's state at
step 3: the update is the 4th, d_4 = 5/14), so a step that reads its n before its own update
(d_3 = 4/13) cannot pass.

The network is the plain convolution: the EMA mixes every named parameter the same way whatever
the network, and the spec's gradient (central differences, one coordinate at a time) of the FiLM
network's 105 parameters costs ten times the convolution's 29 (20 s a case against 2 s)."""

from __future__ import annotations

import pytest

from conformance.harness import run_case
from conformance.registry import REGISTRY


@pytest.mark.parametrize(("decay", "warmup"), [(0.9, False), (0.995, False), (0.995, True)])
def test_train_step_with_a_real_ema_decay(decay, warmup):
    plan = {"B": 2, "shape": [1, 3, 4], "schedule": {"kind": "linear", "T": 5,
                                                     "beta_start": 0.001, "beta_end": 0.2},
            "seed": 3, "kind": "conv", "blocks": 1, "step": 3, "lr": 0.05, "decay": decay,
            "sync_free": False, "nan": False, "ema_warmup": warmup, "t": [2, 5]}
    run_case(REGISTRY["train_step"], plan, "float64", "cpu")
