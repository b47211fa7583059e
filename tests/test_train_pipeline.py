"""The pipeline, not only the functions: what `runtime.train` really runs each step, the random
parts it draws (as distributions), and the outputs of train / sample / evaluate against the spec.

Every run here is seeded (the trainer's generators come from --seed), so each statistical test
is a fixed computation: its verdict cannot change between runs.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from test_train_support import TINY, run_command, tiny_run  # noqa: F401 - fixture

import runtime.train as train_module
import runtime.train.loop as loop_module
import runtime.train_step as step_module
import spec.ddim
import spec.forward
import spec.likelihood
import spec.model
import spec.prediction
import spec.schedule
from conformance.records_train import RECORDS
from runtime.model import EpsFiLMNetConfig, build_model, model_from_description, to_spec_params
from runtime.plumbing.checkpoint import load_checkpoint
from runtime.plumbing.distributed import DistInfo
from runtime.sample import main as sample_main


class Spy:
    """Wraps runtime.train.train_step: records the explicit inputs of every step, then runs it."""

    def __init__(self) -> None:
        self.real = train_module.train_step
        self.calls: list[dict[str, torch.Tensor]] = []

    def __call__(self, sched, model, update, x01, t, noise, **kwargs):
        self.calls.append({"x01": x01.detach().clone(), "t": t.detach().clone(),
                           "noise": noise.detach().clone()})
        return self.real(sched, model, update, x01, t, noise, **kwargs)


def _spy_run(monkeypatch, tmp_path, capsys, extra: list) -> Spy:
    spy = Spy()
    monkeypatch.setattr(loop_module, "train_step", spy)  # the name the loop calls
    monkeypatch.setattr(train_module, "train_step", spy)  # the name the record calls
    code, _, err = run_command(train_module.main, [*TINY, "--out", tmp_path / "run", *extra],
                               capsys)
    assert code == 0, err
    return spy


# --------------------------------------------------------------------------- the checked step


def test_the_cli_loop_runs_the_step_the_record_checks(monkeypatch, tmp_path, capsys):
    assert train_module.train_step is step_module.train_step
    assert loop_module.train_step is step_module.train_step
    spy = _spy_run(monkeypatch, tmp_path, capsys, [])
    assert len(spy.calls) == 3  # --steps 3: the loop called runtime.train.train_step each step
    # ... and the conformance record of spec.train.train_step calls that same name.
    record = next(r for r in RECORDS if r.name == "train_step")
    from conformance.harness import run_case
    from conformance.registry import REGISTRY

    plan = {"B": 1, "shape": [1, 3, 3], "schedule": {"kind": "linear", "T": 5,
                                                     "beta_start": 0.001, "beta_end": 0.2},
            "seed": 1, "kind": "conv", "blocks": 1, "step": 1, "lr": 1e-3, "decay": 0.9,
            "sync_free": False, "nan": False, "t": [3]}
    before = len(spy.calls)
    run_case(REGISTRY["train_step"], plan, "float64", "cpu")
    assert REGISTRY["train_step"].runtime_fn is record.runtime_fn
    assert len(spy.calls) == before + 1


@pytest.mark.parametrize("sync_free", [False, True])
def test_a_nan_step_changes_nothing_exactly(sync_free):
    torch.manual_seed(0)  # fixture weights only
    model = build_model("film", EpsFiLMNetConfig(1, 8, 1))
    update = train_module.GuardedUpdate(model, 1e-2, 0.9, torch.device("cpu"), sync_free=sync_free)
    sched = train_module.Schedule(spec.schedule.linear_betas(10, 1e-3, 0.2))
    x01 = torch.rand(4, 1, 8, 8)
    t = torch.tensor([1, 4, 7, 10])
    train_module.train_step(sched, model, update, x01, t, torch.randn(4, 1, 8, 8))  # real step
    snap = ([p.detach().clone() for p in update.params], [e.clone() for e in update.ema],
            {k: v.clone() for s in update.optimizer.state.values() for k, v in s.items()})
    noise = torch.randn(4, 1, 8, 8)
    noise[2, 0, 3, 3] = math.nan
    result = train_module.train_step(sched, model, update, x01, t, noise)
    assert not bool(result.finite)
    assert all(torch.equal(a, b) for a, b in zip(snap[0], update.params, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(snap[1], update.ema, strict=True))
    after = {k: v for s in update.optimizer.state.values() for k, v in s.items()}
    assert all(torch.equal(snap[2][k], after[k]) for k in after)


def test_each_step_uses_only_its_own_gradient():
    """After a step, the gradient Adam used is the gradient of that step's loss alone (a step
    that forgets to zero the gradients would add the previous step's)."""
    torch.manual_seed(0)  # fixture weights only
    model = build_model("film", EpsFiLMNetConfig(1, 8, 1))
    update = train_module.GuardedUpdate(model, 1e-2, 0.0, torch.device("cpu"))
    sched = train_module.Schedule(spec.schedule.linear_betas(10, 1e-3, 0.2))
    batches = [(torch.rand(4, 1, 8, 8), torch.tensor([1, 4, 7, 10]), torch.randn(4, 1, 8, 8))
               for _ in range(2)]
    train_module.train_step(sched, model, update, *batches[0])
    before = [p.detach().clone() for p in update.params]
    train_module.train_step(sched, model, update, *batches[1])
    probe = build_model("film", EpsFiLMNetConfig(1, 8, 1))
    with torch.no_grad():
        for q, b in zip(probe.parameters(), before, strict=True):
            q.copy_(b)
    loss, _ = step_module.train_loss(sched, probe, *batches[1])
    expected = torch.autograd.grad(loss, list(probe.parameters()))
    for p, g in zip(update.params, expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- the random parts


def test_t_noise_and_data_drawn_by_the_real_trainer(monkeypatch, tmp_path, capsys):
    T, steps, batch, n_train = 10, 100, 32, 64
    spy = _spy_run(monkeypatch, tmp_path, capsys,
                   ["--steps", steps, "--T", T, "--batch-size", batch, "--n-total", n_train,
                    "--log-every", 50, "--hidden-c", 8, "--blocks", 0])
    t = torch.cat([c["t"] for c in spy.calls]).numpy()
    # t ~ U{1..T}: the support exactly, and a chi-square goodness of fit (3,200 draws).
    assert set(np.unique(t)) == set(range(1, T + 1))
    counts = np.bincount(t, minlength=T + 1)[1:]
    assert stats.chisquare(counts).pvalue > 1e-3
    # ε ~ N(0, I): Kolmogorov-Smirnov against the standard normal on all draws, and no two
    # steps share their noise.
    noise = torch.stack([c["noise"] for c in spy.calls])  # (steps, B, 1, 8, 8)
    assert stats.kstest(noise.flatten().numpy(), "norm").pvalue > 1e-3
    firsts = noise[:, 0].flatten(1)
    assert len({tuple(row[:4].tolist()) for row in firsts}) == steps
    # the data reach the step in [0, 1] (the step maps them to [-1, 1]), each image once per
    # epoch (64 images, 32 a step: steps 2k, 2k+1 are one permutation of the training set).
    from runtime.data.datasets import load_dataset

    train_x = torch.from_numpy(np.array(load_dataset("digits", None, "train").x[:n_train]))
    x = torch.stack([c["x01"] for c in spy.calls])
    assert x.min() >= 0 and x.max() <= 1
    index = {tuple(img.flatten().tolist()): i for i, img in enumerate(train_x)}
    orders = []
    for epoch in range(steps * batch // n_train):
        seen = [index[tuple(img.flatten().tolist())]
                for img in x[2 * epoch:2 * epoch + 2].reshape(-1, 1, 8, 8)]
        assert len(seen) == len(set(seen)) == n_train
        orders.append(tuple(seen))
    assert len(set(orders)) == len(orders)  # a fresh permutation every epoch


def test_label_dropout_rate_and_kept_labels_of_the_real_trainer():
    """A class-conditional run's batches (`draw_batch`, what the loop calls each step) replace
    each label by the null label (num_classes) with probability --label-dropout, independently
    per sample, and keep the image's own label otherwise: 1,280 draws, a binomial test of the
    rate (a rate of p/2 or 1 − p fails it with p-value < 1e-12), and every kept label checked."""
    from runtime.plumbing.config import TrainConfig
    from runtime.train.run import build_run, draw_batch, load_data

    p, steps = 0.3, 20
    cfg = TrainConfig(T=10, sample_steps=2, hidden_c=8, batch_size=64, n_total=64,
                      class_conditional=True,
                      label_dropout=p, progress=False, quality_samples=0)
    data = load_data(cfg)
    run = build_run(cfg, DistInfo(), data, torch.device("cpu"))
    null = run.model.num_classes
    label_of = {tuple(img.flatten().tolist()): int(y)
                for img, y in zip(data.x, data.y, strict=True)}
    batches = [draw_batch(run) for _ in range(steps)]
    x = torch.cat([b.x01 for b in batches])
    labels = torch.cat([b.model_args[0] for b in batches]).numpy()
    assert len(labels) == steps * 64 and null == max(label_of.values()) + 1
    dropped = labels == null
    assert stats.binomtest(int(dropped.sum()), len(labels), p).pvalue > 1e-3
    kept = [label_of[tuple(img.flatten().tolist())] for img in x[~torch.from_numpy(dropped)]]
    np.testing.assert_array_equal(labels[~dropped], kept)


def test_rank_slices_partition_the_global_batch():
    for world in (1, 2, 3, 4):
        b = 5
        global_batch = torch.arange(world * b * 2).reshape(world * b, 2)
        parts = [DistInfo(rank=r, world_size=world, local_rank=r).shard(global_batch, b)
                 for r in range(world)]
        assert all(p.shape == (b, 2) for p in parts)
        assert torch.equal(torch.cat(parts), global_batch)


# --------------------------------------------------------------------------- the outputs


def _spec_model(payload, ema: bool):
    module = model_from_description(payload["config"]["derived"]["model"])
    module.load_state_dict(payload["ema"] if ema else payload["model"])
    params = to_spec_params(module)
    cfg = module.cfg
    net = spec.model.eps_film_net(spec.model.EpsFiLMNetConfig(
        cfg.data_channels, cfg.hidden_channels, cfg.residual_blocks, cfg.embed_dim, cfg.groups,
        cfg.down_blocks), params)
    # the network predicts what the run trained it to (the default run: v)
    return spec.prediction.PredictionModel(net, payload["config"]["derived"]["model"]["prediction"])


def _spec_sched(payload):
    return spec.schedule.VPSchedule(np.asarray(payload["config"]["derived"]["betas"],
                                               dtype=np.float64))


def _spec_ddim_images(payload, n, seed, steps, ema=True) -> np.ndarray:
    """spec.data.from_diffusion_range of the spec sampler, on the same weights, grid, x_T."""
    sched = _spec_sched(payload)
    C, H, W = payload["config"]["derived"]["image_shape"]
    x_T = torch.randn((n, C, H, W), generator=torch.Generator().manual_seed(seed)).double()
    grid = spec.ddim.ddim_timesteps(sched.T, steps)
    model = _spec_model(payload, ema)
    out = [spec.ddim.ddim_sample_strided(sched, model, x_T[i].numpy(), grid, clip=True)
           for i in range(n)]
    from spec.data import from_diffusion_range

    return from_diffusion_range(np.stack(out))


def test_sample_outputs_equal_the_spec_sampler(tiny_run, tmp_path, capsys):  # noqa: F811
    payload = load_checkpoint(tiny_run / "checkpoint.pt")
    expected = _spec_ddim_images(payload, 4, 3, 5)
    for suffix in (".npy", ".png"):
        out = tmp_path / f"s{suffix}"
        argv = ["--checkpoint", tiny_run / "checkpoint.pt", "--n", 4, "--seed", 3, "--steps", 5,
                "--eta", 0, "--out", out]
        assert run_command(sample_main, argv, capsys)[0] == 0
        if suffix == ".npy":
            np.testing.assert_allclose(np.load(out), np.clip(expected, 0, 1), rtol=0, atol=1e-4)
        else:
            from runtime.plumbing.artifacts import image_grid

            with Image.open(out) as image:
                pixels = np.asarray(image, dtype=np.int64)
            want = image_grid(np.clip(expected, 0, 1))[..., 0].astype(np.int64)
            assert pixels.shape == want.shape and np.abs(pixels - want).max() <= 1


def test_training_samples_come_from_the_ema_weights(tiny_run, tmp_path):  # noqa: F811
    payload = load_checkpoint(tiny_run / "checkpoint.pt")
    cfg = train_module.TrainConfig(**{k: v for k, v in payload["config"].items()
                                      if k != "derived"})
    from runtime.data.datasets import load_dataset

    test_x = load_dataset("digits", None, "test").x
    sched = train_module.Schedule(payload["config"]["derived"]["betas"])
    grids = {}
    for which in ("ema", "model"):
        model = model_from_description(payload["config"]["derived"]["model"])
        model.load_state_dict(payload[which])
        out = tmp_path / which
        out.mkdir()
        train_module.write_artifacts(cfg, out, model.eval(), sched, test_x, torch.device("cpu"))
        grids[which] = np.asarray(Image.open(out / "samples.png"))
    assert not np.array_equal(grids["ema"], grids["model"])  # the two weights differ visibly
    np.testing.assert_array_equal(np.asarray(Image.open(tiny_run / "samples.png")), grids["ema"])


@pytest.mark.parametrize("convention", [None, "beta-1", "fixed-large"])  # None: reference-code
def test_evaluate_bits_per_dim_equals_the_spec(tiny_run, tmp_path, capsys, convention):  # noqa: F811
    from runtime.evaluate import main as evaluate_main

    report = tmp_path / "e.json"
    argv = ["--checkpoint", tiny_run / "checkpoint.pt", "--n", 2, "--seed", 5, "--json", report]
    if convention is not None:
        argv += ["--bound-convention", convention]
    code, printed = run_command(evaluate_main, argv, capsys)[:2]
    assert code == 0
    result = json.loads(report.read_text())
    convention = convention or "reference-code"
    assert result["bits_per_dim_convention"] == convention
    assert f"bits/dim (Ho et al. Eq. 5, {convention})" in printed
    payload = load_checkpoint(tiny_run / "checkpoint.pt")
    sched, model = _spec_sched(payload), _spec_model(payload, ema=True)
    from runtime.data.datasets import load_dataset

    x0 = 2.0 * load_dataset("digits", None, "test").x[:2].astype(np.float64) - 1.0
    gen = torch.Generator().manual_seed(5)  # evaluate's stream: t and ε of the loss, then noise
    torch.randint(1, sched.T + 1, (2,), generator=gen)
    torch.randn(x0.shape, generator=gen)
    noise = torch.randn((sched.T, *x0.shape), generator=gen).double().numpy()
    bpd = [spec.likelihood.bits_per_dim(sched, model, x0[i], noise[:, i], 17, convention)
           for i in range(2)]
    assert result["bits_per_dim"] == pytest.approx(float(np.mean(bpd)), rel=1e-4)
    nats = [np.sum(spec.likelihood.vlb_terms(sched, model, x0[i], noise[:, i], 17, convention))
            / x0[i].size for i in range(2)]
    assert result["bits_per_dim"] == pytest.approx(float(np.mean(nats)) / math.log(2), rel=1e-4)


@pytest.fixture(scope="module")
def tiny_x0_run(tmp_path_factory):
    from runtime.plumbing.config import TrainConfig
    from runtime.train import train

    out = tmp_path_factory.mktemp("tiny-x0") / "run"
    train(TrainConfig(steps=2, T=10, hidden_c=8, n_samples=1, sample_steps=2, progress=False, out=str(out),
                      prediction="x0", quality_samples=0))
    return out


@pytest.mark.parametrize("run_name", ["tiny_run", "tiny_x0_run"])
def test_evaluate_held_out_losses_equal_the_spec_conversion(run_name, request, tmp_path, capsys):
    """The held-out ε-loss of a v- or x0-model is the MSE of ε̂ = spec.prediction.predict_eps of
    its output (not of the raw output), and the own-target loss is the MSE against v or x0."""
    from runtime.evaluate import main as evaluate_main

    run = request.getfixturevalue(run_name)
    report = tmp_path / "e.json"
    argv = ["--checkpoint", run / "checkpoint.pt", "--n", 3, "--seed", 7, "--json", report]
    assert run_command(evaluate_main, argv, capsys)[0] == 0
    result = json.loads(report.read_text())
    payload = load_checkpoint(run / "checkpoint.pt")
    sched, model = _spec_sched(payload), _spec_model(payload, ema=True)
    assert result["prediction"] == model.prediction == {"tiny_run": "v"}.get(run_name, "x0")
    from runtime.data.datasets import load_dataset

    x0 = 2.0 * load_dataset("digits", None, "test").x[:3].astype(np.float64) - 1.0
    gen = torch.Generator().manual_seed(7)  # evaluate's stream: t, then ε, of the one batch
    t = torch.randint(1, sched.T + 1, (3,), generator=gen).tolist()
    eps = torch.randn(x0.shape, generator=gen).double().numpy()
    eps_mse, own_mse = [], []
    for i in range(3):
        x_t = spec.forward.q_sample(sched, x0[i], t[i], eps[i])
        out = model.output(x_t, t[i] / sched.T)
        eps_hat = spec.prediction.predict_eps(sched, x_t, out, t[i], model.prediction)
        eps_mse.append(np.mean((eps_hat - eps[i]) ** 2))
        target = spec.prediction.prediction_target(sched, x0[i], t[i], eps[i], model.prediction)
        own_mse.append(np.mean((out - target) ** 2))
    assert result["eps_loss"] == pytest.approx(float(np.mean(eps_mse)), rel=1e-4)
    assert result["prediction_loss"] == pytest.approx(float(np.mean(own_mse)), rel=1e-4)


def test_train_log_records_the_quality_figure(tiny_run):  # noqa: F811
    quality = json.loads((tiny_run / "train_log.json").read_text())["notes"]["quality"]
    assert quality["n"] == 16 and quality["samples"] == 16
    assert quality["distance"] >= 0 and quality["floor"] > 0
    assert quality["ratio"] == pytest.approx(quality["distance"] / quality["floor"])
    assert len(quality["ratio_ci"]) == 2 and quality["bootstrap"]["replicates"] == 1000
    assert set(quality["seconds"]) >= {"sampling", "bootstrap"}  # the cost, stated
