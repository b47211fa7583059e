"""A non-finite loss never reaches the weights: the step is skipped (parameters, Adam state and
EMA untouched), counted in the log, and a run of them stops the run with exit status 2."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_train_support import TINY, assert_one_line_error, run_command

import runtime.train as train_module
import runtime.train_step as step_module
from runtime.train import MAX_CONSECUTIVE_NONFINITE, GuardedUpdate, all_finite


def _model():
    torch.manual_seed(0)  # test fixture only; training itself never uses the global RNG
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))


def _snapshot(update: GuardedUpdate) -> list[torch.Tensor]:
    """Every tensor an update may change: parameters, Adam's state (step included), EMA."""
    adam_state = [update.optimizer.state[p][key] for p in update.params
                  for key in ("step", "exp_avg", "exp_avg_sq")]
    return [t.detach().clone() for t in [*update.params, *adam_state, *update.ema]]


def _backward(model, x):
    model.zero_grad(set_to_none=True)
    loss = model(x).square().mean()
    loss.backward()
    return loss.detach()


@pytest.mark.parametrize("sync_free", [False, True])  # CPU's host check, CUDA's found_inf
def test_guarded_update_skips_a_non_finite_step_exactly(sync_free):
    model = _model()
    update = GuardedUpdate(model, lr=0.1, ema_decay=0.9, device=torch.device("cpu"),
                           sync_free=sync_free)
    update.step(all_finite(_backward(model, torch.ones(5, 3)), update.params))  # one real step
    before = _snapshot(update)
    loss = _backward(model, torch.full((5, 3), math.nan))
    finite = all_finite(loss, update.params)
    assert not bool(finite)
    update.step(finite)
    after = _snapshot(update)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("sync_free", [False, True])
def test_guarded_update_equals_adam_and_ema_when_finite(sync_free):
    model, reference = _model(), _model()
    update = GuardedUpdate(model, lr=0.1, ema_decay=0.9, device=torch.device("cpu"),
                           sync_free=sync_free)
    adam = torch.optim.Adam(reference.parameters(), lr=0.1)
    ema = [p.detach().clone() for p in reference.parameters()]
    for i in range(3):
        x = torch.linspace(-1, 1, 15).reshape(5, 3) * (i + 1)
        update.step(all_finite(_backward(model, x), update.params))
        _backward(reference, x)
        adam.step()
        for e, p in zip(ema, reference.parameters(), strict=True):
            e.add_(0.1 * (p.detach() - e))
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-7)
    for e, f in zip(update.ema, ema, strict=True):
        torch.testing.assert_close(e, f, rtol=0, atol=1e-7)


@pytest.mark.parametrize("sync_free", [False, True])
def test_a_skipped_step_does_not_advance_the_ema_warmup(sync_free):
    """n counts the updates taken: finite, NaN, finite mixes the EMA with d_1 = 2/11, then
    d_2 = 3/12, bit for bit as the run without the NaN step."""
    runs = []
    for xs in ([1.0, math.nan, -2.0], [1.0, -2.0]):
        model = _model()
        update = GuardedUpdate(model, lr=0.1, ema_decay=0.99, device=torch.device("cpu"),
                               sync_free=sync_free, ema_warmup=True)
        expected, n = [p.detach().clone() for p in update.params], 0
        for scale in xs:
            update.step(all_finite(_backward(model, torch.ones(5, 3) * scale), update.params))
            if math.isfinite(scale):
                n += 1
                d_n = (1 + n) / (10 + n)
                expected = [e + (1 - d_n) * (p.detach() - e)
                            for e, p in zip(expected, update.params, strict=True)]
        assert update.taken_updates().item() == 2.0
        for e, f in zip(update.ema, expected, strict=True):
            torch.testing.assert_close(e, f, rtol=0, atol=1e-7)
        runs.append(_snapshot(update))
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))


def test_a_nan_step_is_skipped_and_logged(tmp_path, capsys, monkeypatch):
    real_loss = step_module.prediction_loss
    calls = {"n": 0}

    def nan_on_second_call(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * math.nan if calls["n"] == 2 else loss

    monkeypatch.setattr(step_module, "prediction_loss", nan_on_second_call)
    out = tmp_path / "run"
    code, _, err = run_command(train_module.main, [*TINY, "--out", out], capsys)
    assert code == 0, err
    log = json.loads((out / "train_log.json").read_text())
    assert log["notes"]["skipped_steps"] == 1
    assert [entry["skipped"] for entry in log["curve"]] == [0, 1, 1]
    assert log["curve"][1]["loss"] is None  # the only step of that interval was skipped
    assert math.isfinite(log["notes"]["final_loss"])
    payload = torch.load(out / "checkpoint.pt", weights_only=True)
    assert all(bool(torch.isfinite(v).all()) for v in payload["model"].values())
    assert all(bool(torch.isfinite(v).all()) for v in payload["ema"].values())
    assert float(payload["optimizer"]["state"][0]["step"]) == 2.0  # 3 steps, 1 skipped


def test_a_run_of_nan_steps_stops_with_exit_2(tmp_path, capsys, monkeypatch):
    real_loss = step_module.prediction_loss
    monkeypatch.setattr(step_module, "prediction_loss",
                        lambda *a, **k: real_loss(*a, **k) * math.inf)
    out = tmp_path / "run"
    argv = [*TINY, "--out", out, "--steps", "20", "--log-every", "10"]
    code, _, err = run_command(train_module.main, argv, capsys)
    assert_one_line_error(code, err, "non-finite", "--lr")
    assert f"step {MAX_CONSECUTIVE_NONFINITE}" in err  # stopped as soon as the run was seen (CPU)
    payload = torch.load(out / "checkpoint.pt", weights_only=True)
    assert all(bool(torch.isfinite(v).all()) for v in payload["model"].values())


def test_both_update_paths_are_bit_identical():
    states = []
    for sync_free in (False, True):
        model = _model()
        update = GuardedUpdate(model, lr=0.1, ema_decay=0.9, device=torch.device("cpu"),
                               sync_free=sync_free)
        for i in range(4):
            x = torch.linspace(-1, 1, 15).reshape(5, 3) * (i - 1.5)
            if i == 2:
                x = x * math.nan
            update.step(all_finite(_backward(model, x), update.params))
        states.append(_snapshot(update))
    assert all(torch.equal(a, b) for a, b in zip(*states, strict=True))
