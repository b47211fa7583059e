"""`python -m runtime.train`: train an ε-predictor (DDPM, Ho et al. 2020, Algorithm 1).

Each step (one process; see `runtime.distributed` for torchrun):

    1. idx ← the next B indices of a seeded epoch permutation of the training set
    2. t ~ U{1..T} per sample, ε ~ N(0, I)                         (seeded generators)
    3-4. runtime.train_step.train_step(sched, model, update, x01, t, ε): x0 = 2·x01 − 1, the loss
       of the model's prediction type (runtime.loss.prediction_loss with --prediction and
       --min-snr-gamma; for the default ε-model without γ it is DDPM Eq. 14), backward; if the
       loss and every gradient are finite: Adam step and EMA update, else the step is skipped
       (parameters, Adam state and EMA are left as they were). That function is the
       conformance-checked twin of spec.train.train_step. A class-conditional model also gets
       the labels, each replaced by the null label with probability --label-dropout.

Randomness: every random number comes from an explicit `torch.Generator` seeded from `--seed`
(one stream each for the initial weights, the data order, t, the noise and the artifacts' samples);
nothing reads or sets a global seed. On the CPU a run is therefore reproducible bit for bit, and a
run interrupted and resumed (`--resume`) ends bit-identical to an uninterrupted one: the checkpoint
stores the generators' states, the position in the current epoch and Adam's state.

Skipped steps: a non-finite loss or gradient never reaches the weights (`GuardedUpdate`). On the
CPU the step is simply not taken; on CUDA it is decided without a host sync (fused Adam is given
`found_inf`, the flag torch.amp.GradScaler uses, and skips its update on the device; EMA's weight
is multiplied by the finite flag), so the CUDA hot loop never calls `.item()`. Both paths give the same bits. Skips are counted in the log; after
`MAX_CONSECUTIVE_NONFINITE` skips in a row the run stops with exit status 2.

Host syncs: on CUDA the loop syncs only every `--log-every` steps (loss curve, progress bar, the
consecutive-skip check, Ctrl-C). On the CPU a sync costs nothing and Ctrl-C is checked each step.

Ctrl-C (or SIGTERM) finishes the current step, writes OUT/checkpoint.pt and exits with status 130
and a line telling how to resume. A second Ctrl-C stops at once (the last checkpoint stays).

Artifacts (rank 0, in --out): checkpoint.pt, train_log.json, loss.png, samples.png (DDIM,
`--sample-steps`, `--eta`, clipped x̂0, EMA weights when on), reference.png (held-out test
images), noisy.png (them at t = --reconstruct-step) and reconstruct.png (DDIM with clipped x̂0 from
there back to t = 0, as in TorchLean), and the PPM files asked for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runtime.artifacts import image_grid, save_json, save_loss_plot, save_png, save_ppm
from runtime.atomic import temp_path
from runtime.checkpoint import (
    CheckpointError,
    build_model,
    load_checkpoint,
    load_state_dict_checked,
    model_spec,
    save_checkpoint,
    schedule_betas,
)
from runtime.cli import EXIT_STATUS_HELP, UserError, fail, run_main
from runtime.config import (
    IDENTITY_DEFAULTS,
    TRAINING_IDENTITY,
    ConfigError,
    TrainConfig,
    flag_of,
    parse_config,
)
from runtime.data.datasets import load_dataset
from runtime.data.transforms import from_diffusion_range, to_diffusion_range
from runtime.ddim import ddim_sample_strided, ddim_timesteps
from runtime.distributed import (
    DistInfo,
    all_reduce_min,
    all_reduce_sum,
    barrier,
    cleanup,
    device_for,
    env_info,
    init_distributed,
)
from runtime.fast_kernels import choose as choose_kernels
from runtime.fast_kernels import common_choice, configure_tf32
from runtime.forward import q_sample
from runtime.guidance import GuidedModel
from runtime.lr_schedule import lr_factor, set_lr
from runtime.runlock import run_lock
from runtime.schedule import Schedule
from runtime.train_step import (  # noqa: F401 (twins of spec.train, re-exported)
    GuardedUpdate,
    adam_step,
    all_finite,
    ema_update,
    train_loss,
    train_step,
)

MAX_CONSECUTIVE_NONFINITE = 5
# Settings of the machine and terminal at hand: never taken from a checkpoint on --resume.
SESSION_FIELDS = frozenset({"device", "fast_kernels", "progress", "out", "resume"})
CHECKPOINT_NAME = "checkpoint.pt"
# Streams of random numbers, each with its own generator seeded from (--seed, stream id).
STREAM_INIT, STREAM_DATA, STREAM_T, STREAM_NOISE, STREAM_SAMPLE, STREAM_QUALITY = range(6)
STREAM_LABEL = 6

DESCRIPTION = """\
Train a DDPM ε-predictor and write a run folder: checkpoint.pt, train_log.json, loss.png,
samples.png (DDIM), reference.png, noisy.png and reconstruct.png.

