"""`python -m runtime.train`: a tiny run's artifacts, --help, and every bad input (exit 2, one line,
no partial files)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_train_support import (
    TINY,
    assert_one_line_error,
    run_command,
    run_subprocess,
    tiny_run,  # noqa: F401 - fixture
    write_data_folder,
)

from runtime.plumbing.artifacts import read_ppm
from runtime.plumbing.checkpoint import load_checkpoint
from runtime.sample import main as sample_main
from runtime.train import main as train_main

ARTIFACTS = ("checkpoint.pt", "train_log.json", "loss.png", "samples.png", "reference.png",
             "noisy.png", "reconstruct.png")


def test_tiny_run_writes_every_artifact(tmp_path, capsys):
    out = tmp_path / "run"
    ppm = {name: tmp_path / f"{name}.ppm" for name in ("sample", "reference", "noisy",
                                                          "reconstruct")}
    argv = [*TINY, "--out", out, "--log", tmp_path / "log.json",
            *[a for name, path in ppm.items() for a in (f"--{name}-ppm", path)]]
    code, stdout, _ = run_command(train_main, argv, capsys)
    assert code == 0
    assert stdout.splitlines()[0] == f"run folder: {out}"
    assert str(out) in stdout.splitlines()[-1]
    for name in ARTIFACTS:
        assert (out / name).is_file(), name
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    # PNG grids: 4 digits (8x8) in a 2x2 grid, upscaled by 8: (2*9+1)*8 = 152 pixels a side.
    for name in ("samples", "reference", "noisy", "reconstruct"):
        with Image.open(out / f"{name}.png") as image:
            image.verify()
        with Image.open(out / f"{name}.png") as image:
            assert image.size == (152, 152) and image.mode == "L"
            pixels = np.asarray(image)
        np.testing.assert_array_equal(read_ppm(ppm["sample" if name == "samples" else name]),
                                      np.repeat(pixels[..., None], 3, axis=2))
    with Image.open(out / "loss.png") as image:
        assert image.format == "PNG" and image.size[0] > 100
    log = json.loads((out / "train_log.json").read_text())
    assert log == json.loads((tmp_path / "log.json").read_text())
    notes = log["notes"]
    for key in ("dataset", "device", "lr", "hidden", "schedule", "model", "T", "steps",
                "wall_time_s", "quartile_loss", "skipped_steps"):
        assert key in notes, key
    assert (notes["dataset"], notes["device"], notes["hidden"], notes["T"]) == ("digits", "cpu",
                                                                                 8, 10)
    assert [entry["step"] for entry in log["curve"]] == [1, 2, 3]
    assert all(len(entry["quartile_loss"]) == 4 for entry in log["curve"])
    assert notes["skipped_steps"] == 0
    payload = load_checkpoint(out / "checkpoint.pt")
    assert payload["step"] == 3
    for key in ("model", "ema", "optimizer", "config", "rng", "history"):
        assert payload[key] is not None, key
    assert all(v.dtype == torch.float32 for v in payload["ema"].values())


def test_help_lists_flags_with_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--dataset", "--n-total", "--steps", "--hidden-c", "--T", "--beta-start",
                 "--beta-end", "--lr", "--batch-size", "--seed", "--data-dir", "--device",
                 "--cuda", "--fast-kernels", "--log", "--sample-ppm", "--reference-ppm",
                 "--noisy-ppm", "--reconstruct-ppm", "--reconstruct-step", "--out", "--schedule",
                 "--sample-steps", "--eta", "--ema-decay", "--ema-warmup", "--resume",
                 "--model"):
        assert flag in text, flag
    assert "(default: cosine)" in text and "(default: film)" in text


def test_existing_checkpoint_needs_resume(tiny_run, capsys):  # noqa: F811
    code, _, err = run_command(train_main, [*TINY, "--out", tiny_run], capsys)
    assert_one_line_error(code, err, "--resume")


def test_resume_without_checkpoint(tmp_path, capsys):
    code, _, err = run_command(train_main, [*TINY, "--out", tmp_path / "none", "--resume"],
                               capsys)
    assert_one_line_error(code, err, "does not exist")
    assert not (tmp_path / "none").exists()


@pytest.fixture
def data_dir(tmp_path):
    return write_data_folder(tmp_path / "data")


def _corrupt(data_dir, how):
    x_path = data_dir / "train_x.npy"
    if how == "truncated":
        x_path.write_bytes(x_path.read_bytes()[:-40])
    elif how == "misshaped":
        np.save(x_path, np.zeros((12, 8, 8), np.float32))
    elif how == "nan":
        x = np.load(x_path)
        x[0, 0, 0, 0] = np.nan
        np.save(x_path, x)
    elif how == "labels":
        np.save(data_dir / "train_y.npy", np.full(12, -1, np.int64))
    return data_dir


@pytest.mark.parametrize("how", ["truncated", "misshaped", "nan", "labels"])
def test_bad_data_is_one_line(tmp_path, data_dir, capsys, how):
    _corrupt(data_dir, how)
    out = tmp_path / "run"
    code, _, err = run_command(
        train_main, [*TINY, "--dataset", "npy", "--data-dir", data_dir, "--out", out], capsys)
    assert_one_line_error(code, err, "train_")
    assert not out.exists()


def test_cifar_labels_out_of_range(tmp_path, capsys):
    data = write_data_folder(tmp_path / "c", n_train=4, n_test=2, shape=(3, 32, 32))
    np.save(data / "train_y.npy", np.array([0, 1, 2, 10], np.int64))
    code, _, err = run_command(
        train_main, [*TINY, "--dataset", "cifar10", "--data-dir", data, "--out", tmp_path / "r"],
        capsys)
    assert_one_line_error(code, err, "10")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("argv", "needle"), [
    (["--dataset", "mnist"], "mnist"),
    (["--dataset", "npy", "--data-dir", "/nonexistent/data"], "/nonexistent/data"),
    (["--steps", "0"], "--steps"),
    (["--steps", "-3"], "--steps"),
    (["--T", "0"], "--T"),
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "-1"], "--batch-size"),
    (["--beta-start", "0"], "--beta-start"),
    (["--beta-end", "1.5"], "--beta-end"),
    (["--beta-start", "-0.1"], "--beta-start"),
    (["--steps", "ten"], "--steps"),
    (["--model", "unet"], "--model"),
    (["--hidden-c", "12"], "--hidden-c"),
    (["--down-blocks", "-1"], "--down-blocks"),
    (["--model", "residual", "--down-blocks", "1"], "--down-blocks"),
    (["--ema-decay", "1"], "--ema-decay"),
    (["--ema-decay", "0", "--ema-warmup"], "--ema-warmup"),
    (["--lr", "nan"], "--lr"),
    (["--sample-steps", "11"], "--sample-steps"),
    (["--n-total", "100000"], "--n-total"),
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "tpu"], "--device"),
])
def test_bad_flags_are_one_line(tmp_path, capsys, argv, needle):
    out = tmp_path / "run"
    code, _, err = run_command(train_main, [*TINY, "--out", out, *argv], capsys)
    assert_one_line_error(code, err, needle)
    assert not out.exists()


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out in (blocker / "run", blocker):
        code, _, err = run_command(train_main, [*TINY, "--out", out], capsys)
        assert_one_line_error(code, err, "--out")
    code, _, err = run_command(train_main, [*TINY, "--out", "/proc/diffspec-run"], capsys)
    assert_one_line_error(code, err, "--out")


def test_unwritable_ppm_folder_fails_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_command(
        train_main, [*TINY, "--out", out, "--sample-ppm", tmp_path / "missing" / "s.ppm"], capsys)
    assert_one_line_error(code, err, "--sample-ppm")
    assert not out.exists()


def test_subprocess_bad_input_has_no_traceback(tmp_path):
    result = run_subprocess("runtime.train", ["--steps", "0", "--out", tmp_path / "r"])
    assert_one_line_error(result.returncode, result.stderr, "--steps")
    assert result.stdout == ""
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("extra", [["--model", "conv"], ["--model", "residual", "--blocks", "1"],
                                   ["--fast-kernels"], ["--eta", "1", "--reconstruct-step", "3"]])
def test_other_models_and_options_run(tmp_path, capsys, extra):
    out = tmp_path / "run"
    code, _, err = run_command(train_main, [*TINY, "--out", out, *extra], capsys)
    assert code == 0, err
    notes = json.loads((out / "train_log.json").read_text())["notes"]
    assert np.isfinite(notes["final_loss"])
    if "--fast-kernels" in extra:
        assert notes["fast_kernels"] is True


def test_down_blocks_need_even_images(tmp_path, capsys):
    data = write_data_folder(tmp_path / "odd", shape=(1, 7, 8))
    out = tmp_path / "run"
    code, _, err = run_command(
        train_main, [*TINY, "--dataset", "npy", "--data-dir", data, "--out", out,
                     "--down-blocks", "1"], capsys)
    assert_one_line_error(code, err, "--down-blocks 1", "7x8")
    assert not out.exists()


def test_down_blocks_are_trained_stored_restored_and_part_of_the_identity(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [*TINY, "--out", out, "--blocks", "1", "--down-blocks", "2"]
    code, _, err = run_command(train_main, argv, capsys)
    assert code == 0, err
    payload = load_checkpoint(out / "checkpoint.pt")
    assert payload["config"]["down_blocks"] == 2
    assert payload["config"]["derived"]["model"]["config"]["down_blocks"] == 2
    assert "down.1.conv2.weight" in payload["model"]
    code, _, err = run_command(sample_main, ["--checkpoint", out / "checkpoint.pt", "--n", "2",
                                             "--steps", "2", "--out", tmp_path / "s.npy"], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "s.npy").shape == (2, 1, 8, 8)
    code, _, err = run_command(
        train_main, [*argv[:-1], "1", "--resume", "--steps", "4"], capsys)
    assert_one_line_error(code, err, "--down-blocks 2")
