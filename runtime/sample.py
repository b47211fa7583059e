"""`python -m runtime.sample`: draw images from a training checkpoint.

    python -m runtime.sample --checkpoint runs/d/checkpoint.pt --sampler ddim --steps 50 \\
        --eta 0 --n 64 --seed 0 --out samples.png

Samplers: one entry each in `runtime.samplers.SAMPLERS` (the sampler table), which
gives `--sampler`'s choices and help, the flags each sampler accepts (a sampler flag given to a
sampler that does not read it is an error), the `--steps` it accepts, the grid it walks and its
model evaluations; the dispatch below is one call, `Start.draw`, i.e. `entry.sample(sched,
model, x_T, grid, noise, **options)` with the schedule, network and x_T in the form of the
sampler's grid kind (`runtime.samplers.PROCESSES`); the quality figure and the sweep draw through
the same call. `--spacing` picks the table-time grid (`timestep_grid`: even
is `ddim_timesteps`, trailing/leading/linspace are Lin et al. 2023's Table 2).

The ODE samplers start from x_T at the same noise level σ_max = σ_{t0} (σ_t =
√((1 − ᾱ_t)/ᾱ_t) of the table), t0 the last time with σ_t ≤ --sigma-max (default 80, EDM's
σ_max; t0 = T when σ_T is below it): dpm-solver++, its (2s), (3m) and unipc at t0, pf-ode at
t = time_of_edm_sigma(σ_max), euler/heun/euler-ancestral at σ_max itself (from x̃ =
x_T·√(1 + σ_max²)), flow-euler/flow-heun at the flow state of t0 (x_σ = x_T/(√ᾱ + √(1 − ᾱ)),
the exact VP → flow map, with v̂ = ε̂ − x̂0 of the network at the table times of the grid);
`runtime.samplers.Start`. The cosine table's σ_T is 2.0e4 (its last β is clipped at 0.999, so
ᾱ_T = 2.4e-9): starting there multiplies the network's ε̂ error by 2e4 in the first x̂_0, which
clipped DDIM survives and the unclipped ODE samplers do not. Every sampler prints its number of model evaluations.

Whatever the checkpoint's network predicts (ε, x0 or v, `--prediction` of runtime.train) goes
through `runtime.prediction`. A class-conditional checkpoint draws --class K (every image of
class K) or, without --class, 10 rows with row k of class k, guided with --guidance-scale s:
ε(x, ∅) + s·(ε(x, c) − ε(x, ∅)) (s = 1 + w of Ho & Salimans 2022; s = 1: no guidance).
The EMA weights are used when the checkpoint has them (--no-ema for the raw weights). All noise
comes from one generator seeded with --seed. The output is a PNG grid (`.png`) or an `.npy` array
(N, C, H, W) float32 in [0, 1] (`.npy`), written atomically; samples that are not finite (an
overflow at extreme --eta or --guidance-scale) are an error and nothing is written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from runtime.data.transforms import from_diffusion_range
from runtime.guidance import GuidedModel
from runtime.plumbing.artifacts import image_grid, save_npy, save_png
from runtime.plumbing.checkpoint import load_checkpoint, restore_for_inference
from runtime.plumbing.cli import EXIT_STATUS_HELP, fail, resolve_device, run_main
from runtime.plumbing.config import SampleConfig, parse_config
from runtime.plumbing.limits import check_memory, sampling_bytes
from runtime.samplers import (
    CONTINUOUS_KINDS,
    DEFAULT_STEPS,
    OBJECTIVE_KINDS,
    SAMPLER_FLAGS,
    SAMPLERS,
    Sampler,
    Start,
    readers,
)


def given_flags(cfg: SampleConfig, names: Sequence[str]) -> list[tuple[str, str]]:
    """(name, as typed) of each flag of `names` given at other than its default."""
    defaults = {f.name: f.default for f in dataclasses.fields(SampleConfig)}
    out = []
    for name in names:
        value = getattr(cfg, name)
        if value != defaults[name]:
            flag = "--" + name.replace("_", "-")
            out.append((name, (flag if value else "--no-" + flag[2:]) if isinstance(value, bool)
                        else f"{flag} {value}"))
    return out


def check_sampler_flags(cfg: SampleConfig) -> None:
    """A sampler flag given (not at its default) to a sampler that does not read it is an error."""
    entry = SAMPLERS[cfg.sampler]
    for name, given in given_flags(cfg, [n for n in SAMPLER_FLAGS if n not in entry.flags]):
        fail(f"{given} does not apply to --sampler {cfg.sampler} (it applies to: "
             f"{readers(name)})")


def check_start(cfg: SampleConfig, entry: Sampler, start: Start, stored: dict) -> int:
    """The steps of the run, after the checks that need the checkpoint; fails with one line."""
    kinds = OBJECTIVE_KINDS[start.objective]
    if entry.kind not in kinds:
        fail(f"--sampler {cfg.sampler} does not sample {cfg.checkpoint}: it was trained with "
             f"--objective {start.objective}; use --sampler "
             f"{', '.join(n for n, s in SAMPLERS.items() if s.kind in kinds) or '(none here)'}")
    if entry.kind in CONTINUOUS_KINDS and stored.get("zero_terminal_snr"):
        fail(f"--sampler {cfg.sampler} follows the continuous {stored.get('schedule')} VP "
             f"schedule, not the zero-terminal-SNR schedule {cfg.checkpoint} was trained with; "
             f"use --sampler {', '.join(n for n, s in SAMPLERS.items() if s.kind == 'times')}")
    reads = start.flags(entry)
    for _, given in given_flags(cfg, [n for n in entry.flags if n not in reads]):
        fail(f"{given} does not apply to --sampler {cfg.sampler} on {cfg.checkpoint}, trained "
             f"with --objective {start.objective} (there it reads: "
             f"{', '.join('--' + n.replace('_', '-') for n in reads) or 'no sampler flag'})")
    if "sigma_max" in reads and start.t0 < 1:
        fail(f"--sigma-max {start.cap:g} is below σ at t = 1 ({start.sigma_min:g}): "
             "nothing to sample")
    if entry.kind == "sigmas" and not start.sigma_min < start.sigma_max:
        fail(f"σ at t = 1 ({start.sigma_min:g}) must lie below σ_max ({start.sigma_max:g}) for "
             f"--sampler {cfg.sampler}")
    bound = start.steps(entry)
    steps = cfg.steps if cfg.steps is not None else max(bound.low, min(DEFAULT_STEPS, bound.high))
    if not bound.low <= steps <= bound.high:
        span = str(bound.low) if bound.low == bound.high else f"{bound.low}..{bound.high}"
        fail(f"--steps must be {span} for --sampler {cfg.sampler} ({bound.why}), got {steps}")
    return steps


def check_output_path(out: Path) -> None:
    if out.is_dir():
        fail(f"--out {out} is a folder; expected a .png or .npy file name")
    folder = out.parent
    if not folder.is_dir():
        fail(f"--out {out}: folder {folder} does not exist")


def check_finite(x0: torch.Tensor, cfg: SampleConfig) -> None:
    """Samples that are not finite are an error, not an output: nothing is written."""
    bad = int((~torch.isfinite(x0)).flatten(1).any(1).sum())
    if bad:
        unusual = [f"{flag} {value!r}" for flag, value, usual in (
            ("--eta", cfg.eta, 0.0), ("--guidance-scale", cfg.guidance_scale, 1.0),
            ("--sigma-max", cfg.sigma_max, None)) if value != usual]
        fail(f"{bad} of {len(x0)} samples are not finite (NaN or ±inf); nothing written to "
             f"{cfg.out}. The sampler overflowed"
             + (f" with {', '.join(unusual)}" if unusual else "")
             + "; expected settings nearer the defaults, or a checkpoint with finite weights")


def sample(cfg: SampleConfig) -> tuple[Path, int, int]:
    """Draw cfg.n images and write cfg.out; return its path, the steps and the model
    evaluations per image."""
    out = Path(cfg.out)
    check_output_path(out)
    check_sampler_flags(cfg)
    device = resolve_device(cfg.device)
    payload = load_checkpoint(cfg.checkpoint)
    model, sched, derived, _ = restore_for_inference(payload, cfg.checkpoint, device, cfg.ema)
    stored = payload["config"]
    T = sched.T
    C, H, W = (int(v) for v in derived["image_shape"])
    entry = SAMPLERS[cfg.sampler]
    start = Start.of(sched, stored, cfg.sigma_max, cfg.shift)
    steps = check_start(cfg, entry, start, stored)
    nfe = entry.evaluations(steps, T)
    num_classes = model.num_classes  # every network declares it (0: unconditional)
    n, ncol = cfg.n, None
    if num_classes == 0 and (cfg.class_ is not None or cfg.guidance_scale != 1.0):
        fail(f"--class and --guidance-scale need a class-conditional checkpoint "
             f"(runtime.train --class-conditional); {cfg.checkpoint} is unconditional")
    if num_classes:
        if cfg.class_ is not None:
            if cfg.class_ >= num_classes:
                fail(f"--class must lie in 0..{num_classes - 1}, got {cfg.class_}")
            labels = torch.full((n,), cfg.class_, dtype=torch.long, device=device)
        else:  # 10 rows (one per class) of n // num_classes images each
            ncol = max(1, n // num_classes)
            n = ncol * num_classes
            labels = torch.arange(num_classes, device=device).repeat_interleave(ncol)
        model = GuidedModel(model, labels, cfg.guidance_scale)

    hidden = int(derived["model"]["config"].get("hidden_channels", 0))
    check_memory(f"--n {cfg.n}", sampling_bytes(n, (C, H, W), hidden),
                 f"{n} images of {C}x{H}x{W} and the network's {hidden} channels at once")
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    x_T = torch.randn((n, C, H, W), generator=gen, device=device)
    options = {name: getattr(cfg, name) for name in entry.options}
    with torch.no_grad():
        x0 = start.draw(entry, model, x_T, steps, cfg.spacing, gen, progress=True, **options)
    check_finite(x0, cfg)
    images01 = from_diffusion_range(x0).clamp(0.0, 1.0).float().cpu().numpy()  # (N, C, H, W)
    if out.suffix.lower() == ".npy":
        save_npy(out, images01.astype(np.float32))
    else:
        save_png(out, image_grid(images01, ncol=ncol))
    return out, steps, nfe


def main(argv: Sequence[str] | None = None) -> int:
    cfg, _ = parse_config(SampleConfig, None if argv is None else list(argv),
                          prog="python -m runtime.sample",
                          description="Sample images from a runtime.train checkpoint "
                                      "(EMA weights when present).",
                          epilog=EXIT_STATUS_HELP)
    out, steps, nfe = sample(cfg)
    print(f"wrote {cfg.n} samples ({cfg.sampler}, {steps} steps, {nfe} model evaluations) "
          f"to {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