With no flags: the embedded 8x8 digits, the FiLM net, cosine betas, T = 1000, EMA; a few
minutes on two CPU cores."""

EPILOG = """\
examples:
  python -m runtime.train                                   # the default run
  python -m runtime.train --out runs/d --steps 4000 --resume  # continue runs/d up to step 4000
  python -m runtime.train --dataset cifar10 --data-dir data/cifar10 --cuda --fast-kernels
  torchrun --nproc_per_node=2 -m runtime.train --batch-size 64 --out runs/ddp  # 2 x 64 a step

Under torchrun --batch-size is per process; every process draws the same global batch from the
shared seeded generators and trains on its own slice, so N processes x batch b follow one
process x batch N*b. Errors in the input end with one line `error: ...` and exit status 2.

One run folder, one trainer: the run holds OUT/.lock from start to end (under torchrun, rank 0
holds it); another trainer on that folder, --resume included, stops at once with exit status 2
and names the holder (pid, host, start time). A folder left by kill -9 is free again at once.

""" + EXIT_STATUS_HELP


# --------------------------------------------------------------------------- randomness


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


# --------------------------------------------------------------------------- the update


class Accumulators:
    """Loss sums kept on the device between host syncs.

    interval: sum and count of per-sample losses since the last log point, overall and per
    timestep quartile (quartile q holds t in ((q·T/4), (q+1)·T/4]); skips: total skipped steps,
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

    def add(self, per_sample: torch.Tensor, t: torch.Tensor, T: int,
            finite: torch.Tensor) -> None:
        per_sample = torch.where(finite, per_sample.detach().to(torch.float64), 0.0)
        weight = torch.ones_like(per_sample) * finite
        quartile = torch.clamp((t - 1) * 4 // T, 0, 3)
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


# --------------------------------------------------------------------------- the run


@dataclass
class RunState:
    """What a run carries from step to step (and into the checkpoint)."""

    step: int
    history: list[dict[str, Any]]
    train_time_s: float


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but torch.cuda.is_available() is False "
                          "(use --device cpu or auto)")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def default_out_dir(dataset: str) -> Path:
    return Path("runs") / f"{dataset}-{datetime.datetime.now():%Y%m%d-%H%M%S}"


def merge_resume_config(cfg: TrainConfig, explicit: set[str], stored: dict[str, Any],
                        ckpt_path: Path) -> TrainConfig:
    """The config of a resumed run: flags given now win, every other value is the checkpoint's,
    except the settings of this session's hardware and terminal (SESSION_FIELDS), which are
    always this command's. A flag given now that changes what is trained (TRAINING_IDENTITY)
    is an error.
    """
    names = {f.name for f in dataclasses.fields(TrainConfig)} - SESSION_FIELDS
    stored = {**IDENTITY_DEFAULTS, **stored}  # an old checkpoint: the values it was trained with
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


def to_device_data(x01: np.ndarray, device: torch.device) -> torch.Tensor:
    """Training images in [0, 1] (float32; `train_step` maps each batch to [-1, 1]), on the
    device when they fit comfortably, else pinned host memory (copied per batch with
    non_blocking=True)."""
    x = torch.from_numpy(np.array(x01, dtype=np.float32, copy=True))
    if device.type == "cuda" and x.numel() * 4 > (1 << 30):
        return x.pin_memory()
    return x.to(device)


