"""Training and sampling a flow model (`runtime.train --objective flow`): the checkpoint records
the objective, the flow samplers draw from it exactly as `runtime.flow.flow_euler_sample` does,
the VP samplers and the flags of the other objective are refused with one line, a resumed flow
run is bit-identical to an uninterrupted one, and `runtime.evaluate` reports the flow loss."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from test_train_resume import _assert_same_state
from test_train_support import (
    assert_one_line_error,
    run_command,
    tiny_flow_config,
    tiny_flow_run,  # noqa: F401 - fixture
    tiny_run,  # noqa: F401 - fixture
)

from runtime.data.transforms import from_diffusion_range
from runtime.evaluate import evaluate
from runtime.flow import RectifiedFlow, flow_euler_sample, flow_heun_sample, flow_sigmas
from runtime.plumbing.checkpoint import load_checkpoint, restore_for_inference
from runtime.plumbing.cli import ConfigError
from runtime.plumbing.config import EvaluateConfig, SampleConfig, TrainConfig
from runtime.sample import main as sample_main
from runtime.sample import sample
from runtime.samplers import SAMPLERS
from runtime.train import main as train_main
from runtime.train import train
from runtime.train_step import FLOW_SIGMAS, flow_train_loss

FLOW = tiny_flow_config()
FLOW_ARGS = ["--device", "cpu", "--objective", "flow", "--n-total", "12", "--steps", "2",
             "--hidden-c", "8", "--n-samples", "2", "--sample-steps", "2", "--log-every", "1",
             "--no-progress", "--quality-samples", "0"]

@pytest.fixture
def flow_run(tiny_flow_run):  # noqa: F811 - the session's tiny flow run, read only here
    return tiny_flow_run


def test_the_checkpoint_and_log_record_the_objective(flow_run):
    import json

    config = load_checkpoint(flow_run / "checkpoint.pt")["config"]
    assert (config["objective"], config["flow_sigma"]) == ("flow", "logit-normal")
    assert (config["prediction"], config["min_snr_gamma"]) == ("eps", None)  # Objective.fixed
    notes = json.loads((flow_run / "train_log.json").read_text())["notes"]
    assert (notes["objective"], notes["prediction"], notes["T"]) == ("flow", None, None)
    assert math.isfinite(notes["final_loss"])
    for name in ("samples", "noisy", "reconstruct", "loss"):
        assert (flow_run / f"{name}.png").stat().st_size > 0


@pytest.mark.parametrize("sampler", ["flow-euler", "flow-heun"])
def test_flow_samplers_draw_what_the_flow_functions_draw(sampler, flow_run, tmp_path):
    ckpt = str(flow_run / "checkpoint.pt")
    cfg = SampleConfig(checkpoint=ckpt, sampler=sampler, steps=3, n=2, seed=5, device="cpu",
                       out=str(tmp_path / "s.npy"))
    _, steps, nfe = sample(cfg)
    assert (steps, nfe) == (3, 3 if sampler == "flow-euler" else 6)
    payload = load_checkpoint(ckpt)
    model = restore_for_inference(payload, ckpt, torch.device("cpu"), True)[0]
    x_T = torch.randn((2, 1, 8, 8), generator=torch.Generator().manual_seed(5))
    fn = {"flow-euler": flow_euler_sample, "flow-heun": flow_heun_sample}[sampler]
    x0 = fn(RectifiedFlow(), model, x_T, flow_sigmas(3))  # the network fed σ as its time
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"),
                                  from_diffusion_range(x0).clamp(0, 1).numpy())


@pytest.mark.parametrize(("ckpt", "flag", "reads"), [
    ("flow", ["--spacing", "leading"], "--shift"),  # its grid is flow_sigmas(S, --shift)
    ("vp", ["--shift", "3"], "--spacing, --sigma-max"),  # the flow σ's of table times
])
def test_the_grid_flags_are_those_of_the_checkpoint(ckpt, flag, reads, flow_run, tiny_run,  # noqa: F811
                                                    tmp_path, capsys):
    run = flow_run if ckpt == "flow" else tiny_run
    argv = ["--checkpoint", run / "checkpoint.pt", "--sampler", "flow-euler", "--steps", "2",
            *flag, "--device", "cpu", "--out", tmp_path / "s.npy"]
    code, _, err = run_command(sample_main, argv, capsys)
    assert_one_line_error(code, err, f"{flag[0]} {flag[1]}", f"--objective {ckpt}",
                          f"there it reads: {reads}")
    assert not (tmp_path / "s.npy").exists()


@pytest.mark.parametrize("sampler", sorted(s for s, e in SAMPLERS.items() if e.kind != "flow"))
def test_a_vp_sampler_on_a_flow_checkpoint_is_one_error_line(sampler, flow_run, tmp_path,
                                                             capsys):
    argv = ["--checkpoint", flow_run / "checkpoint.pt", "--sampler", sampler, "--device", "cpu",
            "--out", tmp_path / "s.npy"]
    code, _, err = run_command(sample_main, argv, capsys)
    assert_one_line_error(code, err, f"--sampler {sampler}", "--objective flow")
    assert not (tmp_path / "s.npy").exists()


@pytest.mark.parametrize("extra", [["--prediction", "v"], ["--min-snr-gamma", "5"],
                                   ["--zero-terminal-snr"], ["--T", "10"], ["--eta", "0"],
                                   ["--schedule", "linear"]])
def test_vp_flags_are_refused_for_a_flow_run(extra, tmp_path, capsys):
    code, _, err = run_command(train_main, [*FLOW_ARGS, *extra, "--out", tmp_path / "r"], capsys)
    assert_one_line_error(code, err, extra[0], "--objective flow", "applies to: --objective vp")
    assert not (tmp_path / "r").exists()


def test_flow_sigma_is_refused_for_a_vp_run(tmp_path, capsys):
    code, _, err = run_command(train_main, ["--flow-sigma", "uniform", "--out", tmp_path / "r"],
                               capsys)
    assert_one_line_error(code, err, "--flow-sigma", "--objective vp")
    with pytest.raises(ConfigError, match="--min-snr-gamma 3.0 does not apply"):
        TrainConfig(objective="flow", min_snr_gamma=3.0)


def test_a_resumed_flow_run_is_bit_identical(tmp_path):
    constant = dataclasses.replace(FLOW, lr_schedule="constant", flow_sigma="uniform")
    train(dataclasses.replace(constant, out=str(tmp_path / "straight")))
    out = str(tmp_path / "run")
    train(dataclasses.replace(constant, steps=3, out=out))
    train(dataclasses.replace(TrainConfig(), steps=4, out=out, resume=True, device="cpu"),
          explicit={"steps", "out", "resume", "device"})
    resumed = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert (resumed["config"]["objective"], resumed["config"]["flow_sigma"]) == ("flow",
                                                                                 "uniform")
    _assert_same_state(resumed, load_checkpoint(tmp_path / "straight" / "checkpoint.pt"),
                       same_curve=False)


def test_resume_refuses_another_objective(flow_run, tmp_path, capsys):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(flow_run, out)
    code, _, err = run_command(train_main, ["--out", out, "--resume", "--objective", "vp",
                                            "--steps", "9", "--device", "cpu"], capsys)
    assert_one_line_error(code, err, "--objective flow", "asks for vp")


def test_evaluate_reports_the_flow_loss_and_skips_the_bound(flow_run):
    ckpt = str(flow_run / "checkpoint.pt")
    result = evaluate(EvaluateConfig(checkpoint=ckpt, n=6, batch_size=4, seed=2, device="cpu"))
    assert (result["objective"], result["bits_per_dim"], result["eps_loss"]) == ("flow", None,
                                                                                 None)
    assert "flow model" in result["bits_per_dim_note"]
    # the same figure by hand: σ from the run's density on a CPU generator seeded 2, the noise
    # from the device generator seeded 2, flow_train_loss per batch of 4, weighted by size
    from runtime.data.datasets import load_dataset

    model = restore_for_inference(load_checkpoint(ckpt), ckpt, torch.device("cpu"), True)[0]
    x01 = torch.from_numpy(np.round(load_dataset("digits", None, "test").x[:6] * 16) / 16)
    sigma_gen, gen, total = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2), 0.0
    for batch in (x01[:4].float(), x01[4:].float()):
        sigma = FLOW_SIGMAS["logit-normal"](len(batch), sigma_gen)
        eps = torch.randn(batch.shape, generator=gen)
        total += float(flow_train_loss(model, batch, sigma, eps)[0]) * len(batch)
    assert result["prediction_loss"] == pytest.approx(total / 6, rel=1e-6)


def test_flow_sigma_densities():
    """uniform: σ ~ U[0, 1) (mean 1/2, variance 1/12); logit-normal: logit σ ~ N(0, 1)."""
    n = 40_000
    u = FLOW_SIGMAS["uniform"](n, torch.Generator().manual_seed(0)).double()
    assert abs(float(u.mean()) - 0.5) < 4 * math.sqrt(1 / 12 / n)
    assert abs(float(u.var()) - 1 / 12) < 0.003
    s = FLOW_SIGMAS["logit-normal"](n, torch.Generator().manual_seed(0)).double()
    logit = torch.log(s) - torch.log1p(-s)
    assert abs(float(logit.mean())) < 4 / math.sqrt(n)
    assert abs(float(logit.std()) - 1.0) < 0.02
