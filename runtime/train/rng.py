"""The random streams of a training run.

Every random number comes from an explicit `torch.Generator` seeded from (--seed, stream id):
one stream each for the initial weights, the data order, t, the noise, the label dropout and
the artifacts' samples; nothing reads or sets a global seed. On the CPU a run is therefore
reproducible bit for bit, and a resumed run continues each stream where it stopped (the
checkpoint stores the generators' states and the position in the current epoch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from runtime.plumbing.checkpoint import CheckpointError

# Streams of random numbers, each with its own generator seeded from (--seed, stream id).
STREAM_INIT, STREAM_DATA, STREAM_T, STREAM_NOISE, STREAM_SAMPLE, STREAM_QUALITY = range(6)
STREAM_LABEL = 6


def stream_seed(seed: int, stream: int) -> int:
    """A 63-bit seed for stream `stream` of run seed `seed` (independent streams, any seed)."""
    words = np.random.SeedSequence([seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF, stream]
                                   ).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def make_generator(seed: int, stream: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream))


class EpochSampler:
    """Data indices in seeded epoch permutations: each image once per epoch; a batch that runs
    past the end of an epoch continues into the next permutation. Its state is checkpointed."""

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n = n
        self.generator = generator
        self.perm: torch.Tensor | None = None
        self.pos = 0

    def next(self, k: int) -> torch.Tensor:
        """The next k indices. Shapes: -> (k,) int64 (CPU)."""
        parts = []
        while k > 0:
            if self.perm is None or self.pos >= self.n:
                self.perm = torch.randperm(self.n, generator=self.generator)
                self.pos = 0
            take = min(k, self.n - self.pos)
            parts.append(self.perm[self.pos:self.pos + take])
            self.pos += take
            k -= take
        return torch.cat(parts)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "perm": self.perm, "pos": self.pos,
                "n": self.n}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["n"]) != self.n:
            raise CheckpointError(f"the checkpoint's data order covers {state['n']} training "
                                  f"images, this run has {self.n}")
        self.generator.set_state(state["generator"])
        self.perm = state["perm"]
        self.pos = int(state["pos"])


@dataclass
class Streams:
    """The generators the loop draws from each step: the data order, t ~ U{1..T}, the noise
    ε ~ N(0, I) (on the device) and, for a class-conditional run, the label dropout."""

    data: EpochSampler
    t: torch.Generator
    noise: torch.Generator
    label: torch.Generator | None

    @classmethod
    def create(cls, seed: int, n_train: int, device: torch.device, labels: bool) -> Streams:
        return cls(data=EpochSampler(n_train, make_generator(seed, STREAM_DATA)),
                   t=make_generator(seed, STREAM_T),
                   noise=make_generator(seed, STREAM_NOISE, device),
                   label=make_generator(seed, STREAM_LABEL) if labels else None)

    def state_dict(self) -> dict[str, Any]:
        return {"data": self.data.state_dict(), "t": self.t.get_state(),
                "noise": self.noise.get_state(),
                **({"label": self.label.get_state()} if self.label is not None else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.data.load_state_dict(state["data"])
        self.t.set_state(state["t"])
        self.noise.set_state(state["noise"])
        if self.label is not None:
            self.label.set_state(state["label"])


def init_parameters(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Re-initialise every Conv2d/Linear like torch's default (weights and biases uniform in
    ±1/sqrt(fan_in)) and GroupNorm to (1, 0), drawing from `generator` instead of the global RNG.
    """
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = sub.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in)
                sub.weight.uniform_(-bound, bound, generator=generator)
                if sub.bias is not None:
                    sub.bias.uniform_(-bound, bound, generator=generator)
            elif isinstance(sub, torch.nn.GroupNorm) and sub.affine:
                sub.weight.fill_(1.0)
                sub.bias.fill_(0.0)
            elif isinstance(sub, torch.nn.Embedding):  # the conditional net's label embedding
                bound = 1.0 / math.sqrt(sub.weight.shape[1])
                sub.weight.uniform_(-bound, bound, generator=generator)
