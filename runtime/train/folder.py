"""The run folder: its default name, and the checks made before anything is written to it."""

from __future__ import annotations

import contextlib
import datetime
import os
from pathlib import Path

from runtime.plumbing.atomic import temp_path
from runtime.plumbing.cli import fail
from runtime.plumbing.config import TrainConfig

CHECKPOINT_NAME = "checkpoint.pt"


def default_out_dir(dataset: str) -> Path:
    return Path("runs") / f"{dataset}-{datetime.datetime.now():%Y%m%d-%H%M%S}"


def check_writable_file(flag: str, path: str | None, out: Path) -> None:
    """An output file's folder must exist (or be the run folder) and be writable."""
    if path is None:
        return
    folder = Path(path).parent
    if Path(path).is_dir():
        fail(f"{flag} {path} is a folder; expected a file path")
    if folder.resolve() == out.resolve() and not out.exists():
        return
    if not folder.is_dir():
        fail(f"{flag} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        fail(f"{flag} {path}: folder {folder} is not writable")


def check_output_files(cfg: TrainConfig, out: Path) -> None:
    """Every extra output file asked for (--log and the PPMs) can be written."""
    for flag, path in (("--log", cfg.log), ("--sample-ppm", cfg.sample_ppm),
                       ("--reference-ppm", cfg.reference_ppm), ("--noisy-ppm", cfg.noisy_ppm),
                       ("--reconstruct-ppm", cfg.reconstruct_ppm)):
        check_writable_file(flag, path, out)


def prepare_out_dir(out: Path) -> bool:
    """Create --out (and parents) and check it is writable; return whether it was created."""
    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a folder")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = temp_path(out / "write-test")  # a kill -9 right here leaves a known leftover
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        fail(f"--out {out} is not writable ({exc.strerror or exc})")
    return created
