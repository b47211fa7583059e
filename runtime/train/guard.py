"""The guard around the update: what a step's loss and finite flag add to the log, and when a
run of non-finite steps stops the run.

A non-finite loss or gradient never reaches the weights (`runtime.train_step.GuardedUpdate`:
on the CPU the step is not taken; on CUDA fused Adam gets `found_inf` and the EMA weight is
multiplied by the finite flag, so the hot loop never syncs). `Accumulators` keeps the loss sums
and the skip counts on the device between host syncs; `log_point` turns them into one point of
the loss curve; after `MAX_CONSECUTIVE_NONFINITE` skips in a row the run stops (exit status 2).
"""

from __future__ import annotations

from typing import Any

import torch

from runtime.plumbing.distributed import DistInfo, all_reduce_sum

MAX_CONSECUTIVE_NONFINITE = 5


class Accumulators:
    """Loss sums kept on the device between host syncs.

    interval: sum and count of per-sample losses since the last log point, overall and per
    time quartile (the objective's `quartile`: q holds t in ((q·T/4), (q+1)·T/4], or σ in
    [q/4, (q+1)/4)); skips: total skipped steps,
    current run of consecutive skips and the longest run since the last sync.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.loss_count = torch.zeros((), dtype=torch.float64, device=device)
        self.q_sum = torch.zeros(4, dtype=torch.float64, device=device)
        self.q_count = torch.zeros(4, dtype=torch.float64, device=device)
        self.skipped = torch.zeros((), dtype=torch.int64, device=device)
        self.consecutive = torch.zeros((), dtype=torch.int64, device=device)
        self.max_consecutive = torch.zeros((), dtype=torch.int64, device=device)

    def add(self, per_sample: torch.Tensor, quartile: torch.Tensor,
            finite: torch.Tensor) -> None:
        """per_sample (B,) losses, quartile (B,) int64 in 0..3, finite 0-d bool."""
        per_sample = torch.where(finite, per_sample.detach().to(torch.float64), 0.0)
        weight = torch.ones_like(per_sample) * finite
        self.loss_sum += per_sample.sum()
        self.loss_count += weight.sum()
        self.q_sum.index_add_(0, quartile, per_sample)
        self.q_count.index_add_(0, quartile, weight)
        not_finite = (~finite).to(torch.int64)
        self.skipped += not_finite
        self.consecutive.mul_(not_finite).add_(not_finite)
        torch.maximum(self.max_consecutive, self.consecutive, out=self.max_consecutive)

    def sums(self) -> torch.Tensor:
        return torch.cat([self.loss_sum[None], self.loss_count[None], self.q_sum, self.q_count])

    def reset_interval(self) -> None:
        for tensor in (self.loss_sum, self.loss_count, self.q_sum, self.q_count):
            tensor.zero_()
        self.max_consecutive.copy_(self.consecutive)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in vars(self).items()
                if isinstance(v, torch.Tensor)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for key, value in state.items():
            getattr(self, key).copy_(value.to(self.device))


def log_point(acc: Accumulators, info: DistInfo, step: int) -> dict[str, Any]:
    """The curve point of the interval since the last one (a host sync; summed over ranks):
    mean loss, mean loss per timestep quartile (None where no finite sample fell), skips so far.
    The accumulators are not reset here (`Accumulators.reset_interval`)."""
    sums = all_reduce_sum(acc.sums(), info).cpu().tolist()
    loss_sum, loss_count, q_sum, q_count = sums[0], sums[1], sums[2:6], sums[6:10]
    return {"step": step,
            "loss": loss_sum / loss_count if loss_count else None,
            "quartile_loss": [s / c if c else None for s, c in zip(q_sum, q_count, strict=True)],
            "skipped": int(acc.skipped)}


def too_many_skips(acc: Accumulators) -> bool:
    """MAX_CONSECUTIVE_NONFINITE or more steps in a row were skipped (a host sync)."""
    return int(acc.max_consecutive) >= MAX_CONSECUTIVE_NONFINITE


def skip_run_message(acc: Accumulators, step: int, ckpt_path: Any) -> str:
    return (f"{int(acc.max_consecutive)} optimiser steps in a row had a non-finite loss or "
            f"gradient (last at step {step}); stopped. Try a smaller --lr; the last good state "
            f"is in {ckpt_path}")
