"""Shared helpers for the runtime.train / sample / evaluate tests (no tests here).

Tiny configurations keep every run to about a second: 3 steps, T = 10, hidden 8, 4 images.
Commands run in-process through `runtime.plumbing.cli.run_main` (exit code and stderr exactly as a user
sees them, without paying a Python start-up per case); a few tests also run a real subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.plumbing.cli import run_main

REPO = Path(__file__).resolve().parents[1]
# The CPU is pinned: these tests check CPU behaviour (the per-step skip check, bit-identical
# resume) and must not move to a GPU when the test machine has one.
TINY = ["--device", "cpu", "--steps", "3", "--T", "10", "--hidden-c", "8", "--n-samples", "4",
        "--sample-steps", "2", "--log-every", "1", "--no-progress", "--quality-samples", "0"]


def run_command(main, argv, capsys) -> tuple[int, str, str]:
    """Run a command's `main` as `python -m ...` would; return (exit code, stdout, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, [str(a) for a in argv])
    captured = capsys.readouterr()
    code = exit_info.value.code
    return (0 if code is None else int(code)), captured.out, captured.err


def run_subprocess(module: str, argv, cwd: Path | None = None, timeout: float = 120.0
                   ) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", module, *[str(a) for a in argv]],
                          cwd=cwd or REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, f"exit code {code}, stderr: {err!r}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


def write_data_folder(folder: Path, n_train: int = 12, n_test: int = 6, shape=(1, 8, 8),
                      classes: int = 3) -> Path:
    """A valid data folder in the runtime layout (values on the 17-level digits grid)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        x = (rng.integers(0, 17, size=(n, *shape)) / 16.0).astype(np.float32)
        y = (np.arange(n) % classes).astype(np.int64)
        np.save(folder / f"{split}_x.npy", x)
        np.save(folder / f"{split}_y.npy", y)
    return folder


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished tiny training run on digits (its folder), shared by the read-only tests."""
    from runtime.plumbing.config import TrainConfig
    from runtime.train import train

    out = tmp_path_factory.mktemp("tiny") / "run"
    cfg = TrainConfig(steps=3, T=10, hidden_c=8, n_samples=4, sample_steps=2, log_every=1,
                      progress=False, out=str(out), quality_samples=16)
    train(cfg)
    return out


def tiny_flow_config(**changes):
    """The tiny flow run's TrainConfig (--objective flow, logit-normal σ, digits), changed."""
    import dataclasses

    from runtime.plumbing.config import TrainConfig

    return dataclasses.replace(TrainConfig(
        dataset="digits", n_total=12, steps=4, hidden_c=8, batch_size=5, n_samples=2,
        sample_steps=2, log_every=2, progress=False, checkpoint_every=0, warmup_steps=2,
        objective="flow", quality_samples=0, device="cpu"), **changes)


@pytest.fixture(scope="session")
def tiny_flow_run(tmp_path_factory) -> Path:
    """A finished tiny flow run (`tiny_flow_config`), shared by the read-only tests."""
    from runtime.train import train

    out = tmp_path_factory.mktemp("tiny-flow") / "run"
    train(tiny_flow_config(out=str(out)))
    return out


@pytest.fixture(scope="session")
def tiny_linear_run(tmp_path_factory) -> Path:
    from runtime.plumbing.config import TrainConfig
    from runtime.train import train

    out = tmp_path_factory.mktemp("tiny-linear") / "run"
    cfg = TrainConfig(steps=2, T=10, hidden_c=8, n_samples=4, sample_steps=2, progress=False,
                      schedule="linear", beta_start=0.01, beta_end=0.2, model="residual",
                      ema_decay=0.0, out=str(out), quality_samples=0)
    train(cfg)
    return out


@pytest.fixture(scope="session")
def tiny_cond_run(tmp_path_factory) -> Path:
    """A finished tiny class-conditional run on digits (10 classes, 1 residual block)."""
    from runtime.plumbing.config import TrainConfig
    from runtime.train import train

    out = tmp_path_factory.mktemp("tiny-cond") / "run"
    cfg = TrainConfig(steps=2, T=10, hidden_c=8, blocks=1, n_samples=10, sample_steps=2,
                      progress=False, class_conditional=True, out=str(out), quality_samples=0)
    train(cfg)
    return out
