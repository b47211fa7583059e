"""`python -m runtime.train`: train an ε-predictor (DDPM, Ho et al. 2020, Algorithm 1).

Each step (one process; see `runtime.distributed` for torchrun):

    1. idx ← the next B indices of a seeded epoch permutation of the training set
    2. t ~ U{1..T} per sample, ε ~ N(0, I)                         (seeded generators)
    3. loss = runtime.loss.prediction_loss(sched, model, x0, t, ε, --min-snr-gamma, --prediction)
       (the conformance-checked twin of spec.loss.prediction_loss; for the default ε-model
       without γ it is DDPM Eq. 14, spec.loss.eps_pred_loss; x0 in [-1, 1]; a class-conditional
       model also gets the labels, each replaced by the null label with p = --label-dropout)
    4. backward; if the loss and every gradient are finite: Adam step and EMA update,
       else the step is skipped (parameters, Adam state and EMA are left as they were)

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
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runtime.artifacts import image_grid, save_json, save_loss_plot, save_png, save_ppm
from runtime.checkpoint import (
    CheckpointError,
    build_model,
    load_checkpoint,
    load_state_dict_checked,
    model_spec,
    save_checkpoint,
    schedule_betas,
)
from runtime.cli import UserError, fail, run_main
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
from runtime.forward import q_sample
from runtime.guidance import GuidedModel
from runtime.loss import prediction_loss
from runtime.prediction import prediction_target
from runtime.schedule import Schedule

MAX_CONSECUTIVE_NONFINITE = 5
# Settings of the machine and terminal at hand: never taken from a checkpoint on --resume.
SESSION_FIELDS = frozenset({"device", "fast_kernels", "progress", "out", "resume"})
CHECKPOINT_NAME = "checkpoint.pt"
# Streams of random numbers, each with its own generator seeded from (--seed, stream id).
STREAM_INIT, STREAM_DATA, STREAM_T, STREAM_NOISE, STREAM_SAMPLE, STREAM_LABEL = range(6)

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
process x batch N*b. Errors in the input end with one line `error: ...` and exit status 2."""


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


