"""`python -m runtime.sample` and `python -m runtime.evaluate` on a tiny checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from test_train_support import (
    assert_one_line_error,
    run_command,
    run_subprocess,
    tiny_linear_run,  # noqa: F401 - fixture
    tiny_run,  # noqa: F401 - fixture
)

from runtime.evaluate import main as evaluate_main
from runtime.plumbing.checkpoint import load_checkpoint, save_checkpoint
from runtime.sample import main as sample_main


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_sample_npy(tiny_run, tmp_path, capsys, sampler):  # noqa: F811
    out = tmp_path / "s.npy"
    argv = ["--checkpoint", tiny_run / "checkpoint.pt", "--sampler", sampler, "--n", 3,
            "--seed", 1, "--out", out]
    if sampler == "ddim":
        argv += ["--steps", 4, "--eta", 0.5]
    code, _, err = run_command(sample_main, argv, capsys)
    assert code == 0, err
    images = np.load(out)
    assert images.shape == (3, 1, 8, 8) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert run_command(sample_main, argv, capsys)[0] == 0
    np.testing.assert_array_equal(np.load(out), images)  # the seed fixes the samples


def test_sample_png_and_pf_ode(tiny_linear_run, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "grid.png"
    argv = ["--checkpoint", tiny_linear_run / "checkpoint.pt", "--sampler", "pf-ode",
            "--steps", 5, "--n", 4, "--out", out]
    code, stdout, err = run_command(sample_main, argv, capsys)
    assert code == 0, err
    assert "pf-ode, 5 steps, 5 model evaluations" in stdout
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (152, 152)


@pytest.mark.parametrize(("sampler", "steps", "nfe"),
                         [("pf-ode", 4, 4), ("euler", 4, 4), ("heun", 3, 5),
                          ("dpm-solver++", 4, 4), ("ddim", 4, 4)])
@pytest.mark.parametrize("run", ["tiny_run", "tiny_linear_run"])
def test_every_ode_sampler_on_both_schedules(run, sampler, steps, nfe, tmp_path, capsys, request):
    ckpt = request.getfixturevalue(run) / "checkpoint.pt"
    out = tmp_path / "s.npy"
    argv = ["--checkpoint", ckpt, "--sampler", sampler, "--steps", steps, "--n", 3, "--out", out]
    code, stdout, err = run_command(sample_main, argv, capsys)
    assert code == 0, err
    assert f"({sampler}, {steps} steps, {nfe} model evaluations)" in stdout
    images = np.load(out)
    assert images.shape == (3, 1, 8, 8) and np.isfinite(images).all()


def test_sample_ode_samplers_start_at_sigma_max(tiny_run, tmp_path, capsys):  # noqa: F811
    """--sigma-max moves the start; a larger one than σ_T is clamped to σ_T (same samples)."""
    ckpt = tiny_run / "checkpoint.pt"
    outs = {}
    for sigma in ("1e9", "1e12", "3"):
        outs[sigma] = tmp_path / f"s{sigma}.npy"
        argv = ["--checkpoint", ckpt, "--sampler", "heun", "--steps", 3, "--n", 2,
                "--sigma-max", sigma, "--out", outs[sigma]]
        assert run_command(sample_main, argv, capsys)[0] == 0
    np.testing.assert_array_equal(np.load(outs["1e9"]), np.load(outs["1e12"]))
    assert not np.array_equal(np.load(outs["1e9"]), np.load(outs["3"]))


def test_sample_user_errors(tiny_run, tmp_path, capsys):  # noqa: F811
    ckpt = tiny_run / "checkpoint.pt"
    cases = [
        (["--checkpoint", tmp_path / "missing.pt"], "does not exist"),
        (["--checkpoint", ckpt, "--sampler", "dpm-solver++", "--steps", 10], "dpm-solver++"),
        (["--checkpoint", ckpt, "--sampler", "heun", "--sigma-max", "1e-9"], "sigma-max"),
        (["--checkpoint", ckpt, "--sampler", "euler", "--sigma-max", "-1"], "--sigma-max"),
        (["--checkpoint", ckpt, "--sampler", "flow-euler", "--shift", "0"], "--shift must be > 0"),
        (["--checkpoint", ckpt, "--sampler", "flow-euler", "--shift", "nan"], "--shift"),
        (["--checkpoint", ckpt, "--sampler", "ddpm", "--steps", 3], "ddpm"),
        (["--checkpoint", ckpt, "--steps", 11], "--steps"),
        (["--checkpoint", ckpt, "--n", 0], "--n"),
        (["--checkpoint", ckpt, "--out", tmp_path / "x.jpg"], "--out"),
        (["--checkpoint", ckpt, "--out", tmp_path / "no" / "x.png"], "does not exist"),
        (["--checkpoint", ckpt, "--sampler", "rk4"], "--sampler"),
        ([], "--checkpoint"),
    ]
    for argv, needle in cases:
        code, _, err = run_command(sample_main, [*argv], capsys)
        assert_one_line_error(code, err, needle)
    assert list(tmp_path.iterdir()) == []


def _mismatched_checkpoint(tiny_run, tmp_path):  # noqa: F811
    payload = load_checkpoint(tiny_run / "checkpoint.pt")
    payload["config"]["derived"]["model"]["config"]["hidden_channels"] = 16  # weights: 8
    for key in ("format", "version"):
        payload.pop(key)
    path = tmp_path / "mismatched.pt"
    save_checkpoint(path, payload)
    return path


def test_corrupt_or_mismatched_checkpoint(tiny_run, tmp_path, capsys):  # noqa: F811
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((tiny_run / "checkpoint.pt").read_bytes()[:1000])
    mismatched = _mismatched_checkpoint(tiny_run, tmp_path)
    for main in (sample_main, evaluate_main):
        for path, needle in ((corrupt, "corrupt"), (mismatched, "shape")):
            out = ["--out", tmp_path / "s.png"] if main is sample_main else []
            code, _, err = run_command(main, ["--checkpoint", path, *out], capsys)
            assert_one_line_error(code, err, needle)
    assert not (tmp_path / "s.png").exists()


def test_evaluate_table_and_json(tiny_run, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "eval.json"
    code, stdout, err = run_command(
        evaluate_main, ["--checkpoint", tiny_run / "checkpoint.pt", "--n", 8, "--json", out],
        capsys)
    assert code == 0, err
    assert "bits/dim" in stdout and "ε-loss" in stdout
    result = json.loads(out.read_text())
    assert result["n"] == 8 and result["bins"] == 17 and result["dataset"] == "digits"
    assert result["weights"] == "ema"
    terms = result["bits_per_dim_terms"]
    assert result["bits_per_dim"] == pytest.approx(sum(terms.values()), rel=1e-9)
    assert result["bits_per_dim"] > 0 and result["eps_loss"] > 0


def test_evaluate_snaps_data_to_the_bins_grid():
    """Float data on the k/16 grid pass unchanged; data off the grid are a user error."""
    from runtime.evaluate import snap_to_grid

    x = np.array([0.0, 0.5, 1.0, 0.3125], np.float32).reshape(1, 1, 2, 2)
    np.testing.assert_array_equal(snap_to_grid(x, 17, "x"), x)
    with pytest.raises(Exception, match="not 17-level"):
        snap_to_grid(np.full((1, 1, 2, 2), 0.03, np.float32), 17, "x")


def test_evaluate_subprocess_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    for module in ("runtime.evaluate", "runtime.sample"):
        result = run_subprocess(module, ["--checkpoint", bad])
        assert_one_line_error(result.returncode, result.stderr, "corrupt")


def test_evaluate_uses_raw_weights_on_request(tiny_run, tmp_path, capsys):  # noqa: F811
    code, _, _ = run_command(evaluate_main, ["--checkpoint", tiny_run / "checkpoint.pt", "--n",
                                             4, "--no-ema", "--json", tmp_path / "r.json"],
                             capsys)
    assert code == 0
    assert json.loads((tmp_path / "r.json").read_text())["weights"] == "model"