def train(cfg: TrainConfig, explicit: set[str] | frozenset[str] = frozenset(), *,
          on_step: Callable[[int], None] | None = None, data=None) -> Path:
    """Run training as configured; return the run folder. Raises UserError for bad input.

    `on_step(step)` is called after each finished step (tests use it); `data` replaces the data
    set loader with `(train Dataset, test Dataset)` (tests).
    """
    t_start = time.perf_counter()
    info = env_info()
    resolve_device(cfg.device)  # an unusable --device is an error before anything else

    # 1. Where the run goes. Rank 0 owns the folder (OUT/.lock, `runtime.runlock`) for the whole
    # run, from before the checkpoint is read; a second trainer on it stops with exit status 2.
    out = Path(cfg.out) if cfg.out is not None else default_out_dir(cfg.dataset)
    if info.enabled and cfg.out is None:
        fail("under torchrun give --out DIR (each process must agree on the run folder)")
    with run_lock(out) if info.is_main else contextlib.nullcontext():
        return _train_owned(cfg, explicit, info, out, t_start, on_step, data)


def _train_owned(cfg: TrainConfig, explicit: set[str] | frozenset[str], info: DistInfo,
                 out: Path, t_start: float, on_step: Callable[[int], None] | None, data) -> Path:
    # What the run continues from (validated before anything but the lock is written).
    ckpt_path = out / CHECKPOINT_NAME
    payload = None
    if cfg.resume:
        payload = load_checkpoint(ckpt_path)
        cfg = merge_resume_config(cfg, set(explicit), payload["config"], ckpt_path)
        if payload["step"] > cfg.steps:
            fail(f"{ckpt_path} is at step {payload['step']}, past --steps {cfg.steps}; "
                 "give a larger --steps to continue")
    elif ckpt_path.exists():
        fail(f"{ckpt_path} exists; use --resume to continue that run or choose another --out")
    for flag, path in (("--log", cfg.log), ("--sample-ppm", cfg.sample_ppm),
                       ("--reference-ppm", cfg.reference_ppm), ("--noisy-ppm", cfg.noisy_ppm),
                       ("--reconstruct-ppm", cfg.reconstruct_ppm)):
        check_writable_file(flag, path, out)

    device_type = resolve_device(cfg.device).type
    # 2. Data.
    if data is None:
        data_dir = cfg.data_dir
        train_set = load_dataset(cfg.dataset, data_dir, split="train")
        test_set = load_dataset(cfg.dataset, data_dir, split="test")
    else:
        train_set, test_set = data
    n_available = len(train_set.x)
    if cfg.n_total is not None and cfg.n_total > n_available:
        fail(f"--n-total {cfg.n_total} exceeds the {n_available} training images of "
             f"{cfg.dataset}")
    train_x = train_set.x if cfg.n_total is None else train_set.x[:cfg.n_total]
    C, H, W = (int(v) for v in train_x.shape[1:])
    global_batch = info.world_size * cfg.batch_size
    if payload is not None:
        derived = payload["config"]["derived"]
        if derived.get("global_batch") != global_batch:
            fail(f"{ckpt_path} was trained with a global batch of {derived.get('global_batch')} "
                 f"(world size x --batch-size), this run has {info.world_size} x "
                 f"{cfg.batch_size} = {global_batch}")
        if list(derived.get("image_shape", [])) != [C, H, W]:
            fail(f"{ckpt_path} was trained on images of shape {derived.get('image_shape')}, "
                 f"the data now have {[C, H, W]}")

    # 3. The run folder (rank 0 creates it; nothing was written before this point).
    if info.is_main:
        prepare_out_dir(out)

    info = init_distributed(device_type)
    try:
        result = _train(cfg, info, out, payload, train_x, test_set, t_start, on_step, train_set)
        # The other ranks wait for rank 0's checkpoint and artifacts, so that no process
        # tears down its side of the process group while a peer still holds it open.
        barrier(info)
        return result
    finally:
        cleanup(info)


