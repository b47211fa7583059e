"""Building a run from its config, in one trip down: config → schedule, model, data → `Run`.

`build_run` is the only place a `TrainConfig` becomes objects: the schedule (`schedule_betas`),
the network (`model_config` picks the entry of `runtime.model.MODELS` and fills its config),
the fast-kernel choice, the guarded optimizer/EMA, the random streams, and, on --resume, the
state they continue from (`runtime.train.resume.restore`). The loop then only reads the `Run`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from runtime.data.datasets import Dataset, check_same_image_shape, load_dataset
from runtime.model import MODELS, build_model, describe_model
from runtime.plumbing.cli import fail
from runtime.plumbing.config import FILM_GROUPS, TrainConfig
from runtime.plumbing.distributed import DistInfo, all_reduce_min
from runtime.plumbing.fast_kernels import choose as choose_kernels
from runtime.plumbing.fast_kernels import common_choice, configure_tf32
from runtime.plumbing.limits import check_memory, sampling_bytes, training_step_bytes
from runtime.schedule import TABLES, Schedule
from runtime.train_step import OBJECTIVES, GuardedUpdate

from .guard import Accumulators
from .resume import restore
from .rng import STREAM_INIT, Streams, init_parameters, make_generator
from .state import Run

FILM_EMBED_DIM = 64  # the time embedding width of the FiLM nets the trainer builds


def say(info: DistInfo, message: str) -> None:
    """Print a line of progress (rank 0 only)."""
    if info.is_main:
        print(message, flush=True)


# --------------------------------------------------------------------------- config → parts


def schedule_betas(kind: str, T: int, beta_start: float, beta_end: float,
                   zero_terminal_snr: bool = False) -> torch.Tensor:
    """The float64 betas of a `--schedule` choice, rescaled to ᾱ_T = 0 with zero_terminal_snr."""
    from runtime.schedule import cosine_betas, linear_betas, rescale_zero_terminal_snr

    if kind == "cosine":
        betas = cosine_betas(T)
    elif kind == "linear":
        betas = linear_betas(T, beta_start, beta_end)
    else:
        raise ValueError(f"unknown schedule {kind!r}")
    return rescale_zero_terminal_snr(betas) if zero_terminal_snr else betas


def model_config(cfg: TrainConfig, data_channels: int, num_classes: int = 0) -> tuple[str, Any]:
    """(kind, config) of the network `cfg` asks for: `--model`, or cond_film with
    --class-conditional; the config of that kind (runtime.model.MODELS) takes the fields it has
    from the data, `--hidden-c`, `--blocks`, `--down-blocks`, the FiLM embedding width and
    groups, the classes."""
    kind = "cond_film" if cfg.class_conditional else cfg.model
    config_cls = MODELS[kind][0]
    offered = {"data_channels": int(data_channels), "hidden_channels": cfg.hidden_c,
               "residual_blocks": cfg.residual_blocks, "embed_dim": FILM_EMBED_DIM,
               "groups": FILM_GROUPS, "num_classes": int(num_classes),
               "down_blocks": cfg.stage_blocks}
    return kind, config_cls(**{f.name: offered[f.name] for f in dataclasses.fields(config_cls)})


# --------------------------------------------------------------------------- data


@dataclass
class TrainData:
    """The training images in [0, 1] (after --n-total), their labels, and the splits."""

    x: np.ndarray  # (N, C, H, W) float32
    y: np.ndarray | None  # (N,) int64, None when the caller gave no training split labels
    train: Dataset | None
    test: Dataset

    @property
    def image_shape(self) -> list[int]:
        return [int(v) for v in self.x.shape[1:]]


def load_data(cfg: TrainConfig, data: tuple[Dataset, Dataset] | None = None) -> TrainData:
    """The data set of `cfg` (or `data`, a (train, test) pair), cut to --n-total; the two splits
    must hold images of one shape (the samples, the reconstruction and the quality figure compare
    them), as `runtime.data check` demands, of even height and width with --down-blocks."""
    if data is None:
        train_set = load_dataset(cfg.dataset, cfg.data_dir, split="train")
        test_set = load_dataset(cfg.dataset, cfg.data_dir, split="test")
    else:
        train_set, test_set = data
    check_same_image_shape(train_set, test_set, cfg.data_dir or cfg.dataset)
    height, width = train_set.x.shape[-2:]
    if cfg.stage_blocks and (height % 2 or width % 2):
        fail(f"--down-blocks {cfg.stage_blocks} needs images of even height and width (a 2x2 "
             f"average pooling), {cfg.data_dir or cfg.dataset} has {height}x{width} images")
    n_available = len(train_set.x)
    if cfg.n_total is not None and cfg.n_total > n_available:
        fail(f"--n-total {cfg.n_total} exceeds the {n_available} training images of "
             f"{cfg.dataset}")
    cut = slice(None) if cfg.n_total is None else slice(cfg.n_total)
    y = None if train_set is None else train_set.y[cut]
    return TrainData(x=train_set.x[cut], y=y, train=train_set, test=test_set)


def check_memory_needs(cfg: TrainConfig, image_shape: list[int]) -> None:
    """Refuse, before anything is written, a run that cannot fit in this machine's memory: the
    schedule's tables, one training step, the pictures and the quality samples drawn at the end
    (lower bounds, `runtime.plumbing.limits`)."""
    check_memory(f"--T {cfg.T}", len(TABLES) * 8 * (cfg.T + 1),
                 f"{len(TABLES)} float64 tables of T + 1 entries")
    check_memory(f"--batch-size {cfg.batch_size}",
                 training_step_bytes(cfg.batch_size, image_shape, cfg.hidden_c),
                 f"a training step on {cfg.batch_size} images")
    for flag, n in (("--n-samples", cfg.n_samples), ("--quality-samples", cfg.quality_samples)):
        if n:
            check_memory(f"{flag} {n}", sampling_bytes(n, image_shape, cfg.hidden_c),
                         f"drawing {n} images at once")


def to_device_data(x01: np.ndarray, device: torch.device) -> torch.Tensor:
    """Training images in [0, 1] (float32; `train_step` maps each batch to [-1, 1]), on the
    device when they fit comfortably, else pinned host memory (copied per batch with
    non_blocking=True)."""
    x = torch.from_numpy(np.array(x01, dtype=np.float32, copy=True))
    if device.type == "cuda" and x.numel() * 4 > (1 << 30):
        return x.pin_memory()
    return x.to(device)


# --------------------------------------------------------------------------- the run


def build_run(cfg: TrainConfig, info: DistInfo, data: TrainData, device: torch.device,
              payload: dict[str, Any] | None = None, ckpt_path: Any = None) -> Run:
    """The run `cfg` describes on `device`, continued from `payload` when given."""
    C, H, W = data.image_shape
    betas = schedule_betas(cfg.schedule, cfg.T, cfg.beta_start, cfg.beta_end,
                           cfg.zero_terminal_snr)
    labels, num_classes = None, 0
    if cfg.class_conditional:
        if data.y is None or len(data.y) == 0:
            fail("--class-conditional needs the training labels (train_y.npy)")
        num_classes = int(np.max(data.y)) + 1
        labels = torch.from_numpy(np.array(data.y, dtype=np.int64))  # a writable copy
    model = build_model(*model_config(cfg, C, num_classes), cfg.prediction)
    init_parameters(model, make_generator(cfg.seed, STREAM_INIT))
    kernels = choose_kernels(cfg.fast_kernels, device, model, (cfg.batch_size, C, H, W))
    if info.enabled and kernels.probe_ms:
        kernels = common_choice(kernels, lambda i: int(all_reduce_min(
            torch.tensor([i], dtype=torch.int64, device=device), info).item()))
    if cfg.fast_kernels:
        say(info, f"fast kernels: {kernels.name} ({kernels.reason})")
    configure_tf32(kernels)
    if kernels.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = model.to(device)
    derived = {"model": describe_model(model), "betas": betas, "image_shape": [C, H, W],
               "n_train": len(data.x), "global_batch": info.world_size * cfg.batch_size,
               "world_size": info.world_size, "dataset": cfg.dataset, "data_dir": cfg.data_dir}
    run = Run(cfg=cfg, info=info, device=device,
              sched=Schedule(betas, dtype=torch.float32, device=device), model=model,
              train_model=model, kernels=kernels,
              update=GuardedUpdate(model, cfg.lr, cfg.ema_decay, device,
                                   ema_warmup=cfg.ema_warmup),
              streams=Streams.create(cfg.seed, len(data.x), device, cfg.class_conditional),
              acc=Accumulators(device), data_x=torch.empty(0), labels=labels, derived=derived)
    if payload is not None:
        restore(run, payload, ckpt_path)
    # The model as the loss sees it: DDP, then torch.compile (channels_last and autocast are
    # applied by train_step).
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        run.train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if kernels.compile:
        run.train_model = torch.compile(run.train_model)
    run.data_x = to_device_data(data.x, device)
    return run


class Batch(NamedTuple):
    x01: torch.Tensor  # (b, C, H, W) in [0, 1] on the device
    t: torch.Tensor  # (b,) int64 in 1..T on the device (flow: σ, float32 in [0, 1])
    noise: torch.Tensor  # (b, C, H, W)
    model_args: tuple[torch.Tensor, ...]  # the labels of a class-conditional model


def draw_batch(run: Run) -> Batch:
    """This rank's slice of the next global batch: indices from the epoch permutation,
    t ~ U{1..T} (or σ, the objective's `draw`), ε ~ N(0, I) and, for a class-conditional model, the labels, each replaced by
    the null label with probability --label-dropout. Every rank draws the whole global batch
    from the shared streams and keeps its slice."""
    cfg, info, streams, data_x = run.cfg, run.info, run.streams, run.data_x
    B, b, (C, H, W) = run.global_batch, cfg.batch_size, data_x.shape[1:]
    idx = info.shard(streams.data.next(B), b)
    t = info.shard(OBJECTIVES[cfg.objective].draw(cfg, B, streams.t), b)
    noise = info.shard(torch.randn((B, C, H, W), generator=streams.noise,
                                   device=streams.noise.device), b).to(run.device)
    if data_x.is_pinned():  # large data on the host: gather into pinned memory, async copy
        staged = torch.empty((b, C, H, W), dtype=data_x.dtype, pin_memory=True)
        x01 = torch.index_select(data_x, 0, idx, out=staged).to(run.device, non_blocking=True)
    else:
        x01 = data_x[idx.to(data_x.device)]
    t = t.to(run.device, non_blocking=True)
    model_args: tuple[torch.Tensor, ...] = ()
    if run.labels is not None:
        drop = info.shard(torch.rand(B, generator=streams.label), b)
        model_args = (torch.where(drop < cfg.label_dropout, run.model.num_classes,
                                  run.labels[idx]).to(run.device),)
    return Batch(x01, t, noise, model_args)
