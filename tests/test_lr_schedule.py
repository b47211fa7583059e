"""runtime.plumbing.lr_schedule: the rate of each step, and the training run that uses it."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal

import pytest
import torch

from runtime.plumbing.checkpoint import load_checkpoint
from runtime.plumbing.config import TrainConfig
from runtime.plumbing.lr_schedule import lr_factor
from runtime.train import train


def test_constant_is_one_after_the_warm_up_and_linear_during_it():
    assert [lr_factor(s, 10, "constant", 0) for s in range(10)] == [1.0] * 10
    assert [lr_factor(s, 10, "constant", 4) for s in range(6)] == [0.25, 0.5, 0.75, 1, 1, 1]


def test_cosine_follows_half_a_cosine_from_one_towards_zero():
    S = 8
    got = [lr_factor(s, S, "cosine", 0) for s in range(S)]
    assert got[0] == 1.0
    assert got[S // 2] == pytest.approx(0.5)  # cos(π/2) = 0
    assert got[S // 4] == pytest.approx(0.5 * (1 + math.sqrt(0.5)))
    assert all(a > b > 0 for a, b in zip(got[:-1], got[1:], strict=True))
    # warm-up multiplies: step 0 of 4 warm-up steps is a quarter of the cosine's value
    assert lr_factor(0, S, "cosine", 4) == pytest.approx(0.25)
    assert lr_factor(2, S, "cosine", 4) == pytest.approx(0.75 * got[2])


@pytest.mark.parametrize("args", [(10, 10, "constant", 0), (-1, 10, "cosine", 0),
                                  (0, 10, "linear", 0), (0, 10, "cosine", -1)])
def test_bad_arguments_are_refused(args):
    with pytest.raises(ValueError):
        lr_factor(*args)


def test_a_cosine_run_records_its_schedule_and_resumes_to_the_same_weights(tmp_path):
    cfg = TrainConfig(dataset="digits", n_total=12, steps=6, T=10, hidden_c=8, batch_size=5,
                      n_samples=2, sample_steps=2, log_every=2, progress=False,
                      checkpoint_every=0, quality_samples=0, lr_schedule="cosine",
                      warmup_steps=2)
    train(dataclasses.replace(cfg, out=str(tmp_path / "whole")))

    def interrupt_at_3(step: int) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(dataclasses.replace(cfg, out=str(tmp_path / "split")), on_step=interrupt_at_3)
    train(dataclasses.replace(TrainConfig(), out=str(tmp_path / "split"), resume=True),
          explicit={"out", "resume"})
    notes = json.loads((tmp_path / "whole" / "train_log.json").read_text())["notes"]
    assert (notes["lr_schedule"], notes["warmup_steps"]) == ("cosine", 2)
    whole = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    split = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    for key in ("model", "ema"):
        for name, value in whole[key].items():
            assert torch.equal(value, split[key][name]), (key, name)
    # the optimiser ran at the schedule's last rate, not the peak
    assert whole["optimizer"]["param_groups"][0]["lr"] == pytest.approx(
        cfg.lr * lr_factor(5, 6, "cosine", 2))
    # and a constant run of the same seed ends elsewhere: the schedule is applied
    train(dataclasses.replace(cfg, out=str(tmp_path / "constant"), lr_schedule="constant",
                              warmup_steps=0))
    constant = load_checkpoint(tmp_path / "constant" / "checkpoint.pt")
    assert not torch.equal(constant["model"][name], whole["model"][name])
