"""torchrun with 2 CPU processes (gloo): world size 2 × batch b follows one process × batch 2b,
and --resume works under torchrun.

Why the parameters agree: every rank draws the same global batch (indices, t, noise for 2b
images) from the shared seeded generators and keeps its own half; DDP averages the two half-batch
gradients, which is the gradient of the 2b-batch mean up to float summation order.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
import torch
from test_train_support import REPO

from runtime.plumbing.checkpoint import load_checkpoint
from runtime.plumbing.config import TrainConfig
from runtime.train import train

PER_RANK = 4
# The default recipe (cosine rate, min-SNR-5 weights, EMA 0.99) with a warm-up of 2 steps.
COMMON = ["--steps", "3", "--T", "10", "--hidden-c", "8", "--n-samples", "2",
          "--sample-steps", "2", "--log-every", "1", "--no-progress", "--n-total", "20",
          "--warmup-steps", "2", "--quality-samples", "0"]
SINGLE = TrainConfig(steps=3, T=10, hidden_c=8, n_samples=2, sample_steps=2, log_every=1,
                     quality_samples=0,
                     progress=False, n_total=20, batch_size=2 * PER_RANK, warmup_steps=2)

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="torch.distributed is not available")


def torchrun(argv: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "-m", "runtime.train", *argv]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def assert_close_states(a: dict, b: dict, lr: float) -> None:
    """Same run up to float summation order.

    Adam divides each gradient element by its own running RMS, so an element whose gradient is
    ~1e-9 (a few, e.g. stem weights of the constant time channel) turns a rounding difference of
    ~1e-8 into an update difference of up to ~lr. So: Adam's second moments (mean of g², blind to
    such sign flips) agree to 1e-4 relative; 99% of the weights agree to 1e-5; every weight agrees
    to within the largest possible drift, lr per step. A wrong shard (e.g. both ranks on the same
    half) changes every gradient by O(1) and fails all three.
    """
    assert a["step"] == b["step"]
    for index, state in a["optimizer"]["state"].items():
        torch.testing.assert_close(state["exp_avg_sq"],
                                   b["optimizer"]["state"][index]["exp_avg_sq"],
                                   rtol=1e-4, atol=1e-12)
    for key in ("model", "ema"):
        diffs = torch.cat([(a[key][n] - b[key][n]).abs().flatten() for n in a[key]])
        assert float((diffs <= 1e-5).float().mean()) >= 0.99, key
        assert float(diffs.max()) <= lr * a["step"], key


def test_two_processes_match_one_with_twice_the_batch(tmp_path):
    ddp_out = tmp_path / "ddp"
    result = torchrun([*COMMON, "--batch-size", str(PER_RANK), "--out", str(ddp_out)])
    assert result.stdout.count("run folder:") == 2  # start and end, printed by rank 0 only
    ddp = load_checkpoint(ddp_out / "checkpoint.pt")
    assert ddp["config"]["derived"]["world_size"] == 2
    assert ddp["config"]["derived"]["global_batch"] == 2 * PER_RANK

    single_out = tmp_path / "single"
    train(dataclasses.replace(SINGLE, out=str(single_out)))
    assert_close_states(ddp, load_checkpoint(single_out / "checkpoint.pt"), SINGLE.lr)
    assert int(ddp["optimizer"]["state"][0]["step"]) == 3  # 3 real (not skipped) updates

    # --resume under torchrun continues the DDP run; the single run continues the same way.
    torchrun([*COMMON, "--out", str(ddp_out), "--resume", "--steps", "5"])
    train(dataclasses.replace(SINGLE, out=str(single_out), resume=True, steps=5),
          explicit={"out", "resume", "steps"})
    assert_close_states(load_checkpoint(ddp_out / "checkpoint.pt"),
                        load_checkpoint(single_out / "checkpoint.pt"), SINGLE.lr)
