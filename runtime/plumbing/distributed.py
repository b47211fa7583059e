"""Multi-process training with torchrun and DistributedDataParallel.

`torchrun --nproc_per_node=N -m runtime.train ...` starts N processes with RANK, WORLD_SIZE,
LOCAL_RANK and MASTER_ADDR/PORT in the environment; `init_distributed` reads them and joins the
process group (gloo on CPU, NCCL on CUDA, one GPU per process: cuda:LOCAL_RANK). Without those
variables it returns a single-process `DistInfo` and touches nothing.

How the data is split (exact world-size invariance): every rank holds the same seeded generators.
Each step, every rank draws the same *global* batch from them (world_size × batch_size data
indices, times t and noise tensors) and keeps its own slice r: rows r·b .. (r+1)·b − 1. So each rank
gets its own disjoint shard of every global batch and its own slice of the random stream, and DDP's
gradient average over ranks equals the gradient of the global batch: a run on N processes with
batch b follows, up to float summation order, the run on one process with batch N·b.

Only rank 0 (`DistInfo.is_main`) logs, draws the progress bar, writes artifacts and checkpoints.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, global_batch: torch.Tensor, per_rank: int) -> torch.Tensor:
        """This rank's slice of a global batch. Shapes: (world_size·b, …) -> (b, …)."""
        return global_batch[self.rank * per_rank:(self.rank + 1) * per_rank]


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def env_info() -> DistInfo:
    """The rank layout from torchrun's environment (single process when absent)."""
    if not launched_by_torchrun():
        return DistInfo()
    return DistInfo(rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                    local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def init_distributed(device_type: str, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group when launched by torchrun with WORLD_SIZE > 1."""
    info = env_info()
    if not info.enabled or (dist.is_available() and dist.is_initialized()):
        return info
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this PyTorch build")
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size,
                            timeout=datetime.timedelta(seconds=timeout_s))
    return info


def device_for(info: DistInfo, device_type: str) -> torch.device:
    """cuda:LOCAL_RANK under torchrun on CUDA, else the plain device."""
    if device_type == "cuda":
        return torch.device("cuda", info.local_rank if info.enabled else torch.cuda.current_device())
    return torch.device(device_type)


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum `tensor` over ranks in place (no-op for one process)."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_min(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return tensor


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
