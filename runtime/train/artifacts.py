"""What a finished run leaves in its folder (rank 0): samples.png (DDIM, --sample-steps, --eta,
clipped x̂0, EMA weights when on), reference.png (held-out test images), noisy.png (them at
t = --reconstruct-step), reconstruct.png (DDIM with clipped x̂0 from there back to t = 0, as in
TorchLean), the PPM files asked for, the quality figure, train_log.json and loss.png.

A flow run (--objective flow) draws them with flow Euler instead (`PICTURES`): samples.png from
σ = 1 over σ_i = 1 − i/S (S = --sample-steps), noisy.png the references at σ = 0.5
(x_σ = (1 − σ)·x0 + σ·ε) and reconstruct.png flow Euler from there back to σ = 0 over
σ_i = 0.5·(1 − i/k), k = max(1, S // 2) (steps of the samples' length).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runtime.data.transforms import from_diffusion_range, to_diffusion_range
from runtime.ddim import ddim_sample_strided, ddim_timesteps
from runtime.flow import RectifiedFlow, flow_euler_sample, flow_interpolation, flow_sigmas
from runtime.forward import q_sample
from runtime.guidance import GuidedModel
from runtime.model import model_from_description
from runtime.plumbing.artifacts import (
    QUARTILES_SIGMA,
    QUARTILES_T,
    image_grid,
    save_json,
    save_loss_plot,
    save_png,
    save_ppm,
)
from runtime.plumbing.config import TrainConfig, objective_foreign_fields
from runtime.schedule import Schedule
from runtime.train_step import OBJECTIVES

from .rng import STREAM_QUALITY, STREAM_SAMPLE, make_generator
from .run import Run, TrainData, say

FLOW_RECONSTRUCT_SIGMA = 0.5
"""The flow run's noisy.png: the reference images at σ = 0.5 (half data, half noise)."""


@dataclass(frozen=True)
class Pictures:
    """How a run of one objective draws its pictures and names its loss: `sample(cfg, sched,
    model, x_T, gen)` the samples from x_T ~ N(0, I); `noised(cfg, sched, x0, noise)` the noisy
    references; `back(cfg, sched, model, noisy)` their reconstruction (Shapes: (B, C, H, W) in
    [-1, 1]); `notes(cfg, target)` train_log.json's loss and quartile notes; `title(cfg)` the
    loss plot's; `quartiles` the plot's labels of the four time quartiles."""

    sample: Callable[..., torch.Tensor]
    noised: Callable[..., torch.Tensor]
    back: Callable[..., torch.Tensor]
    notes: Callable[[TrainConfig, str], dict[str, str]]
    title: Callable[[TrainConfig], str]
    quartiles: tuple[str, ...]


def _ddim_back(cfg: TrainConfig, sched: Schedule, model: Any, noisy: torch.Tensor) -> torch.Tensor:
    t_r = cfg.reconstruct_t
    grid = ddim_timesteps(t_r, min(cfg.sample_steps, t_r))
    return ddim_sample_strided(sched, model, noisy, grid, eta=0.0, clip=True)


