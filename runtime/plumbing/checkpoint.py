"""Checkpoints: atomic save, validated load.

A checkpoint is one `torch.save`d dict (docs/api.md):

    format      "diffspec-checkpoint", version CHECKPOINT_VERSION
    model       the ε-network's state_dict (float32)
    ema         the EMA weights (float32 state_dict), or absent when EMA is off
    optimizer   torch.optim.Adam state_dict
    step        optimiser steps done
    config      the TrainConfig as a dict, plus `derived`: data shape, betas, world size and
                `model`, the network as runtime.model.describe_model gives it: {"kind" (a key
                of runtime.model.MODELS), "config" (asdict of that kind's config), "prediction"}
    rng         the states of the training generators (data order, t, noise) and the data cursor
    history     the loss curve so far (and the running accumulators of the current log interval)

`save_checkpoint` writes a temporary file in the target's folder, flushes and fsyncs it, then
`os.replace`s it over the target (and fsyncs the folder), so a reader sees either the old file or
the new one, never a partial one; if anything fails the old checkpoint is left as it was.

`load_checkpoint` loads with `weights_only=True` (no pickled code runs) and turns every failure
(missing, truncated, not a checkpoint, missing keys) into one `CheckpointError` line. A version-1
checkpoint (written before the model table) is read too: `upgrade_model_description` turns its
flat model description into today's. Before
torch reads the file, `check_container` compares the sizes its zip headers claim with the file's
own size (torch then checks each tensor's claimed size against its record before allocating) and
checks every record against the CRC-32 the zip stores beside it (torch itself never does): a
single flipped bit in a weight is refused by every reader, `--resume` included, instead of being
trained on and saved again under a fresh, valid checksum.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from runtime.plumbing.atomic import atomic_write
from runtime.plumbing.cli import UserError
from runtime.plumbing.limits import format_bytes, memory_limit_bytes

CHECKPOINT_FORMAT = "diffspec-checkpoint"
CHECKPOINT_VERSION = 2
# 1: the model description was flat ({"kind": film|residual|conv, the config's fields, an optional
# "prediction" and "num_classes"}); 2: {"kind", "config", "prediction"} (runtime.model.MODELS).
READABLE_VERSIONS = (1, 2)
REQUIRED_KEYS = ("format", "version", "model", "optimizer", "step", "config", "rng", "history")


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be used; the message is one line naming the file and the cause."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Atomically write `payload` (plus format/version tags) to `path`."""
    path = Path(path)
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}
    atomic_write(path, lambda handle: torch.save(payload, handle), durable=True)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """Load and check a checkpoint written by `save_checkpoint`; raise `CheckpointError`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    check_container(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except MemoryError:
        raise CheckpointError(f"checkpoint {path} does not fit in memory") from None
    except Exception as exc:  # torch raises many types for a damaged file
        # torch's own text for an unpicklable file is a paragraph about `weights_only`; name the
        # exception type only, which is what a user can act on (the file is not a checkpoint).
        # A reader's RuntimeError says which record is short (claimed and stored sizes): keep
        # its first line.
        reason = type(exc).__name__
        if type(exc) is RuntimeError and str(exc).strip():
            reason += ": " + str(exc).strip().splitlines()[0][:200]
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a torch checkpoint ({reason}); "
            "expected a checkpoint.pt written by python -m runtime.train") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a diffspec training checkpoint")
    if payload.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(
            f"checkpoint {path} has format version {payload.get('version')!r}; this diffspec "
            f"reads versions {', '.join(map(str, READABLE_VERSIONS))}")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    if not isinstance(payload["config"], dict) or "derived" not in payload["config"]:
        raise CheckpointError(f"checkpoint {path} has no usable config")
    derived = payload["config"]["derived"]
    if isinstance(derived, dict) and isinstance(derived.get("model"), dict):
        derived["model"] = upgrade_model_description(derived["model"])
    return payload


def upgrade_model_description(description: dict[str, Any]) -> dict[str, Any]:
    """Today's model description ({"kind", "config", "prediction"}) from a stored one; the flat
    form of version-1 checkpoints is converted: kind film with `num_classes` is cond_film, the
    config's fields are picked from beside the kind, a missing prediction is "eps"."""
    if "config" in description:
        return description
    from runtime.model import MODELS

    kind = description.get("kind")
    if kind == "film" and description.get("num_classes"):
        kind = "cond_film"
    if kind not in MODELS:
        return description  # unusable: restore_for_inference names it
    names = [f.name for f in dataclasses.fields(MODELS[kind][0])]
    return {"kind": kind, "config": {n: description[n] for n in names if n in description},
            "prediction": description.get("prediction", "eps")}


