"""`python -m runtime.data` end to end and the `runtime.plumbing.cli` error convention.

Every bad input: exit status 2, exactly one line `error: ...` on stderr, no traceback, and no
partial output left behind. A subprocess costs about 2 s (the package imports torch), so the
matrices of cases run `main` through `run_main` in this process (`run_cli_in_process`, the same
code path), and real `python -m runtime.data` subprocesses cover each kind of outcome once:
bad usage, MD5 mismatch, conversion, check (ok and failing), an unwritable --out, a NaN.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from test_data_fixtures import (
    assert_one_line_error,
    good_arrays,
    run_cli,
    run_cli_in_process,
    write_fake_cifar_archive,
    write_folder,
    write_image_tree,
)

from runtime.data import CIFAR10_MD5
from runtime.plumbing.cli import EXIT_INTERRUPTED, ArgumentParser, UserError, fail, run_main

# --------------------------------------------------------------------------- runtime.plumbing.cli


def _exit(main, capsys, argv=None):
    with pytest.raises(SystemExit) as info:
        run_main(main, argv)
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_run_main_user_error_is_one_line(capsys):
    def main(argv):
        fail("--steps must be positive;\n  got 0")

    assert _exit(main, capsys) == (2, "", "error: --steps must be positive; got 0\n")


def test_run_main_os_error_names_the_file(capsys):
    def main(argv):
        open("/no/such/dir/file.txt", "w")  # noqa: SIM115

    code, _, err = _exit(main, capsys)
    assert code == 2 and err == "error: No such file or directory: /no/such/dir/file.txt\n"


def test_run_main_interrupt_and_return_codes(capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    assert _exit(interrupted, capsys) == (EXIT_INTERRUPTED, "", "interrupted\n")
    assert _exit(lambda argv: None, capsys)[0] == 0
    assert _exit(lambda argv: 3, capsys)[0] == 3
    assert _exit(lambda argv: print(argv), capsys, ["a"]) == (0, "['a']\n", "")


def test_run_main_extra_user_error_types(capsys):
    class ConfigError(ValueError):
        pass

    def main(argv):
        raise ConfigError("--T must be a positive integer, got 0")

    with pytest.raises(SystemExit) as info:
        run_main(main, user_errors=(ConfigError,))
    assert info.value.code == 2
    assert capsys.readouterr().err == "error: --T must be a positive integer, got 0\n"
    with pytest.raises(ConfigError):
        run_main(main)  # not listed: a bug, with its traceback


def test_run_main_lets_bugs_through():
    def main(argv):
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        run_main(main)


def test_argument_parser_usage_errors_raise_user_error():
    parser = ArgumentParser(prog="prog")
    parser.add_argument("--n", type=int, required=True)
    with pytest.raises(
        UserError, match=r"^prog: argument --n: invalid int value: 'x' \(see --help\)$"
    ):
        parser.parse_args(["--n", "x"])


# --------------------------------------------------------------------------- usage


def test_help_has_examples(capsys):
    proc = run_cli_in_process(capsys, "--help")
    assert proc.returncode == 0 and "examples:" in proc.stdout and "check --data-dir" in proc.stdout


def test_bad_usage_subprocess():
    assert_one_line_error(run_cli(), "the following arguments are required")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("convert",), "invalid choice: 'convert'"),
        (
            ("image-folder", "--src", "x", "--out", "y", "--test-fraction", "2"),
            "got 2.0; expected a number in (0, 1)",
        ),
        (("check",), "check: got no data; expected --data-dir DIR, or --x X.npy --y Y.npy"),
    ],
)
def test_bad_usage(capsys, args, fragment):
    assert_one_line_error(run_cli_in_process(capsys, *args), fragment)


# --------------------------------------------------------------------------- cifar10


def test_cifar10_md5_mismatch_then_conversion_and_check(tmp_path):
    archive = write_fake_cifar_archive(tmp_path / "cifar-10-python.tar.gz", per_batch=3)
    out = tmp_path / "data" / "cifar10"
    proc = run_cli("cifar10", "--archive", archive, "--out", out)
    assert_one_line_error(proc, "MD5 mismatch", f"expected {CIFAR10_MD5}")
    assert sorted(os.listdir(tmp_path)) == ["cifar-10-python.tar.gz"]

    proc = run_cli("cifar10", "--archive", archive, "--out", out, "--no-verify-md5")
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}: train 15, test 3 images of 3x32x32, 10 class(es)" in proc.stdout
    assert sorted(os.listdir(out)) == ["test_x.npy", "test_y.npy", "train_x.npy", "train_y.npy"]

    proc = run_cli("check", "--data-dir", out, "--dataset", "cifar10")
    assert proc.returncode == 0, proc.stderr
    assert "train: x (15, 3, 32, 32) float32" in proc.stdout and "10 classes" in proc.stdout
    assert proc.stdout.rstrip().endswith("ok")


# --------------------------------------------------------------------------- image-folder


def test_image_folder_conversion_counts_unreadable_files(tmp_path, capsys):
    write_image_tree(tmp_path / "src")
    out = tmp_path / "out"
    proc = run_cli_in_process(
        capsys,
        "image-folder",
        "--src",
        tmp_path / "src",
        "--out",
        out,
        "--height",
        "8",
        "--width",
        "8",
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 class(es) (0=cats, 1=dogs)" in proc.stdout
    assert "skipped 1 unreadable file(s): dogs/broken.png" in proc.stdout
    assert np.load(out / "train_x.npy").shape[1:] == (3, 8, 8)


def test_unwritable_out_leaves_nothing(tmp_path):
    write_image_tree(tmp_path / "src")
    (tmp_path / "file").write_text("")
    proc = run_cli("image-folder", "--src", tmp_path / "src", "--out", tmp_path / "file" / "out")
    assert_one_line_error(proc, "cannot write the output folder")
    assert sorted(os.listdir(tmp_path)) == ["file", "src"]
    assert (tmp_path / "file").read_text() == ""


# --------------------------------------------------------------------------- check: each failure


def _defect(kind: str, folder):
    arrays = good_arrays()
    if kind == "rank":
        arrays["train_x.npy"] = arrays["train_x.npy"][:, 0]
    elif kind == "nan":
        arrays["test_x.npy"][1, 0, 2, 2] = np.nan
    elif kind == "labels":
        arrays["test_y.npy"][0] = 12
    elif kind == "n-mismatch":
        arrays["train_x.npy"] = arrays["train_x.npy"][:4]
    elif kind == "missing":
        del arrays["test_x.npy"]
    write_folder(folder, arrays)
    if kind == "truncated":
        data = (folder / "train_y.npy").read_bytes()
        (folder / "train_y.npy").write_bytes(data[:100])


@pytest.mark.parametrize(
    ("kind", "extra", "fragments"),
    [
        ("truncated", (), ["train_y.npy: not a readable .npy array (truncated or corrupt?)"]),
        ("rank", (), ["train_x.npy: images have the wrong rank: got shape (6, 4, 4)"]),
        ("nan", (), ["test_x.npy: non-finite image values", "(1, 0, 2, 2) (nan)"]),
        (
            "labels",
            ("--num-classes", "3"),
            ["test_y.npy: label out of range: got max 12; expected labels in [0, 3)"],
        ),
        ("n-mismatch", (), ["got 4 images and 6 labels; expected one label per image"]),
        ("missing", (), ["test_x.npy: file not found"]),
    ],
)
def test_check_reports_each_failure(tmp_path, capsys, kind, extra, fragments):
    _defect(kind, tmp_path / "d")
    before = sorted(p.name for p in (tmp_path / "d").iterdir())
    proc = run_cli_in_process(capsys, "check", "--data-dir", tmp_path / "d", *extra)
    assert_one_line_error(proc, *fragments)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == before


def test_check_failure_subprocess(tmp_path):
    _defect("nan", tmp_path / "d")
    assert_one_line_error(
        run_cli("check", "--data-dir", tmp_path / "d"), "test_x.npy: non-finite image values"
    )


def test_check_pair_with_uint8_and_wrong_dataset(tmp_path, capsys):
    x = (np.arange(4 * 3 * 2 * 2) % 256).astype(np.uint8).reshape(4, 3, 2, 2)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.array([0, 1, 1, 2], dtype=np.int32))
    proc = run_cli_in_process(capsys, "check", "--x", tmp_path / "x.npy", "--y", tmp_path / "y.npy")
    assert proc.returncode == 0, proc.stderr
    assert "x (4, 3, 2, 2) float32 in [0, 0.1843]" in proc.stdout  # 47/255, converted from uint8
    assert "class counts {0: 1, 1: 2, 2: 1}" in proc.stdout
    write_folder(tmp_path / "d", good_arrays())
    assert_one_line_error(
        run_cli_in_process(capsys, "check", "--data-dir", tmp_path / "d", "--dataset", "cifar10"),
        "wrong image size for cifar10: got CxHxW 1x4x4; expected 3x32x32",
    )
