"""`python -m runtime.sample`: draw images from a training checkpoint.

    python -m runtime.sample --checkpoint runs/d/checkpoint.pt --sampler ddim --steps 50 \\
        --eta 0 --n 64 --seed 0 --out samples.png

Samplers (all from `runtime`, each the conformance-checked twin of its spec function):

- `ddim`: `runtime.ddim.ddim_sample_strided` on `timestep_grid(T, steps, --spacing)` (Song et
  al. 2021, Eq. 12; η from --eta, x̂0 clipped to [-1, 1] unless --no-clip); --spacing even is
  `ddim_timesteps`, trailing/leading/linspace are Lin et al. 2023's Table 2 (leading and
  linspace never visit t = T);
- `ddpm`: `runtime.ddpm.ddpm_sample`, ancestral sampling over all T steps (Ho et al. 2020,
  Algorithm 2); --steps, when given, must equal T;
- `pf-ode`: `runtime.pf_ode.pf_ode_sample_euler`, Euler in t on the probability-flow ODE of the
  checkpoint's schedule in continuous time: the linear schedule's limit β(t) = T·beta_start +
  t·T·(beta_end − beta_start), or the cosine schedule `VPCosineSchedule(s = 0.008)`, whose
  ᾱ(t/T) equals the trained table at every t < T;
- `euler`, `heun`: `runtime.edm.edm_sample_euler` / `edm_sample_heun` (Karras et al. 2022,
  Algorithm 1) on `edm_sigmas(S, σ_min, σ_max, ρ = 7)`, σ_min = σ at t = 1 of the table; the
  model reads the time t = time_of_edm_sigma(σ) of the same continuous schedule;
- `dpm-solver++`: `runtime.dpm_solver.dpm_solver_pp_2m_sample` (Lu et al. 2022, Algorithm 2)
  on `timestep_grid(t0, S, --spacing)` (t0 below).

The four ODE samplers start from x_T at the same noise level σ_max = σ_{t0} (σ_t =
√((1 − ᾱ_t)/ᾱ_t) of the table), t0 the last time with σ_t ≤ --sigma-max (default 80, EDM's
σ_max; t0 = T when σ_T is below it): dpm-solver++ at t0, pf-ode at t = time_of_edm_sigma(σ_max),
euler/heun at σ_max itself (from x̃ = x_T·√(1 + σ_max²)). The cosine table's σ_T is
2.0e4 (its last β is clipped at 0.999, so ᾱ_T = 2.4e-9): starting there multiplies the
network's ε̂ error by 2e4 in the first x̂_0, which clipped DDIM survives and the unclipped
ODE samplers do not. Every sampler prints its number of model evaluations (heun: 2·S − 1).

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

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from runtime.data.transforms import from_diffusion_range
from runtime.ddim import ddim_sample_strided
from runtime.ddpm import ddpm_sample
from runtime.dpm_solver import dpm_solver_pp_2m_sample
from runtime.edm import edm_sample_euler, edm_sample_heun, edm_sigmas, vp_to_edm
from runtime.guidance import GuidedModel
from runtime.pf_ode import (
    VPContinuousSchedule,
    VPCosineSchedule,
    VPLinearSchedule,
    pf_ode_sample_euler,
)
from runtime.plumbing.artifacts import image_grid, save_npy, save_png
from runtime.plumbing.checkpoint import load_checkpoint, restore_for_inference
from runtime.plumbing.cli import EXIT_STATUS_HELP, fail, resolve_device, run_main
from runtime.plumbing.config import SampleConfig, parse_config
from runtime.plumbing.limits import check_memory, sampling_bytes
from runtime.schedule import Schedule, timestep_grid

DEFAULT_STEPS = 50
EDM_SIGMA_MAX = 80.0
"""σ_max of Karras et al. 2022 (Table 1, "Ours"): the default start of the ODE samplers."""
ODE_SAMPLERS = ("pf-ode", "euler", "heun", "dpm-solver++")


def continuous_schedule(stored: dict, T: int) -> VPContinuousSchedule:
    """The checkpoint's schedule in continuous time t ∈ [0, 1] (the model's t/T)."""
    if stored.get("schedule") == "linear":
        return VPLinearSchedule(beta_min=T * float(stored["beta_start"]),
                                beta_max=T * float(stored["beta_end"]))
    return VPCosineSchedule()  # the trainer builds cosine_betas(T), s = 0.008


def sigma_table(sched: Schedule) -> torch.Tensor:
    """σ_t = √((1 − ᾱ_t)/ᾱ_t), t = 0..T, float64 on the CPU (increasing in t)."""
    ab = sched.alpha_bar.float64
    return torch.sqrt((1.0 - ab) / ab)


def model_evaluations(sampler: str, steps: int, T: int) -> int:
    """Network calls of one sample: T for ddpm, 2·steps − 1 for heun, steps otherwise."""
    return {"ddpm": T, "heun": 2 * steps - 1}.get(sampler, steps)


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
    device = resolve_device(cfg.device)
    payload = load_checkpoint(cfg.checkpoint)
    model, sched, derived, _ = restore_for_inference(payload, cfg.checkpoint, device, cfg.ema)
    stored = payload["config"]
    T = sched.T
    C, H, W = (int(v) for v in derived["image_shape"])
    if cfg.sampler == "ddpm":
        if cfg.steps is not None and cfg.steps != T:
            fail(f"--sampler ddpm runs all T = {T} steps; got --steps {cfg.steps} "
                 "(use --sampler ddim for fewer steps)")
    elif cfg.sampler == "ddim" and cfg.steps is not None and cfg.steps > T:
        fail(f"--steps must lie in 1..T = 1..{T} for ddim, got {cfg.steps}")
    if cfg.sampler in ("pf-ode", "euler", "heun") and stored.get("zero_terminal_snr"):
        fail(f"--sampler {cfg.sampler} follows the continuous {stored.get('schedule')} VP "
             f"schedule, not the zero-terminal-SNR schedule {cfg.checkpoint} was trained with; "
             "use --sampler ddim, ddpm or dpm-solver++")
    if cfg.sampler not in ("ddim", "dpm-solver++") and cfg.spacing != "even":
        fail(f"--spacing chooses the grid of ddim and dpm-solver++; --sampler {cfg.sampler} "
             "has none")
    steps = cfg.steps if cfg.steps is not None else min(DEFAULT_STEPS, T)
    sigmas_t = sigma_table(sched)
    cap = EDM_SIGMA_MAX if cfg.sigma_max is None else cfg.sigma_max
    t0 = int(torch.nonzero(sigmas_t <= cap).max())  # the last t with σ_t <= cap
    if cfg.sampler in ODE_SAMPLERS and t0 < 1:
        fail(f"--sigma-max {cap:g} is below σ at t = 1 ({float(sigmas_t[1]):g}): "
             "nothing to sample")
    sigma_max = float(sigmas_t[t0])  # every ODE sampler starts at this noise level
    if cfg.sampler == "dpm-solver++":
        if cfg.steps is None:
            steps = min(DEFAULT_STEPS, t0)
        elif cfg.steps > t0:
            fail(f"--steps must lie in 1..{t0} for dpm-solver++ (its grid starts at t = {t0}, "
                 f"the last time with σ_t <= {cap:g}), got {cfg.steps}")
    sigma_min = float(sigmas_t[1])
    if cfg.sampler in ("euler", "heun") and not sigma_min < sigma_max:
        fail(f"σ at t = 1 ({sigma_min:g}) must lie below σ_max ({sigma_max:g}) for "
             f"--sampler {cfg.sampler}")
    nfe = model_evaluations(cfg.sampler, steps, T)
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
    with torch.no_grad():
        if cfg.sampler == "ddim":
            x0 = ddim_sample_strided(sched, model, x_T, timestep_grid(T, steps, cfg.spacing),
                                     eta=cfg.eta, clip=cfg.clip, generator=gen, progress=True)
        elif cfg.sampler == "ddpm":
            x0 = ddpm_sample(sched, model, x_T, generator=gen, progress=True)
        elif cfg.sampler == "dpm-solver++":
            x0 = dpm_solver_pp_2m_sample(sched, model, x_T, timestep_grid(t0, steps, cfg.spacing),
                                         progress=True)
        else:
            sch = continuous_schedule(stored, T)
            if cfg.sampler == "pf-ode":
                t_start = min(float(sch.time_of_edm_sigma(sigma_max)), 1.0)
                x0 = pf_ode_sample_euler(sch, model, steps, x_T, t_start=t_start, progress=True)
            else:
                x_tilde, _ = vp_to_edm(1.0 / (1.0 + sigma_max**2), x_T)
                sigmas = edm_sigmas(steps, sigma_min, sigma_max)
                run = edm_sample_heun if cfg.sampler == "heun" else edm_sample_euler
                x0 = run(sch, model, x_tilde, sigmas, progress=True)
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
