"""What a run is made of (`Run`, built once by `runtime.train.run.build_run`) and what it carries
from step to step (`RunState`); shared by the builder, the loop and `resume`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from runtime.plumbing.config import TrainConfig
from runtime.plumbing.distributed import DistInfo
from runtime.plumbing.fast_kernels import KernelChoice
from runtime.schedule import Schedule
from runtime.train_step import GuardedUpdate

from .guard import Accumulators
from .rng import Streams


@dataclass
class RunState:
    """What a run carries from step to step (and into the checkpoint)."""

    step: int
    history: list[dict[str, Any]]
    train_time_s: float


@dataclass
class Run:
    """Everything the loop reads, built once by `build_run`."""

    cfg: TrainConfig
    info: DistInfo
    device: torch.device
    sched: Schedule
    model: torch.nn.Module  # the network (its weights are what the checkpoint stores)
    train_model: torch.nn.Module  # what the loss calls: the network under DDP / torch.compile
    kernels: KernelChoice
    update: GuardedUpdate  # fused Adam + EMA, skipped on a non-finite step
    streams: Streams
    acc: Accumulators
    data_x: torch.Tensor  # (N, C, H, W) in [0, 1]
    labels: torch.Tensor | None  # (N,) int64 for a class-conditional run
    derived: dict[str, Any]  # what the checkpoint records of the data, model and schedule
    state: RunState = field(default_factory=lambda: RunState(0, [], 0.0))

    @property
    def global_batch(self) -> int:
        return self.info.world_size * self.cfg.batch_size
