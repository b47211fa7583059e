"""Resuming: what a run continues from, the checkpoint it writes, and reading it back.

`--resume` reads OUT/checkpoint.pt and continues until --steps (a total). Flags given now win
over the checkpoint's settings, except those that change what is trained (an error); the
settings of this machine and terminal (SESSION_FIELDS) are always this command's. The
checkpoint holds the weights, EMA, Adam's state, the random streams, the loss accumulators and
the curve, so on the CPU an interrupted-and-resumed run ends bit-identical to an uninterrupted
one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from runtime.plumbing.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_state_dict_checked,
    save_checkpoint,
)
from runtime.plumbing.cli import fail
from runtime.plumbing.config import (
    IDENTITY_DEFAULTS,
    TRAINING_IDENTITY,
    ConfigError,
    TrainConfig,
    flag_of,
)
from runtime.plumbing.distributed import DistInfo

from .state import Run, RunState

# Settings of the machine and terminal at hand: never taken from a checkpoint on --resume.
SESSION_FIELDS = frozenset({"device", "fast_kernels", "progress", "out", "resume"})


def merge_resume_config(cfg: TrainConfig, explicit: set[str], stored: dict[str, Any],
                        ckpt_path: Path) -> TrainConfig:
    """The config of a resumed run: flags given now win, every other value is the checkpoint's,
    except the settings of this session's hardware and terminal (SESSION_FIELDS), which are
    always this command's. A flag given now that changes what is trained (TRAINING_IDENTITY)
    is an error.
    """
    names = {f.name for f in dataclasses.fields(TrainConfig)} - SESSION_FIELDS
    stored = {**IDENTITY_DEFAULTS, **stored}  # an old checkpoint: the values it was trained with
    built = stored.get("derived", {}).get("model", {}).get("config", {})
    for name, field in (("blocks", "residual_blocks"), ("down_blocks", "down_blocks")):
        if stored.get(name) is None and field in built:  # a default then: what was built
            stored[name] = built[field]
    for name in TRAINING_IDENTITY:
        if name in explicit and name in stored and stored[name] != getattr(cfg, name):
            raise CheckpointError(
                f"{ckpt_path} was trained with {flag_of(name)} {stored[name]}, this run asks for "
                f"{getattr(cfg, name)}; drop the flag to continue the run, or use another --out")
    values = {name: stored[name] for name in names if name in stored and name not in explicit}
    values.update(out=cfg.out, resume=True)
    try:
        return dataclasses.replace(cfg, **values)
    except (TypeError, ConfigError) as exc:
        raise CheckpointError(f"{ckpt_path}: stored config is unusable ({exc})") from exc


def read_resume(cfg: TrainConfig, explicit: set[str] | frozenset[str],
                ckpt_path: Path) -> tuple[TrainConfig, dict[str, Any] | None]:
    """(the run's config, the checkpoint it continues from or None). Without --resume an
    existing checkpoint is an error (a finished run is never overwritten)."""
    if not cfg.resume:
        if ckpt_path.exists():
            fail(f"{ckpt_path} exists; use --resume to continue that run or choose another --out")
        return cfg, None
    payload = load_checkpoint(ckpt_path)
    cfg = merge_resume_config(cfg, set(explicit), payload["config"], ckpt_path)
    if payload["step"] > cfg.steps:
        fail(f"{ckpt_path} is at step {payload['step']}, past --steps {cfg.steps}; "
             "give a larger --steps to continue")
    return cfg, payload


def check_resumable(payload: dict[str, Any], ckpt_path: Path, cfg: TrainConfig, info: DistInfo,
                    image_shape: list[int]) -> None:
    """The checkpoint was trained with this global batch and on images of this shape."""
    derived = payload["config"]["derived"]
    global_batch = info.world_size * cfg.batch_size
    if derived.get("global_batch") != global_batch:
        fail(f"{ckpt_path} was trained with a global batch of {derived.get('global_batch')} "
             f"(world size x --batch-size), this run has {info.world_size} x "
             f"{cfg.batch_size} = {global_batch}")
    if list(derived.get("image_shape", [])) != image_shape:
        fail(f"{ckpt_path} was trained on images of shape {derived.get('image_shape')}, "
             f"the data now have {image_shape}")


def restore(run: Run, payload: dict[str, Any], ckpt_path: Any) -> None:
    """Load the weights, Adam, EMA, the streams, the accumulators and the curve into `run`."""
    load_state_dict_checked(run.model, payload["model"], "model", ckpt_path)
    try:
        run.update.optimizer.load_state_dict(payload["optimizer"])
        if run.update.ema is not None:
            if payload.get("ema") is None:
                raise CheckpointError(f"{ckpt_path} has no EMA weights")
            run.update.load_ema_state_dict(run.model, payload["ema"])
        run.streams.load_state_dict(payload["rng"])
        run.acc.load_state_dict(payload["history"]["accumulators"])
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{ckpt_path}: training state does not match this run "
                              f"({str(exc).splitlines()[0][:160]})") from exc
    run.state = RunState(step=int(payload["step"]), history=list(payload["history"]["curve"]),
                         train_time_s=float(payload["history"].get("train_time_s", 0.0)))


def save(run: Run, ckpt_path: Path, reason: str) -> None:
    """Write the checkpoint (rank 0 only, atomically); `reason` is recorded in it."""
    if not run.info.is_main:
        return
    update, model, state = run.update, run.model, run.state
    save_checkpoint(ckpt_path, {
        "model": model.state_dict(),
        "ema": update.ema_state_dict(model),
        "optimizer": update.optimizer.state_dict(),
        "step": state.step,
        "config": {**dataclasses.asdict(run.cfg), "derived": run.derived},
        "rng": run.streams.state_dict(),
        "history": {"curve": state.history, "accumulators": run.acc.state_dict(),
                    "train_time_s": state.train_time_s, "saved_because": reason},
    })
