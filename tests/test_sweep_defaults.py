"""The compute sweep (scripts/sweep.py) and the trainer's defaults name the same runs: its
"new default" row is exactly what `python -m runtime.train` trains with no flags, its "old
default" row the recipe `make train` ran before the first sweep, and its "first sweep default"
row the recipe it ran between the two sweeps (docs/training.md, Quality per FLOP); its EMA
warm-up rows are the new default with only the EMA changed."""

from __future__ import annotations

import dataclasses
import importlib.util

from test_train_support import REPO

from runtime.plumbing.config import TRAINING_IDENTITY, TrainConfig, parse_config


def _sweep():
    spec = importlib.util.spec_from_file_location("sweep", REPO / "scripts" / "sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config_of(sweep, name: str) -> TrainConfig:
    arch, steps = sweep.CONFIGS[name]
    return parse_config(TrainConfig, [*sweep.ARCHS[arch][0], "--steps", str(steps)], "train",
                        "")[0]


def test_the_new_default_row_is_the_trainers_default():
    sweep, default = _sweep(), TrainConfig()
    row = _config_of(sweep, sweep.NEW_DEFAULT)
    for name in (*TRAINING_IDENTITY, "steps", "batch_size", "residual_blocks", "stage_blocks"):
        if name in ("blocks", "down_blocks"):  # None (the model's default) in the trainer
            continue
        assert getattr(row, name) == getattr(default, name), name


def test_the_old_default_row_is_the_recipe_before_the_sweep():
    sweep = _sweep()
    old = _config_of(sweep, sweep.OLD_DEFAULT)
    assert (old.prediction, old.min_snr_gamma, old.batch_size, old.steps, old.lr,
            old.lr_schedule, old.warmup_steps, old.ema_decay) == (
        "eps", None, 128, 2500, 2e-3, "constant", 0, 0.995)
    assert (old.model, old.hidden_c, old.residual_blocks, old.schedule, old.T) == (
        "film", 64, 4, "cosine", 1000)


def test_the_first_sweep_default_row_is_the_recipe_between_the_sweeps():
    sweep = _sweep()
    first = _config_of(sweep, sweep.FIRST_SWEEP_DEFAULT)
    assert (first.prediction, first.min_snr_gamma, first.batch_size, first.steps, first.lr,
            first.lr_schedule, first.warmup_steps, first.ema_decay) == (
        "v", 5.0, 32, 2400, 3e-3, "cosine", 50, 0.99)
    default = TrainConfig()
    assert (default.min_snr_gamma, default.steps) == (None, 1900)  # what the sweeps changed
    second = _config_of(sweep, sweep.SECOND_SWEEP_DEFAULT)
    assert (second.min_snr_gamma, second.steps, second.residual_blocks, second.stage_blocks) == (
        None, 1500, 4, 0)
    assert (default.residual_blocks, default.stage_blocks) == (2, 4)  # what the third changed


def test_the_ema_warmup_rows_are_the_new_default_with_a_warmed_up_ema():
    sweep = _sweep()
    new = _config_of(sweep, sweep.SECOND_SWEEP_DEFAULT)
    for name, decay in (("emaw999-h64-b4-bs32-s1500-lr3", 0.999),
                        ("emaw99-h64-b4-bs32-s1500-lr3", 0.99)):
        row = _config_of(sweep, name)
        assert (row.ema_decay, row.ema_warmup) == (decay, True), name
        assert dataclasses.replace(row, ema_decay=new.ema_decay, ema_warmup=False) == new, name


def test_the_bound_in_every_convention_costs_one_pass_of_model_calls():
    """sweep.bits_per_dim serves every convention of the bound (fixed-large too) from one pass of
    network calls (SharedCalls), and each figure is the one a model of its own would give."""
    import numpy as np
    import torch

    from runtime.evaluate import bound_bits_per_dim
    from runtime.likelihood import VLB_CONVENTIONS
    from runtime.schedule import Schedule

    class CountingNet(torch.nn.Module):
        calls = 0

        def forward(self, x, t_norm):
            CountingNet.calls += 1
            return torch.tanh(0.5 * x + torch.as_tensor(t_norm).reshape(-1, 1, 1, 1))

    sweep, net = _sweep(), CountingNet()
    sched = Schedule(torch.linspace(1e-3, 0.2, 4, dtype=torch.float64))
    test_x = (np.random.default_rng(0).integers(0, 17, (3, 1, 4, 4)) / 16).astype(np.float32)
    bpd = sweep.bits_per_dim(net, sched, test_x)
    assert list(bpd) == list(VLB_CONVENTIONS)
    assert CountingNet.calls == sched.T  # one batch, one call per t, for all conventions
    x0 = 2.0 * torch.from_numpy(test_x) - 1.0
    for name, value in bpd.items():
        alone = bound_bits_per_dim(sched, net, x0, torch.Generator().manual_seed(0), 256, 17, name)
        assert value == alone["bits_per_dim"], name