def check_container(path: Path) -> None:
    """Check the zip container before torch reads it: the file fits in memory, is a zip (what
    `torch.save` writes; the legacy format is refused), no member claims more bytes than the
    file holds, and every member matches its CRC-32. (torch itself checks each tensor's claimed
    size against its stored record before allocating; this names the file, the member and both
    sizes in one line.)"""
    size = path.stat().st_size
    limit = memory_limit_bytes()
    if size > limit:
        raise CheckpointError(f"checkpoint {path} is {format_bytes(size)}, more than this "
                              f"machine's {format_bytes(limit)} of memory")
    corrupt = (f"checkpoint {path} is corrupt or not a torch checkpoint (%s); expected a "
               "checkpoint.pt written by python -m runtime.train")
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.file_size > size or info.compress_size > size:
                    raise CheckpointError(corrupt % (
                        f"the zip header claims {info.file_size} bytes for {info.filename}, "
                        f"the whole file holds {size}"))
            damaged = archive.testzip()  # the first record whose bytes fail their CRC-32
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise CheckpointError(corrupt % f"not a readable zip: {exc}") from None
    if damaged is not None:
        raise CheckpointError(f"checkpoint {path} is damaged: its record {damaged} fails its "
                              "CRC-32 check (the bytes on disk are not the bytes written); "
                              "use an intact copy of the checkpoint")


def load_state_dict_checked(module: torch.nn.Module, state: Any, what: str, path: Any) -> None:
    """`module.load_state_dict(state)` with a mismatch reported as one `CheckpointError` line."""
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: {what} is not a state dict")
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise CheckpointError(
            f"checkpoint {path}: {what} does not match the model its config describes "
            f"(missing {missing[:3]}, unexpected {extra[:3]})")
    for key, value in own.items():
        other = state[key]
        if not isinstance(other, torch.Tensor) or tuple(other.shape) != tuple(value.shape):
            shape = tuple(other.shape) if isinstance(other, torch.Tensor) else type(other).__name__
            raise CheckpointError(
                f"checkpoint {path}: {what}[{key!r}] has shape {shape}, the model expects "
                f"{tuple(value.shape)}")
    module.load_state_dict(state)


# --------------------------------------------------------------------------- inference


def restore_for_inference(payload: dict[str, Any], path: Any, device: torch.device,
                          use_ema: bool = True):
    """(model in eval mode on `device`, Schedule, derived config, which weights) from a payload.

    Any mismatch between the stored weights and the stored config is one `CheckpointError`.
    """
    from runtime.model import model_from_description
    from runtime.schedule import Schedule

    derived = payload["config"]["derived"]
    try:
        model = model_from_description(derived["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: unusable model description "
                              f"{derived.get('model')!r} ({exc})") from exc
    weights = "ema" if use_ema and payload.get("ema") is not None else "model"
    load_state_dict_checked(model, payload[weights], weights, path)
    try:
        betas = torch.as_tensor(derived["betas"], dtype=torch.float64)
        if betas.ndim != 1 or not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("betas must be a 1-d tensor with values in (0, 1]")
        sched = Schedule(betas, dtype=torch.float32, device=device)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path}: unusable schedule ({exc})") from exc
    return model.to(device).eval(), sched, derived, weights