def _train(cfg: TrainConfig, info: DistInfo, out: Path, payload: dict[str, Any] | None,
           train_x: np.ndarray, test_set, t_start: float,
           on_step: Callable[[int], None] | None, train_set=None) -> Path:
    device = device_for(info, resolve_device(cfg.device).type)
    is_cuda = device.type == "cuda"
    n_train, C, H, W = (int(v) for v in train_x.shape)
    b, global_batch = cfg.batch_size, info.world_size * cfg.batch_size
    ckpt_path = out / CHECKPOINT_NAME
    say = (lambda msg: print(msg, flush=True)) if info.is_main else (lambda msg: None)
    say(f"run folder: {out}")

    # Model, schedule, optimiser, EMA, generators.
    betas = schedule_betas(cfg.schedule, cfg.T, cfg.beta_start, cfg.beta_end,
                           cfg.zero_terminal_snr)
    sched = Schedule(betas, dtype=torch.float32, device=device)
    train_y = None if train_set is None else (
        train_set.y if cfg.n_total is None else train_set.y[:cfg.n_total])
    num_classes = 0
    if cfg.class_conditional:
        if train_y is None or len(train_y) == 0:
            fail("--class-conditional needs the training labels (train_y.npy)")
        num_classes = int(np.max(train_y)) + 1
        labels_all = torch.from_numpy(np.array(train_y, dtype=np.int64))  # a writable copy
        label_gen = make_generator(cfg.seed, STREAM_LABEL)
    mspec = model_spec(cfg.model, C, cfg.hidden_c, cfg.residual_blocks, cfg.prediction,
                       num_classes)
    model = build_model(mspec)
    init_parameters(model, make_generator(cfg.seed, STREAM_INIT))
    kernels = choose_kernels(cfg.fast_kernels, device, model, (b, C, H, W))
    if info.enabled and kernels.probe_ms:
        kernels = common_choice(kernels, lambda i: int(all_reduce_min(
            torch.tensor([i], dtype=torch.int64, device=device), info).item()))
    if cfg.fast_kernels:
        say(f"fast kernels: {kernels.name} ({kernels.reason})")
    configure_tf32(kernels)
    if kernels.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = model.to(device)
    update = GuardedUpdate(model, cfg.lr, cfg.ema_decay, device)
    sampler = EpochSampler(n_train, make_generator(cfg.seed, STREAM_DATA))
    t_gen = make_generator(cfg.seed, STREAM_T)
    noise_gen = make_generator(cfg.seed, STREAM_NOISE, device)
    acc = Accumulators(device)
    state = RunState(step=0, history=[], train_time_s=0.0)

    if payload is not None:
        load_state_dict_checked(model, payload["model"], "model", ckpt_path)
        try:
            update.optimizer.load_state_dict(payload["optimizer"])
            if update.ema is not None:
                if payload.get("ema") is None:
                    raise CheckpointError(f"{ckpt_path} has no EMA weights")
                update.load_ema_state_dict(model, payload["ema"])
            sampler.load_state_dict(payload["rng"]["data"])
            t_gen.set_state(payload["rng"]["t"])
            noise_gen.set_state(payload["rng"]["noise"])
            if cfg.class_conditional:
                label_gen.set_state(payload["rng"]["label"])
            acc.load_state_dict(payload["history"]["accumulators"])
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{ckpt_path}: training state does not match this run "
                                  f"({str(exc).splitlines()[0][:160]})") from exc
        state = RunState(step=int(payload["step"]), history=list(payload["history"]["curve"]),
                         train_time_s=float(payload["history"].get("train_time_s", 0.0)))
        say(f"resuming from step {state.step} of {cfg.steps}")

    derived = {"model": mspec, "betas": betas, "image_shape": [C, H, W], "n_train": n_train,
               "global_batch": global_batch, "world_size": info.world_size,
               "dataset": cfg.dataset, "data_dir": cfg.data_dir}

    def save(reason: str) -> None:
        if not info.is_main:
            return
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(),
            "ema": update.ema_state_dict(model),
            "optimizer": update.optimizer.state_dict(),
            "step": state.step,
            "config": {**dataclasses.asdict(cfg), "derived": derived},
            "rng": {"data": sampler.state_dict(), "t": t_gen.get_state(),
                    "noise": noise_gen.get_state(),
                    **({"label": label_gen.get_state()} if cfg.class_conditional else {})},
            "history": {"curve": state.history, "accumulators": acc.state_dict(),
                        "train_time_s": state.train_time_s, "saved_because": reason},
        })

    # The model as the loss sees it: DDP, compile, channels_last, autocast.
    train_model: torch.nn.Module = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[device.index] if is_cuda
                                              else None)
    if kernels.compile:
        train_model = torch.compile(train_model)
    channels_last = kernels.channels_last
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=kernels.bf16)
    data_x = to_device_data(train_x, device)
    T = cfg.T

    reduce_finite = ((lambda f: all_reduce_min(f.to(torch.int32), info).bool())
                     if info.enabled else None)

    def one_step() -> None:
        # 1. this rank's slice of the global batch: indices, t ~ U{1..T}, ε ~ N(0, I)
        idx = info.shard(sampler.next(global_batch), b)
        t = info.shard(torch.randint(1, T + 1, (global_batch,), generator=t_gen), b)
        noise = info.shard(torch.randn((global_batch, C, H, W), generator=noise_gen,
                                       device=noise_gen.device), b).to(device)
        if data_x.is_pinned():  # large data on the host: gather into pinned memory, async copy
            staged = torch.empty((b, C, H, W), dtype=data_x.dtype, pin_memory=True)
            x01 = torch.index_select(data_x, 0, idx, out=staged).to(device, non_blocking=True)
        else:
            x01 = data_x[idx.to(data_x.device)]
        t = t.to(device, non_blocking=True)
        model_args: tuple[torch.Tensor, ...] = ()
        if cfg.class_conditional:  # labels, the null label with probability --label-dropout
            labels = labels_all[idx]
            drop = info.shard(torch.rand(global_batch, generator=label_gen), b)
            model_args = (torch.where(drop < cfg.label_dropout, num_classes, labels).to(device),)
        # 2. the step spec.train.train_step describes (conformance-checked: runtime.train_step),
        #    at this step's learning rate (runtime.lr_schedule)
        set_lr(update.optimizer, cfg.lr * lr_factor(state.step, cfg.steps, cfg.lr_schedule,
                                                    cfg.warmup_steps))
        result = train_step(sched, train_model, update, x01, t, noise, autocast=autocast,
                            channels_last=channels_last, reduce_finite=reduce_finite,
                            prediction=cfg.prediction, min_snr_gamma=cfg.min_snr_gamma,
                            model_args=model_args)
        acc.add(result.per_sample, t, T, result.finite)

    def sync_point() -> None:
        """Host sync: record a curve point, update the bar, check the skip run."""
        sums = all_reduce_sum(acc.sums(), info).cpu().tolist()
        loss_sum, loss_count, q_sum, q_count = sums[0], sums[1], sums[2:6], sums[6:10]
        skipped = int(acc.skipped)
        if int(acc.max_consecutive) >= MAX_CONSECUTIVE_NONFINITE:
            save("non-finite")
            raise UserError(
                f"{int(acc.max_consecutive)} optimiser steps in a row had a non-finite loss or "
                f"gradient (last at step {state.step}); stopped. Try a smaller --lr; the last "
                f"good state is in {ckpt_path}" if info.is_main else "non-finite loss")
        entry = {"step": state.step,
                 "loss": loss_sum / loss_count if loss_count else None,
                 "quartile_loss": [s / c if c else None for s, c in zip(q_sum, q_count,
                                                                       strict=True)],
                 "skipped": skipped}
        state.history.append(entry)
        acc.reset_interval()
        if bar is not None and entry["loss"] is not None:
            bar.set_postfix(loss=f"{entry['loss']:.4f}", skipped=skipped, refresh=False)

    from tqdm import tqdm

    show = info.is_main and cfg.progress
    bar = tqdm(total=cfg.steps, initial=state.step, desc="train", unit="step",
               dynamic_ncols=True, disable=not show, file=sys.stderr) if show else None
    model.train()
    interrupted = False
    loop_start = first_loop_start = time.perf_counter()
    start_step = state.step
    with StopRequest() as stop:
        try:
            while state.step < cfg.steps:
                one_step()
                state.step += 1
                if bar is not None:
                    bar.update(1)
                at_log = state.step % cfg.log_every == 0 or state.step == cfg.steps
                if at_log:
                    sync_point()
                elif not is_cuda and not info.enabled and int(acc.consecutive) >= \
                        MAX_CONSECUTIVE_NONFINITE:
                    sync_point()  # the CPU checks the skip run every step (a free sync)
                if on_step is not None:
                    on_step(state.step)
                if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 \
                        and state.step < cfg.steps:
                    state.train_time_s += time.perf_counter() - loop_start
                    loop_start = time.perf_counter()
                    save("periodic")
                if _should_stop(stop, info, at_log, is_cuda):
                    interrupted = True
                    break
        finally:
            if bar is not None:
                bar.close()
    state.train_time_s += time.perf_counter() - loop_start
    session_train_s = time.perf_counter() - first_loop_start
    save("interrupted" if interrupted else "finished")
    if interrupted:
        launcher = (f"torchrun --nproc_per_node={info.world_size} -m runtime.train"
                    if info.enabled else "python -m runtime.train")
        say(f"interrupted at step {state.step} of {cfg.steps}; checkpoint saved to {ckpt_path}\n"
            f"resume with: {launcher} --out {out} --resume")
        raise KeyboardInterrupt
    if not info.is_main:
        return out

    # Artifacts (rank 0 only), with the EMA weights when EMA is on.
    t_art = time.perf_counter()
    sample_model = build_model(mspec)
    ema_state = update.ema_state_dict(model)
    sample_model.load_state_dict(ema_state if ema_state is not None else model.state_dict())
    sample_model = sample_model.to(device).eval()
    paths = write_artifacts(cfg, out, sample_model, sched, test_set.x, device)
    artifacts_s = time.perf_counter() - t_art
    quality = None
    n_quality = (min(len(test_set.x) // 2, 256) if cfg.quality_samples is None
                 else cfg.quality_samples)
    if n_quality >= 2 and train_set is not None and len(test_set.x) >= 4:
        from runtime.quality import draw_and_score

        quality = draw_and_score(sample_model, sched, n_quality, cfg.sample_steps,
                                 make_generator(cfg.seed, STREAM_QUALITY, device), device,
                                 train_set, test_set)
    steps_done = state.step - start_step
    last = state.history[-1] if state.history else {}
    notes = {
        "dataset": cfg.dataset, "data_dir": cfg.data_dir, "n_train": n_train,
        "image_shape": [C, H, W], "device": str(device), "world_size": info.world_size,
        "fast_kernels": cfg.fast_kernels, "kernels": kernels.as_log(), "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": cfg.model, "hidden": cfg.hidden_c, "blocks": cfg.residual_blocks,
        "parameters": sum(p.numel() for p in model.parameters()),
        "schedule": cfg.schedule, "T": cfg.T, "beta_start": cfg.beta_start,
        "beta_end": cfg.beta_end, "lr": cfg.lr, "lr_schedule": cfg.lr_schedule,
        "warmup_steps": cfg.warmup_steps, "batch_size": cfg.batch_size,
        "global_batch": global_batch, "ema_decay": cfg.ema_decay, "seed": cfg.seed,
        "steps": cfg.steps, "resumed_from_step": start_step if payload is not None else None,
        "sample_steps": cfg.sample_steps, "eta": cfg.eta, "reconstruct_step": cfg.reconstruct_t,
        "train_time_s": round(state.train_time_s, 3),
        "steps_per_s": round(steps_done / session_train_s, 3) if steps_done else None,
        "artifacts_time_s": round(artifacts_s, 3),
        "wall_time_s": round(time.perf_counter() - t_start, 3),
        "final_loss": last.get("loss"),
        "quartile_loss": last.get("quartile_loss"),
        "quartile_note": "mean ε-MSE of the last log interval for t in (0, T/4], (T/4, T/2], "
                         "(T/2, 3T/4], (3T/4, T]",
        "skipped_steps": last.get("skipped", 0),
        "quality": quality,
    }
    log = {"notes": notes, "curve": state.history, "artifacts": paths}
    save_json(out / "train_log.json", log)
    if cfg.log is not None:
        save_json(cfg.log, log)
    save_loss_plot(out / "loss.png", state.history,
                   title=f"{cfg.dataset}: {cfg.model} net, {cfg.schedule} betas, T={cfg.T}")
    if quality is not None:
        from runtime.quality import format_quality

        say(f"sample quality (Fréchet distance in classifier features): "
            f"{format_quality(quality)}")
    say(f"done: {state.step} steps, final loss {notes['final_loss']}, "
        f"wall time {notes['wall_time_s']:.1f} s; run folder: {out}")
    return out


def _should_stop(stop: StopRequest, info: DistInfo, at_log: bool, is_cuda: bool) -> bool:
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


def write_artifacts(cfg: TrainConfig, out: Path, model: torch.nn.Module, sched: Schedule,
                    test_x: np.ndarray, device: torch.device) -> dict[str, str]:
    """samples.png, reference.png, noisy.png, reconstruct.png (and PPMs when asked)."""
    gen = make_generator(cfg.seed, STREAM_SAMPLE, device)
    n = cfg.n_samples
    C, H, W = (int(v) for v in test_x.shape[1:])
    sample_model, ncol = model, None
    if cfg.class_conditional:  # one row per class (the conditional model alone, s = 1)
        k = model.num_classes
        ncol = max(1, n // k)
        n = ncol * k
        labels = torch.arange(k, device=device).repeat_interleave(ncol)
        sample_model = GuidedModel(model, labels, 1.0)
    with torch.no_grad():
        # Samples: x_T ~ N(0, I), DDIM on the strided grid with clipped x̂0.
        x_T = torch.randn((n, C, H, W), generator=gen, device=device)
        samples = ddim_sample_strided(sched, sample_model, x_T,
                                      ddim_timesteps(cfg.T, cfg.sample_steps),
                                      eta=cfg.eta, clip=True, generator=gen)
        n = cfg.n_samples
        # Reference images (held out), noised to t_r, then DDIM (η = 0, clipped x̂0) back to 0.
        ref01 = torch.from_numpy(np.array(test_x[:n], dtype=np.float32)).to(device)
        t_r = cfg.reconstruct_t
        noise = torch.randn(ref01.shape, generator=gen, device=device)
        noisy = q_sample(sched, to_diffusion_range(ref01), t_r, noise)
        grid_r = ddim_timesteps(t_r, min(cfg.sample_steps, t_r))
        recon = ddim_sample_strided(sched, model, noisy, grid_r, eta=0.0, clip=True)
    images = {
        "samples": from_diffusion_range(samples),
        "reference": ref01,
        "noisy": from_diffusion_range(noisy),
        "reconstruct": from_diffusion_range(recon),
    }
    ppm = {"samples": cfg.sample_ppm, "reference": cfg.reference_ppm, "noisy": cfg.noisy_ppm,
           "reconstruct": cfg.reconstruct_ppm}
    paths = {}
    for name, tensor in images.items():
        grid = image_grid(tensor.clamp(0, 1).cpu().numpy(), ncol=ncol if name == "samples" else None)
        save_png(out / f"{name}.png", grid)
        paths[f"{name}.png"] = str(out / f"{name}.png")
        if ppm[name] is not None:
            save_ppm(ppm[name], grid)
            paths[f"{name}.ppm"] = str(ppm[name])
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    cfg, explicit = parse_config(TrainConfig, None if argv is None else list(argv),
                                 prog="python -m runtime.train", description=DESCRIPTION,
                                 epilog=EPILOG)
    train(cfg, explicit)
    return 0


if __name__ == "__main__":
    run_main(main)
