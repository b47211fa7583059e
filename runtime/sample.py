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
- `pf-ode`: `runtime.pf_ode.pf_ode_sample_euler`, Euler on the probability-flow ODE of the VP SDE
  with β(t) = T·beta_start + t·T·(beta_end − beta_start), the continuous limit of the linear
  schedule the model was trained with. Only checkpoints trained with `--schedule linear` have
  such a limit; for a cosine checkpoint this is an error.

Whatever the checkpoint's network predicts (ε, x0 or v, `--prediction` of runtime.train) goes
through `runtime.prediction`. A class-conditional checkpoint draws --class K (every image of
class K) or, without --class, 10 rows with row k of class k, guided with --guidance-scale s:
ε(x, ∅) + s·(ε(x, c) − ε(x, ∅)) (s = 1 + w of Ho & Salimans 2022; s = 1: no guidance).
The EMA weights are used when the checkpoint has them (--no-ema for the raw weights). All noise
comes from one generator seeded with --seed. The output is a PNG grid (`.png`) or an `.npy` array
(N, C, H, W) float32 in [0, 1] (`.npy`), written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from runtime.artifacts import image_grid, save_npy, save_png
from runtime.checkpoint import load_checkpoint, restore_for_inference
from runtime.cli import fail, run_main
from runtime.config import SampleConfig, parse_config
from runtime.data.transforms import from_diffusion_range
from runtime.ddim import ddim_sample_strided
from runtime.ddpm import ddpm_sample
from runtime.guidance import GuidedModel
from runtime.pf_ode import VPLinearSchedule, pf_ode_sample_euler
from runtime.schedule import timestep_grid
from runtime.train import resolve_device

DEFAULT_STEPS = 50


def check_output_path(out: Path) -> None:
    if out.is_dir():
        fail(f"--out {out} is a folder; expected a .png or .npy file name")
    folder = out.parent
    if not folder.is_dir():
        fail(f"--out {out}: folder {folder} does not exist")


def sample(cfg: SampleConfig) -> Path:
    """Draw cfg.n images and write cfg.out; return its path."""
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
    if cfg.sampler == "pf-ode" and stored.get("schedule") != "linear":
        fail(f"--sampler pf-ode needs a model trained with --schedule linear (the VP SDE with "
             f"linear β(t)); {cfg.checkpoint} used --schedule {stored.get('schedule')}")
    if cfg.sampler == "pf-ode" and stored.get("zero_terminal_snr"):
        fail("--sampler pf-ode integrates the linear VP SDE, not the zero-terminal-SNR schedule "
             f"{cfg.checkpoint} was trained with; use --sampler ddim or ddpm")
    if cfg.sampler != "ddim" and cfg.spacing != "even":
        fail(f"--spacing chooses the DDIM grid; --sampler {cfg.sampler} has none")
    steps = cfg.steps if cfg.steps is not None else min(DEFAULT_STEPS, T)
    num_classes = int(derived["model"].get("num_classes", 0))
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

    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    x_T = torch.randn((n, C, H, W), generator=gen, device=device)
    with torch.no_grad():
        if cfg.sampler == "ddim":
            x0 = ddim_sample_strided(sched, model, x_T, timestep_grid(T, steps, cfg.spacing),
                                     eta=cfg.eta, clip=cfg.clip, generator=gen, progress=True)
        elif cfg.sampler == "ddpm":
            x0 = ddpm_sample(sched, model, x_T, generator=gen, progress=True)
        else:
            sch = VPLinearSchedule(beta0=T * float(stored["beta_start"]),
                                   beta1=T * float(stored["beta_end"]))
            x0 = pf_ode_sample_euler(sch, model, steps, x_T, progress=True)
    images01 = from_diffusion_range(x0).clamp(0.0, 1.0).float().cpu().numpy()  # (N, C, H, W)
    if out.suffix.lower() == ".npy":
        save_npy(out, images01.astype(np.float32))
    else:
        save_png(out, image_grid(images01, ncol=ncol))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    cfg, _ = parse_config(SampleConfig, None if argv is None else list(argv),
                          prog="python -m runtime.sample",
                          description="Sample images from a runtime.train checkpoint "
                                      "(EMA weights when present).")
    out = sample(cfg)
    print(f"wrote samples ({cfg.sampler}) to {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
