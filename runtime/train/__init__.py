"""`python -m runtime.train`: train an ε-predictor (DDPM, Ho et al. 2020, Algorithm 1).

Each step (one process; see `runtime.plumbing.distributed` for torchrun):

    1. idx ← the next B indices of a seeded epoch permutation of the training set
    2. t ~ U{1..T} per sample, ε ~ N(0, I)                         (seeded generators)
    3-4. runtime.train_step.train_step(sched, model, update, x01, t, ε): x0 = 2·x01 − 1, the loss
       of the model's prediction type (runtime.loss.prediction_loss with reduction="none" gives
       each sample's loss, weighted by --min-snr-gamma; for the default ε-model it is DDPM
       Eq. 14), backward; if the loss and every gradient are finite: Adam step and EMA update,
       else the step is skipped (parameters, Adam state and EMA are left as they were). That
       function is the conformance-checked twin of spec.train.train_step. A class-conditional
       model also gets the labels, each replaced by the null label with probability
       --label-dropout.

The package, in the order a run goes through it:

    loop.py       train → _prepare → run_training: the loop itself, top to bottom
    folder.py     the run folder and the output files (checked before anything is written)
    resume.py     --resume: the merged config, the checkpoint written and read back
    run.py        config → schedule, model (runtime.model.MODELS), data → Run; draw_batch
    state.py      Run (what the loop reads) and RunState (what a step carries on)
    rng.py        the seeded random streams (init, data order, t, noise, labels, samples)
    guard.py      the loss sums and skip counts of the guarded update; the skip-run stop
    stop.py       Ctrl-C / SIGTERM: finish the step, save, exit 130
    artifacts.py  samples, reference, noisy, reconstruct, quality, train_log.json, loss.png

Skipped steps: a non-finite loss or gradient never reaches the weights (`GuardedUpdate`). On the
CPU the step is simply not taken; on CUDA it is decided without a host sync (fused Adam is given
`found_inf`, the flag torch.amp.GradScaler uses, and skips its update on the device; EMA's weight
is multiplied by the finite flag), so the CUDA hot loop never calls `.item()`. Both paths give
the same bits. Skips are counted in the log; after `MAX_CONSECUTIVE_NONFINITE` skips in a row
the run stops with exit status 2.

Ctrl-C (or SIGTERM) finishes the current step, writes OUT/checkpoint.pt and exits with status 130
and a line telling how to resume. A second Ctrl-C stops at once (the last checkpoint stays), as
does one outside the loop (start-up, the final pictures, the quality figure): status 130, no lock
or partial file left, the last checkpoint intact.

No other module of `runtime` imports this package (tests/test_train_imports.py checks it).
"""

from __future__ import annotations

from collections.abc import Sequence

from runtime.plumbing.cli import EXIT_STATUS_HELP
from runtime.plumbing.config import TrainConfig, parse_config
from runtime.schedule import Schedule
from runtime.train_step import (  # noqa: F401 (twins of spec.train, re-exported)
    GuardedUpdate,
    adam_step,
    all_finite,
    ema_decay_at,
    ema_update,
    flow_train_loss,
    train_loss,
    train_step,
)

from .artifacts import write_artifacts
from .folder import CHECKPOINT_NAME
from .guard import MAX_CONSECUTIVE_NONFINITE, Accumulators
from .loop import train
from .resume import SESSION_FIELDS, merge_resume_config
from .rng import (
    STREAM_DATA,
    STREAM_INIT,
    STREAM_LABEL,
    STREAM_NOISE,
    STREAM_QUALITY,
    STREAM_SAMPLE,
    STREAM_T,
    EpochSampler,
    init_parameters,
    make_generator,
    stream_seed,
)
from .run import model_config, schedule_betas

DESCRIPTION = """\
Train a DDPM ε-predictor and write a run folder: checkpoint.pt, train_log.json, loss.png,
samples.png (DDIM), reference.png, noisy.png and reconstruct.png.

With no flags: the embedded 8x8 digits, the FiLM net, cosine betas, T = 1000, EMA; a few
minutes on two CPU cores."""

EPILOG = """\
examples:
  python -m runtime.train                                   # the default run
  python -m runtime.train --out runs/d --steps 4000 --resume  # continue runs/d up to step 4000
  python -m runtime.train --dataset cifar10 --data-dir data/cifar10 --cuda --fast-kernels
  torchrun --nproc_per_node=2 -m runtime.train --batch-size 64 --out runs/ddp  # 2 x 64 a step

Under torchrun --batch-size is per process; every process draws the same global batch from the
shared seeded generators and trains on its own slice, so N processes x batch b follow one
process x batch N*b. Errors in the input end with one line `error: ...` and exit status 2.

One run folder, one trainer: the run holds OUT/.lock from start to end (under torchrun, rank 0
holds it); another trainer on that folder, --resume included, stops at once with exit status 2
and names the holder (pid, host, start time). A folder left by kill -9 is free again at once.

""" + EXIT_STATUS_HELP


def main(argv: Sequence[str] | None = None) -> int:
    cfg, explicit = parse_config(TrainConfig, None if argv is None else list(argv),
                                 prog="python -m runtime.train", description=DESCRIPTION,
                                 epilog=EPILOG)
    train(cfg, explicit)
    return 0


__all__ = [
    "CHECKPOINT_NAME", "DESCRIPTION", "EPILOG", "MAX_CONSECUTIVE_NONFINITE", "SESSION_FIELDS",
    "STREAM_DATA", "STREAM_INIT", "STREAM_LABEL", "STREAM_NOISE", "STREAM_QUALITY",
    "STREAM_SAMPLE", "STREAM_T", "Accumulators", "EpochSampler", "GuardedUpdate", "Schedule",
    "TrainConfig", "adam_step", "all_finite", "ema_decay_at", "ema_update", "flow_train_loss",
    "init_parameters", "main",
    "make_generator", "merge_resume_config", "model_config", "schedule_betas", "stream_seed",
    "train", "train_loss", "train_step", "write_artifacts",
]
