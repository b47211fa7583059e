"""What `--fast-kernels` turns on: chosen per machine, by a rule and a measurement.

The same flag must never make a run slower than plain fp32 on the machine it runs on, and what
pays differs from machine to machine: bf16 autocast pays only on CPUs with native bf16 arithmetic
(AVX-512 BF16 or AMX; elsewhere oneDNN emulates it, and the default model trained 10× slower on a
2-core AVX2 EPYC), channels_last pays on some shapes and not on others.

On the CPU:

    1. candidates: fp32 (the baseline, always present) and channels_last; bf16 autocast and
       bf16 + channels_last only when /proc/cpuinfo lists avx512_bf16 or amx_bf16 (the rule);
    2. each candidate runs forward + backward passes of a copy of the run's own model on one
       batch of the run's shape, round-robin after one warm-up round (so a drift of the
       machine's speed hits every candidate alike), at least `PROBE_ITERS` rounds and until the
       probe has run `PROBE_SECONDS` (at most `PROBE_MAX_ROUNDS`: a small model's passes are
       short and noisy, so it gets more of them), with a generator of its own (the run's random
       streams are not touched);
    3. the fastest median wins, but only by a margin: a candidate must beat fp32 by `MARGIN` to be
       chosen, so noise never buys a slower run.

On CUDA: TF32 matmuls, bf16 autocast and torch.compile (not probed: compilation takes longer than
a short probe could measure; the GPU check in `make gpu-check` measures it).

The choice is printed at start-up and recorded in `train_log.json` ("fast_kernels"). A
`--fast-kernels` run is reproducible bit for bit only under the same choice.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

PROBE_ITERS = 5
PROBE_SECONDS = 2.0
PROBE_MAX_ROUNDS = 40
MARGIN = 0.05  # a candidate must be at least 5 % faster than fp32 to replace it


@dataclass(frozen=True)
class KernelChoice:
    """The kernels a run uses, and why."""

    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    tf32: bool = False
    reason: str = "fp32 (--fast-kernels not given)"
    probe_ms: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        parts = [p for p, on in (("bf16", self.bf16), ("channels_last", self.channels_last),
                                 ("compile", self.compile), ("tf32", self.tf32)) if on]
        return " + ".join(parts) or "fp32"

    def as_log(self) -> dict:
        return {"chosen": self.name, **asdict(self)}


FP32 = KernelChoice()
CANDIDATES = {
    "fp32": (False, False),
    "channels_last": (False, True),
    "bf16": (True, False),
    "bf16 + channels_last": (True, True),
}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is missing, e.g. not Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16(flags: set[str]) -> bool:
    """Whether the CPU computes bf16 natively (the rule; emulated bf16 is slower than fp32)."""
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def cpu_candidates(flags: set[str]) -> list[str]:
    return [n for n, (bf16, _) in CANDIDATES.items() if not bf16 or native_bf16(flags)]


def pick(medians_s: dict[str, float], margin: float = MARGIN) -> str:
    """The fastest candidate, unless it beats fp32 by less than `margin` (then fp32)."""
    best = min(medians_s, key=medians_s.__getitem__)
    if medians_s[best] < (1.0 - margin) * medians_s["fp32"]:
        return best
    return "fp32"


def _probe_step(model: torch.nn.Module, x: torch.Tensor, t_norm: torch.Tensor, bf16: bool,
                channels_last: bool) -> Callable[[], None]:
    m = copy.deepcopy(model)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    target = torch.flip(x, dims=(0,))  # contiguous, as the run's targets are

    def step() -> None:
        # as runtime.train_step does it: the batch arrives contiguous and is converted per
        # step, and the loss mixes the output with a contiguous target
        xin = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = m(xin, t_norm)
        (out.float() - target).square().mean().backward()
        m.zero_grad(set_to_none=True)

    return step


def probe_cpu(model: torch.nn.Module, shape: tuple[int, int, int, int], names: list[str],
              iters: int = PROBE_ITERS, seconds: float = PROBE_SECONDS,
              max_rounds: int = PROBE_MAX_ROUNDS) -> dict[str, float]:
    """Median seconds of a forward + backward per candidate, timed round-robin: at least `iters`
    rounds, more until `seconds` have passed, at most `max_rounds`."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    t_norm = torch.rand(shape[0], generator=g)
    steps = {n: _probe_step(model, x, t_norm, *CANDIDATES[n]) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    start, round_ = time.perf_counter(), 0
    while round_ <= iters or (round_ <= max_rounds and time.perf_counter() - start < seconds):
        for n, step in steps.items():
            t0 = time.perf_counter()
            step()
            if round_:  # round 0 warms up
                times[n].append(time.perf_counter() - t0)
        round_ += 1
    return {n: statistics.median(ts) for n, ts in times.items()}


def choose(enabled: bool, device: torch.device, model: torch.nn.Module,
           shape: tuple[int, int, int, int], flags: set[str] | None = None) -> KernelChoice:
    """What a run with (or without) --fast-kernels uses on `device`; see the module docstring."""
    if not enabled:
        return FP32
    if device.type == "cuda":
        return KernelChoice(bf16=True, compile=True, tf32=True,
                            reason="CUDA: TF32 + bf16 autocast + torch.compile (not probed)")
    if device.type != "cpu":
        return KernelChoice(reason=f"fp32 (no fast kernels known for {device.type})")
    flags = cpu_flags() if flags is None else flags
    names = cpu_candidates(flags)
    medians = probe_cpu(model, shape, names)
    best = pick(medians)
    bf16, channels_last = CANDIDATES[best]
    rule = ("native bf16 (avx512_bf16/amx_bf16)" if native_bf16(flags)
            else "no native bf16 on this CPU, bf16 not tried")
    timing = ", ".join(f"{n} {1e3 * s:.1f} ms" for n, s in medians.items())
    return KernelChoice(bf16=bf16, channels_last=channels_last,
                        reason=f"CPU probe, {rule}: {timing} per forward+backward; "
                        f"chose {best} (needs ≥{MARGIN:.0%} over fp32)",
                        probe_ms={n: round(1e3 * s, 3) for n, s in medians.items()})


def configure_tf32(choice: KernelChoice) -> None:
    """Allow TF32 matmuls and convolutions on CUDA when the choice says so."""
    if not choice.tf32:
        return
    try:
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
    except AttributeError:  # older PyTorch
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def common_choice(choice: KernelChoice, min_over_ranks: Callable[[int], int]) -> KernelChoice:
    """Under torchrun every rank probes alone; all take the most conservative CPU choice (the
    lowest of `CANDIDATES`, fp32 first), so the ranks compute the same arithmetic."""
    names = list(CANDIDATES)
    mine = next(n for n, bc in CANDIDATES.items()
                if bc == (choice.bf16, choice.channels_last))
    agreed = names[min_over_ranks(names.index(mine))]
    if agreed == mine:
        return choice
    bf16, channels_last = CANDIDATES[agreed]
    return KernelChoice(bf16=bf16, channels_last=channels_last, probe_ms=choice.probe_ms,
                        reason=f"{choice.reason}; ranks agreed on {agreed}")
