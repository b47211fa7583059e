"""The training run, top to bottom: `train` (the run folder and its lock), `_prepare` (the
checks made before anything is written), `run_training` (build, loop, save, artifacts).

Host syncs: on CUDA the loop syncs only every `--log-every` steps (loss curve, progress bar,
the consecutive-skip check, Ctrl-C). On the CPU a sync costs nothing: Ctrl-C and the skip run
are checked each step.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from runtime.plumbing.cli import UserError, fail, resolve_device
from runtime.plumbing.config import TrainConfig, check_objective_flags
from runtime.plumbing.distributed import (
    DistInfo,
    all_reduce_min,
    barrier,
    cleanup,
    device_for,
    env_info,
    init_distributed,
)
from runtime.plumbing.lr_schedule import lr_factor, set_lr
from runtime.plumbing.runlock import run_lock
from runtime.train_step import OBJECTIVES, train_step

from . import artifacts, resume
from .folder import CHECKPOINT_NAME, check_output_files, default_out_dir, prepare_out_dir
from .guard import MAX_CONSECUTIVE_NONFINITE, log_point, skip_run_message, too_many_skips
from .run import TrainData, build_run, check_memory_needs, draw_batch, load_data, say
from .stop import StopRequest, resume_hint, should_stop


def train(cfg: TrainConfig, explicit: set[str] | frozenset[str] = frozenset(), *,
          on_step: Callable[[int], None] | None = None, data=None) -> Path:
    """Run training as configured; return the run folder. Raises UserError for bad input.

    `on_step(step)` is called after each finished step (tests use it); `data` replaces the data
    set loader with `(train Dataset, test Dataset)` (tests).
    """
    t_start = time.perf_counter()
    info = env_info()
    resolve_device(cfg.device)  # an unusable --device is an error before anything else
    # Rank 0 owns the folder (OUT/.lock, `runtime.plumbing.runlock`) for the whole run, from before the
    # checkpoint is read; a second trainer on it stops with exit status 2.
    out = Path(cfg.out) if cfg.out is not None else default_out_dir(cfg.dataset)
    if info.enabled and cfg.out is None:
        fail("under torchrun give --out DIR (each process must agree on the run folder)")
    with run_lock(out) if info.is_main else contextlib.nullcontext():
        cfg, payload, train_data = _prepare(cfg, explicit, info, out, data)
        info = init_distributed(resolve_device(cfg.device).type)
        try:
            run_training(cfg, info, out, payload, train_data, t_start, on_step)
            # The other ranks wait for rank 0's checkpoint and artifacts, so that no process
            # tears down its side of the process group while a peer still holds it open.
            barrier(info)
            return out
        finally:
            cleanup(info)


def _prepare(cfg: TrainConfig, explicit: set[str] | frozenset[str], info: DistInfo, out: Path,
             data) -> tuple[TrainConfig, dict[str, Any] | None, TrainData]:
    """The config, the checkpoint continued from and the data, all validated before anything
    but the lock is written; then the run folder (rank 0 creates it)."""
    cfg, payload = resume.read_resume(cfg, explicit, out / CHECKPOINT_NAME)
    check_objective_flags(cfg, explicit)
    check_output_files(cfg, out)
    resolve_device(cfg.device)
    train_data = load_data(cfg, data)
    check_memory_needs(cfg, train_data.image_shape)
    if payload is not None:
        resume.check_resumable(payload, out / CHECKPOINT_NAME, cfg, info, train_data.image_shape)
    if info.is_main:
        prepare_out_dir(out)
    return cfg, payload, train_data


def run_training(cfg: TrainConfig, info: DistInfo, out: Path, payload: dict[str, Any] | None,
                 data: TrainData, t_start: float, on_step: Callable[[int], None] | None) -> None:
    """Build the run, train it to --steps, save it, write its artifacts (rank 0)."""
    device = device_for(info, resolve_device(cfg.device).type)
    is_cuda, ckpt_path = device.type == "cuda", out / CHECKPOINT_NAME
    say(info, f"run folder: {out}")
    run = build_run(cfg, info, data, device, payload, ckpt_path)
    if payload is not None:
        say(info, f"resuming from step {run.state.step} of {cfg.steps}")
        planned = payload["config"].get("steps")
        if cfg.lr_schedule == "cosine" and planned not in (None, cfg.steps):
            say(info, f"note: the cosine learning rate now decays over {cfg.steps} steps; the "
                f"run so far followed a decay over {planned}")
    reduce_finite = ((lambda f: all_reduce_min(f.to(torch.int32), info).bool())
                     if info.enabled else None)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.kernels.bf16)
    state, start_step, interrupted = run.state, run.state.step, False
    objective = OBJECTIVES[cfg.objective]
    bar = progress_bar(cfg, info, start_step)
    run.model.train()
    loop_start = first_loop_start = time.perf_counter()
    with StopRequest() as stop, contextlib.closing(bar):
        while state.step < cfg.steps:
            # 1. this rank's slice of the global batch: images, t ~ U{1..T} (flow: σ from
            #    --flow-sigma), ε ~ N(0, I)
            x01, t, noise, model_args = draw_batch(run)
            # 2. the step spec.train.train_step describes (conformance-checked), at this step's
            #    learning rate (runtime.plumbing.lr_schedule)
            set_lr(run.update.optimizer, cfg.lr * lr_factor(state.step, cfg.steps,
                                                            cfg.lr_schedule, cfg.warmup_steps))
            result = train_step(run.sched, run.train_model, run.update, x01, t, noise,
                                autocast=autocast, channels_last=run.kernels.channels_last,
                                reduce_finite=reduce_finite, prediction=cfg.prediction,
                                min_snr_gamma=cfg.min_snr_gamma, model_args=model_args,
                                objective=cfg.objective)
            run.acc.add(result.per_sample, objective.quartile(t, cfg.T), result.finite)
            state.step += 1
            bar.update(1)
            # 3. a point of the loss curve (a host sync), and the skip-run check
            at_log = state.step % cfg.log_every == 0 or state.step == cfg.steps
            cpu_check = not is_cuda and not info.enabled and \
                int(run.acc.consecutive) >= MAX_CONSECUTIVE_NONFINITE
            if at_log or cpu_check:
                entry = log_point(run.acc, info, state.step)
                if too_many_skips(run.acc):
                    resume.save(run, ckpt_path, "non-finite")
                    raise UserError(skip_run_message(run.acc, state.step, ckpt_path)
                                    if info.is_main else "non-finite loss")
                state.history.append(entry)
                run.acc.reset_interval()
                if entry["loss"] is not None:
                    bar.set_postfix(loss=f"{entry['loss']:.4f}", skipped=entry["skipped"],
                                    refresh=False)
            if on_step is not None:
                on_step(state.step)
            # 4. a periodic checkpoint, and Ctrl-C
            if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 \
                    and state.step < cfg.steps:
                state.train_time_s += time.perf_counter() - loop_start
                loop_start = time.perf_counter()
                resume.save(run, ckpt_path, "periodic")
            if should_stop(stop, info, at_log, is_cuda):
                interrupted = True
                break
    state.train_time_s += time.perf_counter() - loop_start
    session_train_s = time.perf_counter() - first_loop_start
    resume.save(run, ckpt_path, "interrupted" if interrupted else "finished")
    if interrupted:
        say(info, f"interrupted at step {state.step} of {cfg.steps}; checkpoint saved to "
                  f"{ckpt_path}\nresume with: {resume_hint(info, out)}")
        raise KeyboardInterrupt
    if info.is_main:
        artifacts.finish(run, out, data, {"t_start": t_start, "session_train_s": session_train_s},
                         start_step, resumed=payload is not None)


class _NoBar:
    """The progress bar when none is drawn."""

    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(cfg: TrainConfig, info: DistInfo, initial: int):
    """A tqdm bar on stderr (rank 0, --progress), else a bar that draws nothing."""
    if not (info.is_main and cfg.progress):
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=cfg.steps, initial=initial, desc="train", unit="step", dynamic_ncols=True,
                file=sys.stderr)
