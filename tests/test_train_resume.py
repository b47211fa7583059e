"""Resume: an interrupted-and-resumed CPU run ends bit-identical to an uninterrupted one
(parameters, EMA, Adam state, data-order and noise generators, loss curve)."""

from __future__ import annotations

import dataclasses
import os
import signal

import pytest
import torch
from test_train_support import TINY, assert_one_line_error, run_command

from runtime.plumbing.checkpoint import CheckpointError, load_checkpoint
from runtime.plumbing.config import TrainConfig
from runtime.train import main as train_main
from runtime.train import merge_resume_config, train

# Small but not trivial: more steps than one epoch of 12 images / batch 5, EMA on, 3 log points;
# the default run's recipe (cosine learning rate after a warm-up, min-SNR-5 weights, EMA 0.99),
# with a warm-up shorter than the run.
BASE = TrainConfig(dataset="digits", n_total=12, steps=6, T=10, hidden_c=8, batch_size=5,
                   n_samples=2, sample_steps=2, log_every=2, progress=False, checkpoint_every=0,
                   warmup_steps=2, quality_samples=0)


def _assert_same_state(a: dict, b: dict, same_curve: bool = True) -> None:
    assert a["step"] == b["step"]
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}[{name}] differs"
    opt_a, opt_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert opt_a.keys() == opt_b.keys()
    for index in opt_a:
        for name in opt_a[index]:
            assert torch.equal(opt_a[index][name], opt_b[index][name]), (index, name)
    assert torch.equal(a["rng"]["t"], b["rng"]["t"])
    assert torch.equal(a["rng"]["noise"], b["rng"]["noise"])
    assert torch.equal(a["rng"]["data"]["generator"], b["rng"]["data"]["generator"])
    assert a["rng"]["data"]["pos"] == b["rng"]["data"]["pos"]
    if same_curve:
        assert a["history"]["curve"] == b["history"]["curve"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    train(dataclasses.replace(BASE, out=str(out)))
    return load_checkpoint(out / "checkpoint.pt")


def test_base_is_the_default_recipe():
    default = TrainConfig()
    for name in ("lr_schedule", "min_snr_gamma", "ema_decay", "lr", "prediction", "schedule"):
        assert getattr(BASE, name) == getattr(default, name), name
    assert (BASE.lr_schedule, BASE.min_snr_gamma, BASE.ema_decay) == ("cosine", None, 0.99)


def test_extending_a_constant_rate_run_is_bit_identical(tmp_path):
    """A finished run continued to a larger --steps equals the longer run, when the rate does
    not depend on --steps (constant; a cosine decay spans --steps, see the next test)."""
    constant = dataclasses.replace(BASE, lr_schedule="constant")
    train(dataclasses.replace(constant, out=str(tmp_path / "straight")))
    out = str(tmp_path / "run")
    train(dataclasses.replace(constant, steps=3, out=out))  # stops at 3, mid-interval, mid-epoch
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 3
    train(dataclasses.replace(constant, steps=6, out=out, resume=True),
          explicit={"steps", "out", "resume"})
    # (the curve differs by design: the first run ended, so it logged a point at step 3)
    _assert_same_state(load_checkpoint(tmp_path / "run" / "checkpoint.pt"),
                       load_checkpoint(tmp_path / "straight" / "checkpoint.pt"), same_curve=False)


def test_extending_a_cosine_run_says_the_decay_changed(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_command(train_main, [*TINY, "--out", out], capsys)[0] == 0
    code, stdout, err = run_command(train_main, [*TINY, "--out", out, "--resume", "--steps", "5"],
                                    capsys)
    assert code == 0, err
    assert "now decays over 5 steps; the run so far followed a decay over 3" in stdout


def test_ctrl_c_saves_and_resume_is_bit_identical(tmp_path, uninterrupted):
    out = str(tmp_path / "run")

    def interrupt_at_4(step: int) -> None:
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C

    with pytest.raises(KeyboardInterrupt):
        train(dataclasses.replace(BASE, out=out), on_step=interrupt_at_4)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 4
    assert not (tmp_path / "run" / "samples.png").exists()
    # Resume takes every setting from the checkpoint: only --out and --resume are given.
    train(dataclasses.replace(TrainConfig(), out=out, resume=True), explicit={"out", "resume"})
    _assert_same_state(load_checkpoint(tmp_path / "run" / "checkpoint.pt"), uninterrupted)


def test_ema_warmup_run_resumes_bit_identical(tmp_path, uninterrupted):
    """--ema-warmup counts its updates with Adam's step count, which the checkpoint keeps: a run
    interrupted at step 4 and resumed from the checkpoint alone ends as the uninterrupted one.
    The warm-up changes the EMA only (the weights are the plain run's, bit for bit)."""
    warm = dataclasses.replace(BASE, ema_warmup=True)
    train(dataclasses.replace(warm, out=str(tmp_path / "straight")))
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    assert straight["config"]["ema_warmup"] is True
    for name, value in straight["model"].items():
        assert torch.equal(value, uninterrupted["model"][name]), name
    assert any(not torch.equal(value, uninterrupted["ema"][name])
               for name, value in straight["ema"].items())
    out = str(tmp_path / "run")

    def interrupt_at_4(step: int) -> None:
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(dataclasses.replace(warm, out=out), on_step=interrupt_at_4)
    train(dataclasses.replace(TrainConfig(), out=out, resume=True), explicit={"out", "resume"})
    _assert_same_state(load_checkpoint(tmp_path / "run" / "checkpoint.pt"), straight)


def test_a_checkpoint_without_ema_warmup_was_trained_without_it(tmp_path):
    stored = dataclasses.asdict(dataclasses.replace(BASE, out=str(tmp_path)))
    del stored["ema_warmup"]  # written before the flag existed
    resumed = TrainConfig(out=str(tmp_path), resume=True)
    assert not merge_resume_config(resumed, {"out", "resume"}, stored, tmp_path).ema_warmup
    with pytest.raises(CheckpointError, match="--ema-warmup"):
        merge_resume_config(dataclasses.replace(resumed, ema_warmup=True),
                            {"out", "resume", "ema_warmup"}, stored, tmp_path)


def test_a_checkpoint_of_the_old_default_net_resumes_with_the_net_it_built(tmp_path):
    """Before the third sweep the film net's defaults were 4 blocks and no 4×4 stage: a
    checkpoint that stored --blocks None and no --down-blocks resumes with the shape its
    network was built with (derived.model), not with today's defaults (2 and 4)."""
    stored = dataclasses.asdict(dataclasses.replace(BASE, out=str(tmp_path)))
    stored.update(blocks=None, derived={"model": {"kind": "film", "config": {
        "data_channels": 1, "hidden_channels": 8, "residual_blocks": 4, "embed_dim": 64,
        "groups": 8}}})
    del stored["down_blocks"]  # written before the flag existed
    resumed = merge_resume_config(TrainConfig(out=str(tmp_path), resume=True), {"out", "resume"},
                                  stored, tmp_path)
    assert (resumed.residual_blocks, resumed.stage_blocks) == (4, 0)
    fresh = TrainConfig()
    assert (fresh.residual_blocks, fresh.stage_blocks) == (2, 4)


def test_ctrl_c_message_and_exit_code(tmp_path, capsys, monkeypatch):
    import runtime.train as train_module

    real_train = train_module.train

    def train_with_interrupt(cfg, explicit=frozenset(), **kwargs):
        def hook(step):
            if step == 2:
                os.kill(os.getpid(), signal.SIGINT)
        return real_train(cfg, explicit, on_step=hook)

    monkeypatch.setattr(train_module, "train", train_with_interrupt)
    out = tmp_path / "run"
    code, stdout, err = run_command(train_main, [*TINY, "--out", out], capsys)
    assert code == 130
    assert "Traceback" not in err
    assert f"python -m runtime.train --out {out} --resume" in stdout
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 2


def test_resume_rejects_a_changed_setting(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_command(train_main, [*TINY, "--out", out], capsys)[0] == 0
    code, _, err = run_command(train_main, [*TINY, "--out", out, "--resume", "--lr", "0.5",
                                            "--steps", "5"], capsys)
    assert_one_line_error(code, err, "--lr")
    code, _, err = run_command(train_main, [*TINY, "--out", out, "--resume", "--steps", "2"],
                               capsys)
    assert_one_line_error(code, err, "--steps")


def test_resume_rejects_a_corrupt_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"\x80\x02 this is not a checkpoint")
    code, _, err = run_command(train_main, [*TINY, "--out", out, "--resume"], capsys)
    assert_one_line_error(code, err, "corrupt")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]


def test_periodic_checkpoints_do_not_change_the_run(tmp_path, uninterrupted):
    out = tmp_path / "run"
    train(dataclasses.replace(BASE, out=str(out), checkpoint_every=2))
    _assert_same_state(load_checkpoint(out / "checkpoint.pt"), uninterrupted)
