"""The commands with --prediction, --zero-terminal-snr, --min-snr-gamma, --class-conditional,
--label-dropout (runtime.train), --spacing, --class, --guidance-scale (runtime.sample) and
runtime.evaluate of x0- and v-models: stored in the checkpoint, refused on --resume when they
change, bad combinations one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_train_support import TINY, assert_one_line_error, run_command

from runtime.evaluate import main as evaluate_main
from runtime.plumbing.checkpoint import load_checkpoint, save_checkpoint
from runtime.plumbing.config import TrainConfig, parse_config
from runtime.sample import main as sample_main
from runtime.train import main as train_main

V_ZERO_SNR = ["--prediction", "v", "--zero-terminal-snr", "--min-snr-gamma", "5"]


@pytest.fixture(scope="module")
def v_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("v") / "run"
    with pytest.raises(SystemExit) as info:
        from runtime.plumbing.cli import run_main

        run_main(train_main, [str(a) for a in [*TINY, "--out", out, *V_ZERO_SNR]])
    assert info.value.code in (0, None)
    return out


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cond") / "run"
    with pytest.raises(SystemExit) as info:
        from runtime.plumbing.cli import run_main

        run_main(train_main, [str(a) for a in [*TINY, "--out", out, "--class-conditional",
                                                "--label-dropout", "0.2"]])
    assert info.value.code in (0, None)
    return out


def test_v_zero_snr_run_stores_its_settings(v_run):
    payload = load_checkpoint(v_run / "checkpoint.pt")
    cfg = payload["config"]
    assert (cfg["prediction"], cfg["zero_terminal_snr"], cfg["min_snr_gamma"]) == ("v", True, 5.0)
    assert payload["config"]["derived"]["model"]["prediction"] == "v"
    betas = torch.as_tensor(cfg["derived"]["betas"])
    assert betas[-1] == 1.0 and bool(((betas > 0) & (betas <= 1)).all())
    notes = json.loads((v_run / "train_log.json").read_text())["notes"]
    assert (notes["prediction"], notes["min_snr_gamma"]) == ("v", 5.0)
    assert "unweighted v-MSE" in notes["loss_note"] and "v-MSE" in notes["quartile_note"]


@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace", "even"])
def test_sample_every_spacing_from_a_v_zero_snr_model(v_run, tmp_path, capsys, spacing):
    out = tmp_path / "x.npy"
    code, _, err = run_command(sample_main, ["--checkpoint", v_run / "checkpoint.pt", "--steps",
                                             "3", "--n", "2", "--spacing", spacing, "--device",
                                             "cpu", "--out", out], capsys)
    assert code == 0, err
    x = np.load(out)
    assert x.shape == (2, 1, 8, 8) and np.isfinite(x).all()


def test_evaluate_a_v_model(v_run, tmp_path, capsys):
    code, stdout, err = run_command(evaluate_main, ["--checkpoint", v_run / "checkpoint.pt",
                                                    "--n", "3", "--device", "cpu", "--json",
                                                    tmp_path / "r.json"], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["prediction"] == "v" and "v-loss (own target)" in stdout
    assert np.isfinite([result["eps_loss"], result["prediction_loss"], result["bits_per_dim"]]).all()


@pytest.mark.parametrize("flag", [["--prediction", "x0"], ["--min-snr-gamma", "1"],
                                  ["--label-dropout", "0.3"]])
def test_resume_refuses_changed_prediction_settings(v_run, capsys, flag):
    code, _, err = run_command(train_main, [*TINY, "--out", v_run, "--resume", "--steps", "4",
                                            *flag], capsys)
    assert_one_line_error(code, err, flag[0])


def test_an_old_checkpoint_is_an_eps_model_and_refuses_other_settings(tmp_path, capsys):
    out = tmp_path / "run"
    old_kind = ["--prediction", "eps", "--min-snr-gamma", "0"]  # what older diffspec trained
    assert run_command(train_main, [*TINY, "--out", out, *old_kind], capsys)[0] == 0
    payload = load_checkpoint(out / "checkpoint.pt")
    model = payload["config"]["derived"]["model"]
    assert model["prediction"] == "eps"
    # What a checkpoint of an older diffspec holds: the flat model description of version 1,
    # without "prediction", and a config without the settings added since.
    payload["config"]["derived"]["model"] = {"kind": model["kind"], **model["config"]}
    for key in ("prediction", "zero_terminal_snr", "min_snr_gamma", "class_conditional",
                "label_dropout"):
        del payload["config"][key]  # what a checkpoint of an older diffspec holds
    save_checkpoint(out / "checkpoint.pt", {**payload, "version": 1})
    for flag in (["--prediction", "v"], ["--class-conditional"], ["--min-snr-gamma", "5"]):
        code, _, err = run_command(train_main, [*TINY, "--out", out, "--resume", "--steps", "4",
                                                *flag], capsys)
        assert_one_line_error(code, err, flag[0])
    code, _, err = run_command(train_main, [*TINY, "--out", out, "--resume", "--steps", "4"],
                               capsys)
    assert code == 0, err
    assert load_checkpoint(out / "checkpoint.pt")["config"]["prediction"] == "eps"
    code, _, err = run_command(sample_main, ["--checkpoint", out / "checkpoint.pt", "--steps", "2",
                                             "--n", "1", "--device", "cpu", "--out",
                                             tmp_path / "s.npy"], capsys)
    assert code == 0, err


def test_min_snr_gamma_zero_means_unweighted():
    """The default run is unweighted (0, stored as None, the value of an unweighted checkpoint);
    `--min-snr-gamma 5` is the flag's way back to the first sweep's min-SNR-5."""
    assert TrainConfig().min_snr_gamma is None
    cfg, explicit = parse_config(TrainConfig, ["--min-snr-gamma", "0"], "train", "")
    assert cfg.min_snr_gamma is None and "min_snr_gamma" in explicit
    cfg, _ = parse_config(TrainConfig, ["--min-snr-gamma", "5"], "train", "")
    assert cfg.min_snr_gamma == 5.0


@pytest.mark.parametrize(("argv", "needle"), [
    (["--zero-terminal-snr", "--prediction", "eps"],
     "--zero-terminal-snr needs --prediction x0"),
    (["--min-snr-gamma", "-1"], "--min-snr-gamma"),
    (["--label-dropout", "1"], "--label-dropout"),
    (["--class-conditional", "--model", "residual"], "--class-conditional needs --model film"),
    (["--prediction", "score"], "--prediction"),
])
def test_bad_prediction_flags_are_one_line(tmp_path, capsys, argv, needle):
    code, _, err = run_command(train_main, [*TINY, "--out", tmp_path / "r", *argv], capsys)
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "r").exists()


def test_class_conditional_run_draws_one_row_per_class(cond_run, tmp_path, capsys):
    payload = load_checkpoint(cond_run / "checkpoint.pt")
    assert payload["config"]["derived"]["model"]["kind"] == "cond_film"
    assert payload["config"]["derived"]["model"]["config"]["num_classes"] == 10
    assert "label_emb.weight" in payload["model"]
    with Image.open(cond_run / "samples.png") as image:  # 10 rows x 1 image (--n-samples 4)
        assert image.size == ((1 * 9 + 1) * 8, (10 * 9 + 1) * 8)
    out = tmp_path / "s.png"
    code, _, err = run_command(sample_main, ["--checkpoint", cond_run / "checkpoint.pt", "--steps",
                                             "2", "--n", "20", "--guidance-scale", "3",
                                             "--spacing", "trailing", "--device", "cpu",
                                             "--out", out], capsys)
    assert code == 0, err
    with Image.open(out) as image:  # 10 rows x 2
        assert image.size == ((2 * 9 + 1) * 8, (10 * 9 + 1) * 8)
    code, _, err = run_command(sample_main, ["--checkpoint", cond_run / "checkpoint.pt", "--steps",
                                             "2", "--n", "3", "--class", "7", "--device", "cpu",
                                             "--out", tmp_path / "s.npy"], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "s.npy").shape == (3, 1, 8, 8)


def test_sample_guidance_errors(cond_run, v_run, tmp_path, capsys):
    code, _, err = run_command(sample_main, ["--checkpoint", cond_run / "checkpoint.pt",
                                             "--class", "10", "--out", tmp_path / "s.png"], capsys)
    assert_one_line_error(code, err, "--class must lie in 0..9")
    code, _, err = run_command(sample_main, ["--checkpoint", v_run / "checkpoint.pt",
                                             "--guidance-scale", "2", "--out", tmp_path / "s.png"],
                               capsys)
    assert_one_line_error(code, err, "class-conditional")
    code, _, err = run_command(sample_main, ["--checkpoint", v_run / "checkpoint.pt", "--sampler",
                                             "ddpm", "--spacing", "trailing", "--out",
                                             tmp_path / "s.png"], capsys)
    assert_one_line_error(code, err, "--spacing")
    code, _, err = run_command(sample_main, ["--checkpoint", v_run / "checkpoint.pt", "--spacing",
                                             "uniform", "--out", tmp_path / "s.png"], capsys)
    assert_one_line_error(code, err, "--spacing")