PICTURES: dict[str, Pictures] = {
    "vp": Pictures(
        sample=lambda cfg, sched, model, x_T, gen: ddim_sample_strided(
            sched, model, x_T, ddim_timesteps(cfg.T, cfg.sample_steps), gen, eta=cfg.eta,
            clip=True),
        noised=lambda cfg, sched, x0, noise: q_sample(sched, x0, cfg.reconstruct_t, noise),
        back=_ddim_back,
        notes=lambda cfg, target: {
            "loss_note": f"final_loss and the curve: the unweighted {target}-MSE of the "
                         f"{cfg.prediction}-prediction loss (before any min-SNR weight)",
            "quartile_note": f"mean {target}-MSE of the last log interval for t in (0, T/4], "
                             "(T/4, T/2], (T/2, 3T/4], (3T/4, T]"},
        title=lambda cfg: f"{cfg.prediction}-prediction, {cfg.schedule} betas, T={cfg.T}",
        quartiles=QUARTILES_T),
    "flow": Pictures(
        sample=lambda cfg, sched, model, x_T, gen: flow_euler_sample(
            RectifiedFlow(), model, x_T, flow_sigmas(cfg.sample_steps)),
        noised=lambda cfg, sched, x0, noise: flow_interpolation(x0, FLOW_RECONSTRUCT_SIGMA,
                                                                noise),
        back=lambda cfg, sched, model, noisy: flow_euler_sample(
            RectifiedFlow(), model, noisy,
            FLOW_RECONSTRUCT_SIGMA * flow_sigmas(max(1, cfg.sample_steps // 2))),
        notes=lambda cfg, target: {
            "loss_note": f"final_loss and the curve: the flow-matching MSE of the velocity "
                         f"target {target} at σ from the {cfg.flow_sigma} density (unweighted)",
            "quartile_note": f"mean {target}-MSE of the last log interval for σ in [0, 1/4), "
                             "[1/4, 1/2), [1/2, 3/4), [3/4, 1]"},
        title=lambda cfg: f"rectified flow, {cfg.flow_sigma} σ", quartiles=QUARTILES_SIGMA),
}
"""`--objective` → how its run draws samples.png, noisy.png and reconstruct.png."""


def write_artifacts(cfg: TrainConfig, out: Path, model: torch.nn.Module, sched: Schedule,
                    test_x: np.ndarray, device: torch.device) -> dict[str, str]:
    """samples.png, reference.png, noisy.png, reconstruct.png (and PPMs when asked)."""
    gen = make_generator(cfg.seed, STREAM_SAMPLE, device)
    pictures = PICTURES[cfg.objective]
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
        # Samples: x_T ~ N(0, I), DDIM on the strided grid with clipped x̂0 (flow: flow Euler).
        x_T = torch.randn((n, C, H, W), generator=gen, device=device)
        samples = pictures.sample(cfg, sched, sample_model, x_T, gen)
        n = cfg.n_samples
        # Reference images (held out), noised to t_r, then DDIM (η = 0, clipped x̂0) back to 0
        # (flow: to σ = 0.5, then flow Euler back to σ = 0).
        ref01 = torch.from_numpy(np.array(test_x[:n], dtype=np.float32)).to(device)
        noise = torch.randn(ref01.shape, generator=gen, device=device)
        noisy = pictures.noised(cfg, sched, to_diffusion_range(ref01), noise)
        recon = pictures.back(cfg, sched, model, noisy)
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


def sampling_model(run: Run) -> torch.nn.Module:
    """A fresh copy of the network with the EMA weights (the raw ones when EMA is off), in eval
    mode on the run's device."""
    sample_model = model_from_description(run.derived["model"])
    model, ema_state = run.model, run.update.ema_state_dict(run.model)
    sample_model.load_state_dict(ema_state if ema_state is not None else model.state_dict())
    return sample_model.to(run.device).eval()


def finish(run: Run, out: Path, data: TrainData, times: dict[str, float], start_step: int,
           resumed: bool) -> None:
    """Artifacts, the quality figure, train_log.json, --log and loss.png of a finished run.
    `times`: t_start (the command's start), session_train_s (this session's loop time)."""
    cfg, state = run.cfg, run.state
    t_art = time.perf_counter()
    sample_model = sampling_model(run)
    paths = write_artifacts(cfg, out, sample_model, run.sched, data.test.x, run.device)
    artifacts_s = time.perf_counter() - t_art
    quality = None
    if data.train is not None:
        from runtime.plumbing.quality import DEFAULT_SAMPLES, capacity, draw_and_score

        n_quality = (min(capacity(data.train, data.test), DEFAULT_SAMPLES)
                     if cfg.quality_samples is None else cfg.quality_samples)
        if n_quality >= 2 and capacity(data.train, data.test) >= 2:
            quality = draw_and_score(sample_model, run.sched, n_quality,
                                     make_generator(cfg.seed, STREAM_QUALITY, run.device),
                                     run.device, data.train, data.test,
                                     objective=cfg.objective)
    steps_done = state.step - start_step
    last = state.history[-1] if state.history else {}
    target = OBJECTIVES[cfg.objective].symbol(cfg)  # the loss curve is the MSE of this target
    pictures = PICTURES[cfg.objective]
    notes = {
        "dataset": cfg.dataset, "data_dir": cfg.data_dir, "n_train": len(data.x),
        "image_shape": data.image_shape, "device": str(run.device),
        "world_size": run.info.world_size, "fast_kernels": cfg.fast_kernels,
        "kernels": run.kernels.as_log(), "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "objective": cfg.objective, "flow_sigma": cfg.flow_sigma,
        "model": cfg.model, "hidden": cfg.hidden_c, "blocks": cfg.residual_blocks,
        "down_blocks": cfg.stage_blocks,
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "prediction": cfg.prediction, "min_snr_gamma": cfg.min_snr_gamma,
        "schedule": cfg.schedule, "T": cfg.T, "beta_start": cfg.beta_start,
        "beta_end": cfg.beta_end, "lr": cfg.lr, "lr_schedule": cfg.lr_schedule,
        "warmup_steps": cfg.warmup_steps, "batch_size": cfg.batch_size,
        "global_batch": run.global_batch, "ema_decay": cfg.ema_decay,
        "ema_warmup": cfg.ema_warmup, "seed": cfg.seed,
        "steps": cfg.steps, "resumed_from_step": start_step if resumed else None,
        "sample_steps": cfg.sample_steps, "eta": cfg.eta, "reconstruct_step": cfg.reconstruct_t,
        "train_time_s": round(state.train_time_s, 3),
        "steps_per_s": (round(steps_done / times["session_train_s"], 3) if steps_done
                        else None),
        "artifacts_time_s": round(artifacts_s, 3),
        "wall_time_s": round(time.perf_counter() - times["t_start"], 3),
        "final_loss": last.get("loss"),
        "quartile_loss": last.get("quartile_loss"),
        **pictures.notes(cfg, target),
        "skipped_steps": last.get("skipped", 0),
        "quality": quality,
    }
    for name in objective_foreign_fields(cfg.objective):  # settings this objective never read
        if name in notes:
            notes[name] = None
    log: dict[str, Any] = {"notes": notes, "curve": state.history, "artifacts": paths}
    save_json(out / "train_log.json", log)
    if cfg.log is not None:
        save_json(cfg.log, log)
    save_loss_plot(out / "loss.png", state.history,
                   title=f"{cfg.dataset}: {cfg.model} net, {pictures.title(cfg)}", target=target,
                   quartiles=pictures.quartiles)
    if quality is not None:
        from runtime.plumbing.quality import format_quality

        say(run.info, "sample quality (Fréchet distance in classifier features, ÷ floor): "
                      f"{format_quality(quality)}")
    say(run.info, f"done: {state.step} steps, final loss {notes['final_loss']}, "
                  f"wall time {notes['wall_time_s']:.1f} s; run folder: {out}")
