"""Configs of the runtime commands, as frozen dataclasses, and the argparse parsers built over them.

Each field carries its command-line help in `metadata`; the flag is the field name with `_`
replaced by `-` (`hidden_c` -> `--hidden-c`, `T` -> `--T`), so the flags that `--help` lists are the
field names. A config validates itself in `__post_init__` and raises `ConfigError` with one line
saying what was wrong, the value seen and what is expected; the commands turn that into
`error: ...` on stderr and exit status 2, before anything is written.

    TrainConfig     python -m runtime.train      (every field is a flag)
    SampleConfig    python -m runtime.sample
    EvaluateConfig  python -m runtime.evaluate

`parse_config(cls, argv)` returns `(config, explicit)` where `explicit` is the set of field names
given on the command line; `runtime.train --resume` uses it to take every other setting from the
checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from dataclasses import dataclass, field
from typing import Any, TypeVar

from runtime.ddpm import VARIANCES
from runtime.likelihood import DEFAULT_VLB_CONVENTION, VLB_CONVENTIONS
from runtime.plumbing.cli import ArgumentParser, ConfigError
from runtime.prediction import PREDICTION_TABLE, PREDICTIONS
from runtime.samplers import SAMPLERS, readers, sampler_help, steps_help
from runtime.train_step import FLOW_SIGMAS, OBJECTIVES
from runtime.unipc import UNIPC_VARIANTS

# The --model choices. Not the network kinds of runtime.model.MODELS: --class-conditional turns
# film into its kind cond_film.
MODEL_CHOICES = ("film", "residual", "conv")
SCHEDULES = ("cosine", "linear")
DEVICES = ("auto", "cpu", "cuda")
LR_SCHEDULES = ("constant", "cosine")
SPACINGS = ("even", "leading", "linspace", "trailing")
UNIPC_ORDERS = (1, 2, 3)


def _one_of(names: list[str]) -> str:
    """'a, b or c'."""
    return " or ".join(filter(None, [", ".join(names[:-1]), names[-1]]))


# What --prediction says of each prediction, and the predictions whose x̂0 exists at ᾱ_T = 0.
PREDICTION_HELP = _one_of([f"{name} ({row.help})" for name, row in PREDICTION_TABLE.items()])
ZERO_SNR_PREDICTIONS = _one_of([name for name, row in PREDICTION_TABLE.items()
                                if row.x0_at_zero_snr])

# FiLM nets normalise with GroupNorm(FILM_GROUPS, hidden): hidden must be a multiple of it.
FILM_GROUPS = 8
# Residual blocks when --blocks is not given: 4 for the FiLM net (docs/default-network.md), 2 for TorchLean's.
DEFAULT_BLOCKS = {"film": 2, "residual": 2, "conv": 0}
DEFAULT_DOWN_BLOCKS = {"film": 4, "residual": 0, "conv": 0}
# --blocks / --down-blocks not given: these, by --model. The film net's were 4 and 0 until the
# second sweep's 4×4-stage rows (docs/training.md); a checkpoint that stored None for either is
# resumed with the shape its network was built with (runtime/train/resume.py).


def _opt(default: Any, help: str, group: str, **argparse_kwargs: Any):
    """A dataclass field carrying its command-line help, argparse group and extra kwargs."""
    meta = {"help": help, "group": group, **argparse_kwargs}
    return field(default=default, metadata=meta)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _positive_int(name: str, value: int) -> None:
    _require(
        isinstance(value, int) and not isinstance(value, bool) and value > 0,
        f"--{name} must be a positive integer, got {value!r}",
    )


SEED_MAX = 2**64 - 1  # torch.Generator.manual_seed takes 64 bits; a larger seed would alias


def _seed(value: int) -> None:
    _require(
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= SEED_MAX,
        f"--seed must be an integer in 0..{SEED_MAX} (64 bits), got {value!r}",
    )


def _not_empty(flag: str, value: str | None, expected: str) -> None:
    _require(value is None or str(value).strip() != "",
             f"{flag} must not be empty, got {value!r}; expected {expected}")


def _finite(name: str, value: float) -> None:
    _require(
        isinstance(value, (int, float)) and math.isfinite(value),
        f"--{name} must be a finite number, got {value!r}",
    )


@dataclass(frozen=True)
class TrainConfig:
    """Everything `python -m runtime.train` needs. Defaults are the default run (docs/training.md)."""

    # --- data ---
    dataset: str = _opt(
        "digits",
        "data set: digits (scikit-learn's 8x8 digits, embedded), cifar10, npy or image-folder "
        "(the last three read a converted folder, see --data-dir and python -m runtime.data)",
        "data",
    )
    data_dir: str | None = _opt(
        None, "folder holding train_x.npy, train_y.npy, test_x.npy, test_y.npy", "data",
        metavar="DIR",
    )
    n_total: int | None = _opt(
        None, "train on the first N training images only (default: all of them)", "data", type=int,
        metavar="N",
    )
    # --- model ---
    model: str = _opt(
        "film",
        "ε-network: film (EpsFiLMNet: GroupNorm, SiLU, sinusoidal time embedding with FiLM), "
        "residual (TorchLean's EpsResidualConvNet, constant time channel) or conv (stem + out)",
        "model", choices=MODEL_CHOICES,
    )
    hidden_c: int = _opt(64, "hidden channels of the network", "model", type=int, metavar="C")
    blocks: int | None = _opt(
        None, "residual blocks (default: 2 for film, 2 for residual; conv has none)", "model",
        type=int, metavar="B",
    )
    down_blocks: int | None = _opt(
        None, "FiLM blocks of a half-resolution stage: the activations after the first B - B//2 "
        "blocks are 2x2-average-pooled, go through D blocks of their own and are upsampled "
        "(nearest) and added back before the rest (default: 4 for film, 0 otherwise; 0: none, "
        "the net of the first runs; needs --model film and images of even height and width)",
        "model", type=int, metavar="D",
    )
    class_conditional: bool = _opt(
        False, "condition the FiLM net on the class label (a label embedding added to the time "
        "embedding; classifier-free guidance at sampling, Ho & Salimans 2022)", "model",
    )
    label_dropout: float = _opt(
        0.1, "with --class-conditional: probability of training a sample with the null label "
        "(the unconditional branch of guidance)", "model", type=float, metavar="P",
    )
    # --- diffusion ---
    objective: str = _opt(
        "vp", "what is trained: " + _one_of([f"{name} ({row.help})"
                                             for name, row in OBJECTIVES.items()]),
        "diffusion", choices=tuple(OBJECTIVES),
    )
    flow_sigma: str = _opt(
        "logit-normal", "with --objective flow: the training density of σ, uniform (U[0, 1]) "
        "or logit-normal (m = 0, s = 1, SD3's default: σ = sigmoid(z), z ~ N(0, 1))",
        "diffusion", choices=tuple(FLOW_SIGMAS),
    )
    T: int = _opt(1000, "number of diffusion steps", "diffusion", type=int)
    schedule: str = _opt(
        "cosine", "β schedule: cosine (Nichol & Dhariwal 2021) or linear (Ho et al. 2020)",
        "diffusion", choices=SCHEDULES,
    )
    beta_start: float = _opt(1e-4, "first β of the linear schedule", "diffusion", type=float,
                             metavar="β")
    beta_end: float = _opt(0.02, "last β of the linear schedule", "diffusion", type=float,
                           metavar="β")
    prediction: str = _opt(
        "v", f"what the network predicts: {PREDICTION_HELP}", "diffusion", choices=PREDICTIONS,
    )
    zero_terminal_snr: bool = _opt(
        False, "rescale the betas so that ᾱ_T = 0 (Lin et al. 2023, Algorithm 1); needs "
        f"--prediction {ZERO_SNR_PREDICTIONS}", "diffusion",
    )
    min_snr_gamma: float | None = _opt(
        0.0, "weigh each sample's loss by min-SNR-γ (Hang et al. 2023, who use 5; the default "
        "of the first compute sweep); 0: unweighted, the default since the second sweep (min-SNR "
        "starves the small-t terms of the bound)", "diffusion", type=float,
        metavar="G",
    )
    # --- optimisation ---
    steps: int = _opt(
        1900, "total optimiser steps (with --resume: the total to reach, not an increment)",
        "optimisation", type=int, metavar="N",
    )
    batch_size: int = _opt(
        32, "images per step and per process (under torchrun the global batch is "
        "world_size × this)", "optimisation", type=int, metavar="B",
    )
    lr: float = _opt(3e-3, "Adam learning rate (the peak rate with --lr-schedule cosine)",
                     "optimisation", type=float)
    lr_schedule: str = _opt(
        "cosine", "learning rate over the run: constant, or cosine (decays to 0 at --steps, "
        "Loshchilov & Hutter 2017)", "optimisation", choices=LR_SCHEDULES,
    )
    warmup_steps: int = _opt(
        50, "linear learning-rate warm-up over the first N steps (0: none)", "optimisation",
        type=int, metavar="N",
    )
    ema_decay: float = _opt(
        0.99, "EMA decay of the weights used for sampling (0 turns EMA off)", "optimisation",
        type=float, metavar="D",
    )
    ema_warmup: bool = _opt(
        False, "warm up the EMA decay: min(D, (1 + n)/(10 + n)) at the n-th update (TensorFlow's "
        "ExponentialMovingAverage), so that the random initial weights leave the average early",
        "optimisation",
    )
    seed: int = _opt(
        0, "seed of every random stream (data order, t, noise, init, samples)", "optimisation",
        type=int,
    )
    # --- hardware ---
    device: str = _opt("auto", "cpu, cuda or auto (cuda when available)", "hardware",
                       choices=DEVICES)
    fast_kernels: bool = _opt(
        False, "CPU: a start-up probe picks the fastest of fp32, channels_last and (only with "
        "native bf16) bf16 autocast, never slower than fp32; CUDA: TF32 + bf16 autocast + "
        "torch.compile",
        "hardware",
    )
    # --- sampling and artifacts ---
    sample_steps: int = _opt(50, "DDIM steps for samples.png and reconstruct.png", "sampling",
                             type=int, metavar="S")
    eta: float = _opt(0.0, "DDIM η (0: deterministic DDIM, 1: DDPM-like noise)", "sampling",
                      type=float, metavar="η")
    n_samples: int = _opt(64, "images in samples.png, reference.png, noisy.png and "
                          "reconstruct.png", "sampling", type=int, metavar="N")
    reconstruct_step: int | None = _opt(
        None, "noise the reference images to this t, then DDIM back to 0 (default: T // 2)",
        "sampling", type=int, metavar="t",
    )
    quality_samples: int | None = _opt(
        None, "samples drawn at the end for the quality figure in train_log.json "
        "(DPM-Solver++(2M), 10 steps; flow: flow Euler, 50; Fréchet "
        "distance in a small classifier's features ÷ its real-vs-real floor, with a bootstrap "
        "interval; default: as many as two disjoint real sets allow, at most 1000: 898 for the "
        "digits; 0: skip)", "sampling", type=int, metavar="N",
    )
    # --- run folder and outputs ---
    out: str | None = _opt(
        None, "run folder (default: runs/<dataset>-<YYYYmmdd-HHMMSS>)", "outputs", metavar="DIR",
    )
    resume: bool = _opt(False, "continue the run in --out from OUT/checkpoint.pt up to --steps",
                        "outputs")
    checkpoint_every: int = _opt(
        500, "also write OUT/checkpoint.pt every N steps (0: only at the end)", "outputs",
        type=int, metavar="N",
    )
    log_every: int = _opt(
        50, "steps per point of the loss curve (the only host syncs of the loop)", "outputs",
        type=int, metavar="N",
    )
    log: str | None = _opt(None, "also write the JSON loss log here", "outputs", metavar="PATH")
    sample_ppm: str | None = _opt(None, "write the sample grid as a PPM (P6) here", "outputs",
                                  metavar="PATH")
    reference_ppm: str | None = _opt(None, "write the reference grid as a PPM here", "outputs",
                                     metavar="PATH")
    noisy_ppm: str | None = _opt(None, "write the noised reference grid as a PPM here",
                                 "outputs", metavar="PATH")
    reconstruct_ppm: str | None = _opt(None, "write the reconstruction grid as a PPM here",
                                       "outputs", metavar="PATH")
    progress: bool = _opt(True, "draw a progress bar", "outputs")

    def __post_init__(self) -> None:
        for name in ("steps", "T", "batch_size", "hidden_c", "sample_steps", "n_samples",
                     "log_every"):
            _positive_int(name.replace("_", "-"), getattr(self, name))
        _require(self.dataset.strip() != "", "--dataset must not be empty")
        if self.n_total is not None:
            _positive_int("n-total", self.n_total)
        _require(self.quality_samples is None or self.quality_samples >= 0,
                 f"--quality-samples must be >= 0, got {self.quality_samples}")
        if self.blocks is not None:
            _require(self.blocks >= 0, f"--blocks must be >= 0, got {self.blocks}")
            _require(self.model != "conv" or self.blocks == 0,
                     f"--model conv has no residual blocks, got --blocks {self.blocks}")
        _require(self.stage_blocks >= 0, f"--down-blocks must be >= 0, got {self.down_blocks}")
        _require(self.model == "film" or self.stage_blocks == 0,
                 f"--down-blocks needs --model film, got --model {self.model} with "
                 f"--down-blocks {self.down_blocks}")
        if self.model == "film":
            _require(self.hidden_c % FILM_GROUPS == 0,
                     f"--hidden-c must be a multiple of {FILM_GROUPS} for --model film "
                     f"(GroupNorm({FILM_GROUPS})), got {self.hidden_c}")
        for name in ("beta_start", "beta_end", "lr", "ema_decay", "eta"):
            _finite(name.replace("_", "-"), getattr(self, name))
        for name in ("beta_start", "beta_end"):
            value = getattr(self, name)
            _require(0.0 < value < 1.0,
                     f"--{name.replace('_', '-')} must lie in (0, 1), got {value}")
        _require(self.beta_start <= self.beta_end,
                 f"--beta-start ({self.beta_start}) must not exceed --beta-end ({self.beta_end})")
        _require(self.lr > 0, f"--lr must be positive, got {self.lr}")
        _require(self.warmup_steps >= 0, f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        _require(0.0 <= self.ema_decay < 1.0, f"--ema-decay must lie in [0, 1), got {self.ema_decay}")
        _require(not (self.ema_warmup and self.ema_decay == 0),
                 "--ema-warmup needs an EMA, got --ema-decay 0 (EMA off); give --ema-decay D "
                 "with D in (0, 1)")
        _require(self.eta >= 0.0, f"--eta must be >= 0, got {self.eta}")
        _require(self.sample_steps <= self.T,
                 f"--sample-steps must lie in 1..T = 1..{self.T}, got {self.sample_steps}")
        if self.reconstruct_step is not None:
            _require(1 <= self.reconstruct_step <= self.T,
                     f"--reconstruct-step must lie in 1..T = 1..{self.T}, got "
                     f"{self.reconstruct_step}")
        _require(self.prediction in PREDICTIONS, f"--prediction must be one of "
                 f"{', '.join(PREDICTIONS)}, got {self.prediction!r}")
        _require(not (self.zero_terminal_snr
                      and not PREDICTION_TABLE[self.prediction].x0_at_zero_snr),
                 f"--zero-terminal-snr needs --prediction {ZERO_SNR_PREDICTIONS}: at ᾱ_T = 0 an "
                 f"{self.prediction}-prediction cannot give x̂0, so sampling from t = T would "
                 "fail (Lin et al. 2023 §3.2)")
        _require(not (self.zero_terminal_snr and self.T < 2),
                 f"--zero-terminal-snr needs --T >= 2, got {self.T}")
        if self.min_snr_gamma is not None:
            _finite("min-snr-gamma", self.min_snr_gamma)
            _require(self.min_snr_gamma >= 0,
                     f"--min-snr-gamma must be >= 0 (0: unweighted), got {self.min_snr_gamma}")
            if self.min_snr_gamma == 0:  # the flag's way to say "unweighted"
                object.__setattr__(self, "min_snr_gamma", None)
        _finite("label-dropout", self.label_dropout)
        _require(0.0 <= self.label_dropout < 1.0,
                 f"--label-dropout must lie in [0, 1), got {self.label_dropout}")
        _require(not (self.class_conditional and self.model != "film"),
                 f"--class-conditional needs --model film, got --model {self.model}")
        _require(self.checkpoint_every >= 0,
                 f"--checkpoint-every must be >= 0, got {self.checkpoint_every}")
        _require(not (self.resume and self.out is None),
                 "--resume needs --out DIR, the run folder holding checkpoint.pt")
        _not_empty("--out", self.out, "a folder (--out . for the current one)")
        _seed(self.seed)
        self._check_objective()

    def _check_objective(self) -> None:
        """The fields only another objective reads keep their default (or the value this
        objective records for them, `Objective.fixed`), and are then set to that value."""
        _require(self.objective in OBJECTIVES, f"--objective must be one of "
                 f"{', '.join(OBJECTIVES)}, got {self.objective!r}")
        row = OBJECTIVES[self.objective]
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        for name in objective_foreign_fields(self.objective):
            value = getattr(self, name)
            given = flag_of(name) if isinstance(value, bool) else f"{flag_of(name)} {value}"
            _require(value in (defaults[name], row.fixed.get(name, defaults[name])),
                     f"{given} does not apply to --objective {self.objective} "
                     f"(it applies to: --objective {objective_readers(name)})")
            object.__setattr__(self, name, row.fixed.get(name, value))

    # Derived values, in one place.
    @property
    def residual_blocks(self) -> int:
        return DEFAULT_BLOCKS[self.model] if self.blocks is None else self.blocks

    @property
    def stage_blocks(self) -> int:
        """The blocks of the half-resolution stage: --down-blocks, else the model's default."""
        return DEFAULT_DOWN_BLOCKS[self.model] if self.down_blocks is None else self.down_blocks

    @property
    def reconstruct_t(self) -> int:
        return max(1, self.T // 2) if self.reconstruct_step is None else self.reconstruct_step


def objective_foreign_fields(objective: str) -> tuple[str, ...]:
    """The TrainConfig fields that only other objectives read (OBJECTIVES' `reads`)."""
    own = set(OBJECTIVES[objective].reads)
    return tuple(dict.fromkeys(name for other, row in OBJECTIVES.items() if other != objective
                               for name in row.reads if name not in own))


def objective_readers(name: str) -> str:
    """The objectives that read the TrainConfig field `name`: "vp"."""
    return ", ".join(o for o, row in OBJECTIVES.items() if name in row.reads)


def check_objective_flags(cfg: TrainConfig, explicit: set[str] | frozenset[str]) -> None:
    """A flag given on the command line that only another objective reads is an error, also at
    its default value (`--prediction v --objective flow`)."""
    for name in objective_foreign_fields(cfg.objective):
        if name in explicit:
            raise ConfigError(f"{flag_of(name)} does not apply to --objective {cfg.objective} "
                              f"(it applies to: --objective {objective_readers(name)})")


# Fields that define what is trained; on --resume they must agree with the checkpoint.
# (--batch-size is checked through the global batch, world_size × batch_size.)
TRAINING_IDENTITY = (
    "dataset", "n_total", "model", "hidden_c", "blocks", "down_blocks", "T", "schedule",
    "beta_start", "beta_end", "lr", "ema_decay", "ema_warmup", "seed", "prediction",
    "zero_terminal_snr", "min_snr_gamma", "class_conditional", "label_dropout", "lr_schedule",
    "warmup_steps", "objective", "flow_sigma",
)
# Identity fields added after the first checkpoints: a checkpoint without one was trained with
# the value below (an old checkpoint is an unweighted, unconditional ε-model).
IDENTITY_DEFAULTS = {"prediction": "eps", "zero_terminal_snr": False, "min_snr_gamma": None,
                     "class_conditional": False, "label_dropout": 0.1,
                     "lr_schedule": "constant", "warmup_steps": 0, "objective": "vp",
                     "flow_sigma": "logit-normal", "down_blocks": 0, "ema_warmup": False}


@dataclass(frozen=True)
class SampleConfig:
    """`python -m runtime.sample`: draw images from a checkpoint."""

    checkpoint: str = _opt(None, "checkpoint file (OUT/checkpoint.pt of a training run)",
                           "input", metavar="CKPT")
    sampler: str = _opt("ddim", sampler_help(), "sampler", choices=tuple(SAMPLERS))
    steps: int | None = _opt(None, steps_help(), "sampler", type=int, metavar="S")
    eta: float = _opt(0.0, f"DDIM η (for --sampler {readers('eta')})", "sampler", type=float,
                      metavar="η")
    spacing: str = _opt("even", "the table-time grid: even (round(T·(n−i)/n), today's), "
                        "trailing (starts at T), leading or linspace (Lin et al. 2023, Table 2) "
                        f"(for --sampler {readers('spacing')})", "sampler", choices=SPACINGS)
    clip: bool = _opt(True, f"clip x̂0 to [-1, 1] (for --sampler {readers('clip')})", "sampler")
    sigma_max: float | None = _opt(
        None, "start at the last table time t0 with noise level σ_t = √((1 − ᾱ_t)/ᾱ_t) <= this "
        "(default: 80, EDM's σ_max; t0 = T when σ_T is smaller) (for --sampler "
        f"{readers('sigma_max')})", "sampler", type=float, metavar="σ")
    order: int = _opt(2, "order p of UniPC's predictor UniP-p, 1..3 (the corrector UniC-p makes "
                      f"it p + 1) (for --sampler {readers('order')})", "sampler", type=int,
                      choices=UNIPC_ORDERS, metavar="P")
    variant: str = _opt("bh2", "UniPC's B(h): bh1 (h) or bh2 (e^h − 1) (for --sampler "
                        f"{readers('variant')})", "sampler", choices=UNIPC_VARIANTS)
    corrector: bool = _opt(True, "UniPC's corrector UniC after every step but the last (no "
                           f"model evaluation) (for --sampler {readers('corrector')})", "sampler")
    shift: float = _opt(1.0, "on a flow checkpoint, SD3's time shift s of the grid, σ' = "
                        "s·σ/(1 + (s − 1)·σ) (Esser et al. 2024, Eq. 23; s > 1 moves the steps "
                        f"towards noise) (for --sampler {readers('shift')})", "sampler",
                        type=float, metavar="S")
    variance: str = _opt("fixed_small", "DDPM's reverse variance σ_t² (Ho et al. 2020 §3.2): "
                         "fixed_small β̃_t or fixed_large β_t (for --sampler "
                         f"{readers('variance')})", "sampler", choices=tuple(VARIANCES))
    class_: int | None = _opt(None, "class-conditional checkpoints: draw every image of this "
                              "class (default: 10 rows, row k of class k)", "guidance",
                              type=int, metavar="K")
    guidance_scale: float = _opt(
        1.0, "classifier-free guidance s: ε(x,∅) + s·(ε(x,c) − ε(x,∅)); s = 1 is the "
        "conditional model alone, s = 1 + w in Ho & Salimans' w", "guidance", type=float,
        metavar="S")
    n: int = _opt(64, "number of images", "sampler", type=int, metavar="N")
    seed: int = _opt(0, "seed of the sampling noise", "sampler", type=int)
    ema: bool = _opt(True, "use the EMA weights when the checkpoint has them", "sampler")
    device: str = _opt("auto", "cpu, cuda or auto", "sampler", choices=DEVICES)
    out: str = _opt("samples.png", "output: .png (grid) or .npy ((N, C, H, W) float32 in [0, 1])",
                    "output", metavar="FILE")

    def __post_init__(self) -> None:
        _require(self.checkpoint is not None, "--checkpoint CKPT is required")
        if self.steps is not None:
            _positive_int("steps", self.steps)
        _positive_int("n", self.n)
        _finite("eta", self.eta)
        _require(self.eta >= 0.0, f"--eta must be >= 0, got {self.eta}")
        if self.sigma_max is not None:
            _finite("sigma-max", self.sigma_max)
            _require(self.sigma_max > 0, f"--sigma-max must be > 0, got {self.sigma_max}")
        _finite("shift", self.shift)
        _require(self.shift > 0, f"--shift must be > 0, got {self.shift}")
        _require(self.order in UNIPC_ORDERS, f"--order must be one of 1, 2, 3, got {self.order!r}")
        _require(self.variant in UNIPC_VARIANTS,
                 f"--variant must be one of {', '.join(UNIPC_VARIANTS)}, got {self.variant!r}")
        _finite("guidance-scale", self.guidance_scale)
        if self.class_ is not None:
            _require(isinstance(self.class_, int) and self.class_ >= 0,
                     f"--class must be a class index >= 0, got {self.class_!r}")
        _require(str(self.out).lower().endswith((".png", ".npy")),
                 f"--out must end in .png or .npy, got {self.out!r}")
        _seed(self.seed)


@dataclass(frozen=True)
class EvaluateConfig:
    """`python -m runtime.evaluate`: held-out ε-loss and bits/dim of a checkpoint."""

    checkpoint: str = _opt(None, "checkpoint file (OUT/checkpoint.pt of a training run)",
                           "input", metavar="CKPT")
    dataset: str | None = _opt(None, "data set (default: the checkpoint's)", "input")
    data_dir: str | None = _opt(None, "converted data folder (default: the checkpoint's)",
                                "input", metavar="DIR")
    n: int | None = _opt(None, "evaluate the first N test images (default: all)", "input",
                         type=int, metavar="N")
    batch_size: int = _opt(256, "images per forward pass", "evaluation", type=int, metavar="B")
    bins: int | None = _opt(None, "discretisation bins of the data (default: 17 for digits, "
                            "256 otherwise)", "evaluation", type=int)
    seed: int = _opt(0, "seed of t and noise", "evaluation", type=int)
    bound_convention: str = _opt(
        DEFAULT_VLB_CONVENTION, "the bound's convention (runtime.likelihood.VLB_CONVENTIONS): "
        + "; ".join(f"{name} = {c.summary}" for name, c in VLB_CONVENTIONS.items()),
        "evaluation", choices=tuple(VLB_CONVENTIONS))
    samples: int = _opt(0, "also draw N samples (DPM-Solver++(2M), 10 steps; flow checkpoints: "
                        "flow Euler, 50) and report "
                        "their Fréchet distance in a small classifier's features ÷ the "
                        "real-vs-real floor, with a bootstrap interval (n = min(N, half of all "
                        "real images): 898 for the digits; the figure wants n >= 800)",
                        "evaluation", type=int, metavar="N")
    ema: bool = _opt(True, "use the EMA weights when the checkpoint has them", "evaluation")
    device: str = _opt("auto", "cpu, cuda or auto", "evaluation", choices=DEVICES)
    json: str | None = _opt(None, "also write the results as JSON here", "output",
                            metavar="PATH")

    def __post_init__(self) -> None:
        _require(self.checkpoint is not None, "--checkpoint CKPT is required")
        if self.n is not None:
            _positive_int("n", self.n)
        _positive_int("batch-size", self.batch_size)
        _require(isinstance(self.samples, int) and self.samples >= 0,
                 f"--samples must be an integer >= 0, got {self.samples!r}")
        if self.bins is not None:
            _require(isinstance(self.bins, int) and self.bins >= 2,
                     f"--bins must be an integer >= 2, got {self.bins!r}")
        _not_empty("--json", self.json, "a file path")
        _seed(self.seed)


C = TypeVar("C")


def flag_of(name: str) -> str:
    return "--" + name.rstrip("_").replace("_", "-")


def build_parser(cls: type, prog: str, description: str, epilog: str = "",
                 suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """An argparse parser with one flag per field of the dataclass `cls`, grouped and with
    defaults shown. With `suppress_defaults`, absent flags are absent from the namespace (used to
    learn which flags were given explicitly)."""

    class Formatter(argparse.RawDescriptionHelpFormatter):
        """Shows "(default: X)" unless the default is None/False or the help already says it."""

        def _get_help_string(self, action: argparse.Action) -> str:
            text = action.help or ""
            default = action.default
            if ("default" in text or default is None or default is False
                    or default == argparse.SUPPRESS or not action.option_strings):
                return text
            return f"{text} (default: {default})"

    parser = ArgumentParser(prog=prog, description=description, epilog=epilog,
                                   formatter_class=Formatter)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(cls):
        meta = dict(f.metadata)
        help_text = meta.pop("help")
        group_name = meta.pop("group")
        group = groups.get(group_name)
        if group is None:
            group = groups[group_name] = parser.add_argument_group(group_name)
        kwargs: dict[str, Any] = {"help": help_text, "dest": f.name, **meta}
        if f.type in (bool, "bool"):
            # --flag for switches that are off by default; --flag/--no-flag for those on.
            kwargs["action"] = argparse.BooleanOptionalAction if f.default else "store_true"
        if suppress_defaults:
            kwargs["default"] = argparse.SUPPRESS
        else:
            kwargs["default"] = f.default
        group.add_argument(flag_of(f.name), **kwargs)
    if cls is TrainConfig:
        group = groups["hardware"]
        group.add_argument("--cuda", action="store_const", const="cuda", dest="device",
                           default=argparse.SUPPRESS, help="same as --device cuda")
    return parser


def parse_config(cls: type[C], argv: list[str] | None, prog: str, description: str,
                 epilog: str = "") -> tuple[C, set[str]]:
    """Parse `argv` into a validated `cls`; also return the names of the fields given explicitly.

    A usage error raises `runtime.plumbing.cli.UserError`, an invalid value `ConfigError` (both one line,
    exit status 2 under `runtime.plumbing.cli.run_main`).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(cls, prog, description, epilog)
    namespace = parser.parse_args(argv)
    explicit_ns = build_parser(cls, prog, description, epilog, suppress_defaults=True).parse_args(
        argv)
    explicit = set(vars(explicit_ns))
    return cls(**vars(namespace)), explicit


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