class GuardedUpdate:
    """Adam step + EMA update that leave everything untouched when `finite` is False.

    sync_free (the default on CUDA): `finite` is never read on the host; fused Adam gets
    `found_inf = 1 − finite` and skips its update on the device, and the EMA weight is multiplied
    by `finite`. Otherwise (CPU, where reading a flag costs nothing) the step is simply not
    taken. Both give bit-identical results.
    """

    def __init__(self, model: torch.nn.Module, lr: float, ema_decay: float,
                 device: torch.device, sync_free: bool | None = None) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.sync_free = device.type == "cuda" if sync_free is None else sync_free
        # Fused Adam: one kernel for the whole update, and it takes a device-side `found_inf`
        # flag that skips the update exactly (as under torch.amp.GradScaler), so the sync-free
        # path needs no backup copies. Both paths use it, so they stay bit-identical.
        self.optimizer = torch.optim.Adam(self.params, lr=lr, fused=True)
        self.ema_decay = ema_decay
        # EMA weights, float32, one per parameter (None when EMA is off).
        self.ema = ([p.detach().clone().float() for p in self.params] if ema_decay > 0 else None)
        self._init_adam_state()

    def _init_adam_state(self) -> None:
        """Create Adam's state now (as fused Adam would on its first step)."""
        for p in self.params:
            state = self.optimizer.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def step(self, finite: torch.Tensor) -> None:
        """finite: 0-d bool tensor on the device."""
        if not self.sync_free:
            if not bool(finite):
                return
            with torch.no_grad():
                self.optimizer.step()
                self._ema_update(finite)
            return
        # found_inf = 1 makes fused Adam leave parameters, moments and step count as they were.
        self.optimizer.found_inf = (~finite).to(torch.float32)
        with torch.no_grad():
            self.optimizer.step()
            self._ema_update(finite)
        del self.optimizer.found_inf

    def _ema_update(self, finite: torch.Tensor) -> None:
        """ema ← ema + w·(θ − ema), w = (1 − decay)·finite (so a skipped step leaves it as is)."""
        if self.ema is None:
            return
        weight = finite.to(torch.float32) * (1.0 - self.ema_decay)
        diffs = torch._foreach_sub([p.detach().float() for p in self.params], self.ema)
        torch._foreach_mul_(diffs, weight)
        torch._foreach_add_(self.ema, diffs)

    def ema_state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
        """The model's state_dict with every parameter replaced by its EMA weight (float32)."""
        if self.ema is None:
            return None
        by_id = {id(p): e for p, e in zip(self.params, self.ema, strict=True)}
        state = {}
        for name, tensor in model.state_dict(keep_vars=True).items():
            state[name] = by_id.get(id(tensor), tensor).detach().clone()
        return state

    def load_ema_state_dict(self, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        assert self.ema is not None
        own = dict(model.named_parameters())
        index = {id(p): i for i, p in enumerate(self.params)}
        for name, param in own.items():
            self.ema[index[id(param)]].copy_(state[name].to(torch.float32))


def all_finite(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
    """0-d bool: the loss and every gradient are finite (no host sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    flag = torch.isfinite(loss)
    if grads:
        norms = torch._foreach_norm(grads)
        flag = flag & torch.isfinite(torch.stack(norms)).all()
    return flag


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
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out)
        os.close(fd)
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
    """Training images in [-1, 1] (float32), on the device when they fit comfortably, else pinned
    host memory (copied per batch with non_blocking=True)."""
    x = to_diffusion_range(torch.from_numpy(np.array(x01, dtype=np.float32, copy=True)))
    if device.type == "cuda" and x.numel() * 4 > (1 << 30):
        return x.pin_memory()
    return x.to(device)


def configure_fast_kernels(device: torch.device) -> None:
    if device.type == "cuda":
        try:
            torch.backends.cuda.matmul.fp32_precision = "tf32"
            torch.backends.cudnn.conv.fp32_precision = "tf32"
        except AttributeError:  # older PyTorch
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True


def train(cfg: TrainConfig, explicit: set[str] | frozenset[str] = frozenset(), *,
          on_step: Callable[[int], None] | None = None, data=None) -> Path:
    """Run training as configured; return the run folder. Raises UserError for bad input.

    `on_step(step)` is called after each finished step (tests use it); `data` replaces the data
    set loader with `(train Dataset, test Dataset)` (tests).
    """
    t_start = time.perf_counter()
    info = env_info()
    resolve_device(cfg.device)  # an unusable --device is an error before anything else

    # 1. Where the run goes, and what it continues from (validated before anything is written).
    out = Path(cfg.out) if cfg.out is not None else default_out_dir(cfg.dataset)
    if info.enabled and cfg.out is None:
        fail("under torchrun give --out DIR (each process must agree on the run folder)")
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
        train_y = train_set.y if cfg.n_total is None else train_set.y[:cfg.n_total]
        result = _train(cfg, info, out, payload, train_x, test_set, t_start, on_step, train_y)
        # The other ranks wait for rank 0's checkpoint and artifacts, so that no process
        # tears down its side of the process group while a peer still holds it open.
        barrier(info)
        return result
    finally:
        cleanup(info)


def _train(cfg: TrainConfig, info: DistInfo, out: Path, payload: dict[str, Any] | None,
           train_x: np.ndarray, test_set, t_start: float,
           on_step: Callable[[int], None] | None, train_y: np.ndarray | None = None) -> Path:
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
    if cfg.fast_kernels:
        configure_fast_kernels(device)
        if device.type == "cpu":
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
    if cfg.fast_kernels and is_cuda:
        train_model = torch.compile(train_model)
    channels_last = cfg.fast_kernels and device.type == "cpu"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.fast_kernels)
    data_x = to_device_data(train_x, device)
    T = cfg.T

    def train_step() -> None:
        # 1. this rank's slice of the global batch: indices, t ~ U{1..T}, ε ~ N(0, I)
        idx = info.shard(sampler.next(global_batch), b)
        t = info.shard(torch.randint(1, T + 1, (global_batch,), generator=t_gen), b)
        noise = info.shard(torch.randn((global_batch, C, H, W), generator=noise_gen,
                                       device=noise_gen.device), b).to(device)
        if data_x.is_pinned():  # large data on the host: gather into pinned memory, async copy
            staged = torch.empty((b, C, H, W), dtype=data_x.dtype, pin_memory=True)
            x0 = torch.index_select(data_x, 0, idx, out=staged).to(device, non_blocking=True)
        else:
            x0 = data_x[idx.to(data_x.device)]
        t = t.to(device, non_blocking=True)
        captured: dict[str, torch.Tensor] = {}
        model_args: tuple[torch.Tensor, ...] = ()
        if cfg.class_conditional:  # labels, the null label with probability --label-dropout
            labels = labels_all[idx]
            drop = info.shard(torch.rand(global_batch, generator=label_gen), b)
            model_args = (torch.where(drop < cfg.label_dropout, num_classes, labels).to(device),)

        def eps_model(x: torch.Tensor, t_norm: torch.Tensor) -> torch.Tensor:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            captured["out"] = out = train_model(x, t_norm, *model_args)
            return out

        # 2. loss through the conformance-checked twin of spec.loss.prediction_loss (for an
        #    unweighted ε-model it is spec.loss.eps_pred_loss, DDPM Eq. 14)
        with autocast:
            loss = prediction_loss(sched, eps_model, x0, t, noise, cfg.min_snr_gamma,
                                   cfg.prediction)
        update.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # 3. one finite flag for every rank, then the guarded update
        finite = all_finite(loss.detach(), update.params)
        if info.enabled:
            finite = all_reduce_min(finite.to(torch.int32), info).bool()
        update.step(finite)
        with torch.no_grad():
            target = prediction_target(sched, x0, t, noise, cfg.prediction)
            per_sample = (captured["out"].float() - target).square().flatten(1).mean(1)
        acc.add(per_sample, t, T, finite)

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
                train_step()
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
    steps_done = state.step - start_step
    last = state.history[-1] if state.history else {}
    notes = {
        "dataset": cfg.dataset, "data_dir": cfg.data_dir, "n_train": n_train,
        "image_shape": [C, H, W], "device": str(device), "world_size": info.world_size,
        "fast_kernels": cfg.fast_kernels, "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": cfg.model, "hidden": cfg.hidden_c, "blocks": cfg.residual_blocks,
        "parameters": sum(p.numel() for p in model.parameters()),
        "schedule": cfg.schedule, "T": cfg.T, "beta_start": cfg.beta_start,
        "beta_end": cfg.beta_end, "lr": cfg.lr, "batch_size": cfg.batch_size,
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
    }
    log = {"notes": notes, "curve": state.history, "artifacts": paths}
    save_json(out / "train_log.json", log)
    if cfg.log is not None:
        save_json(cfg.log, log)
    save_loss_plot(out / "loss.png", state.history,
                   title=f"{cfg.dataset}: {cfg.model} net, {cfg.schedule} betas, T={cfg.T}")
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
