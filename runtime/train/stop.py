"""Ctrl-C and SIGTERM: finish the current step, save, exit 130 with the resume command."""

from __future__ import annotations

import shlex
import signal
import threading
from typing import Any

import torch

from runtime.plumbing.distributed import DistInfo, all_reduce_sum


class StopRequest:
    """Ctrl-C / SIGTERM handler: the first signal asks the loop to stop after the current step;
    a second one raises KeyboardInterrupt at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopRequest:
        if threading_is_main():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def threading_is_main() -> bool:
    return threading.current_thread() is threading.main_thread()


def should_stop(stop: StopRequest, info: DistInfo, at_log: bool, is_cuda: bool) -> bool:
    """Ctrl-C is acted on between steps: every step on one CPU process, at log points on CUDA,
    and under torchrun at log points by agreement of all ranks."""
    if info.enabled:
        if not at_log:
            return False
        flag = torch.tensor([1 if stop.requested else 0], dtype=torch.int32)
        if is_cuda:
            flag = flag.cuda()
        return bool(all_reduce_sum(flag, info).item())
    return stop.requested and (at_log or not is_cuda)


def resume_hint(info: DistInfo, out: Any) -> str:
    """The command that continues the run in `out`, quoted for a POSIX shell (a folder name with
    a space, a quote or non-ASCII letters stays one argument)."""
    launcher = (f"torchrun --nproc_per_node={info.world_size} -m runtime.train"
                if info.enabled else "python -m runtime.train")
    return f"{launcher} --out {shlex.quote(str(out))} --resume"
