"""`make mutants`: show that the conformance suite catches realistic single-line bugs.

Each mutant is a literal (file, old line, new line) replacement in `runtime/`. The script copies
`runtime/` into a temporary directory (spec/, conformance/, conftest.py and pyproject.toml are
symlinked beside it), checks that every mutant's old line occurs exactly once (it stops, naming
the mutant, if the source has changed), runs the suite once unmutated (it must pass), then
applies one mutant at a time and runs `pytest conformance -x` (the precision mutants, which the
random records see only sometimes, run only the fixed cases that are there for them:
conformance/test_precision.py). The working tree is never modified. It prints a table and the kill rate, and exits 1 if any mutant survives.

A second group, the pipeline mutants (P1, P2, …), plants bugs between the functions: the train
loop, data loading, checkpoint, sample, evaluate, artifacts, DDP and the quality metric. Each is
run against the tests of `make test` that should catch it (listed with the mutant; the group's
baseline runs all of them unmutated first), and the group is reported separately.

    python scripts/mutants.py                    # all mutants, both groups
    python scripts/mutants.py --group pipeline   # the pipeline mutants only
    python scripts/mutants.py --list             # the table of mutants, without running
    python scripts/mutants.py --only 1,4,P2      # some of them
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINKED = ["spec", "conformance", "tests", "conftest.py", "pyproject.toml"]


@dataclass(frozen=True)
class Mutant:
    bug: str
    file: str  # relative to runtime/
    old: str  # the exact line (without indentation differences: compared verbatim)
    new: str
    tests: tuple[str, ...] = ("conformance",)  # what `pytest -x` runs against the mutant


PRECISION = ("conformance/test_precision.py",)
"""What the precision mutants run against (the rest of `conformance` passes them: the gap)."""

MUTANTS = [
    Mutant("time index off by one (DDPM step's x̂0 read at t − 1, the old step index k)",
           "ddpm.py", "    x0_hat = denoise(sched, model, x_t, t)[0]",
           "    x0_hat = denoise(sched, model, x_t, t - 1)[0]"),
    Mutant("time normalised by T − 1",
           "schedule.py", "    return t / T", "    return t / (T - 1)"),
    Mutant("x0 clipping missing in DDIM",
           "ddim.py", "        x0 = x0.clamp(-1.0, 1.0)", "        x0 = x0"),
    Mutant("noise consumed in the wrong order (noise[T − t] at time t)",
           "ddpm.py", "            z = noise[t - 1]", "            z = noise[T - t]"),
    Mutant("variance β_t used instead of β̃_t in the DDPM step",
           "schedule.py", '        "sqrt_beta_tilde": sqrt_nonneg(beta_tilde),',
           '        "sqrt_beta_tilde": sqrt_nonneg(beta),'),
    Mutant("residual skip dropped (TorchLean residual net)",
           "model.py", "            h = F.relu(h + block(h))", "            h = F.relu(block(h))"),
    Mutant("missing sqrt on ᾱ_t",
           "schedule.py", '        "sqrt_alpha_bar": sqrt_nonneg(alpha_bar),',
           '        "sqrt_alpha_bar": alpha_bar,'),
    Mutant("wrong sign of the score term in the PF ODE drift",
           "pf_ode.py", "    return (drift_x * x.to(wd) + drift_eps * eps_hat).to(x.dtype)",
           "    return (drift_x * x.to(wd) - drift_eps * eps_hat).to(x.dtype)"),
    Mutant("time channel placed first instead of last",
           "model.py", "    return torch.cat([x, time], dim=-3)",
           "    return torch.cat([time, x], dim=-3)"),
    Mutant("strided DDIM steps to t − 1 instead of the grid's next time",
           "ddim.py", "        x = ddim_step_between(sched, model, ts[i], ts[i + 1], x, eta, z, clip)",
           "        x = ddim_step_between(sched, model, ts[i], ts[i] - 1, x, eta, z, clip)"),
    Mutant("TorchLean's PF ODE drift (the ½ on the score term missing)",
           "pf_ode.py", "        drift_eps = 0.5 * safe_div(beta, sqrt_1m)",
           "        drift_eps = safe_div(beta, sqrt_1m)"),
    Mutant("TorchLean's Euler time order (drift read at h, 2h, …, 1)",
           "pf_ode.py", "        t_i, dt = ts[i], ts[i + 1] - ts[i]",
           "        t_i, dt = ts[0] - ts[i + 1], ts[i + 1] - ts[i]"),
    Mutant("FiLM scale applied as r·scale instead of r·(1 + scale)",
           "model.py", "        r = self.norm2(r) * (1 + scale) + shift",
           "        r = self.norm2(r) * scale + shift"),
    Mutant("loss regresses x0 instead of ε",
           "loss.py", "    return mse(model(x_t, t_norm), eps)", "    return mse(model(x_t, t_norm), x0)"),
    Mutant("safe_div without EPS",
           "core.py", "    return x / (y + EPS)", "    return x / y"),
    Mutant("cosine schedule without the max_beta clamp",
           "schedule.py", "    return torch.clamp(1.0 - f[1:] / f[:-1], max=max_beta)",
           "    return 1.0 - f[1:] / f[:-1]"),
    Mutant("DDIM grid rounded down instead of half-up",
           "ddim.py", "    return [(T * (n - i) + n // 2) // n for i in range(n + 1)]",
           "    return [(T * (n - i)) // n for i in range(n + 1)]"),
    Mutant("per-sample t: every sample gets the first sample's coefficient",
           "schedule.py",
           "            values = self.cast(dtype, like.device)[t.to(device=like.device)]  # (B,)",
           "            values = self.cast(dtype, like.device)[t.to(device=like.device)][:1]"),
    Mutant("DDIM σ without η",
           "ddim.py", "    sigma_eta = eta * sqrt_nonneg(_ratio(1.0 - ab_prev, 1.0 - ab)) * sqrt_nonneg(",
           "    sigma_eta = sqrt_nonneg(_ratio(1.0 - ab_prev, 1.0 - ab)) * sqrt_nonneg("),
    Mutant("L_0 decoder variance β̃_1 (= 0) instead of β̃_2 (reference-code convention)",
           "likelihood.py",
           'DECODER_VARIANCE = {"beta_tilde_2": ("beta_tilde", 2), "beta_1": ("beta", 1)}',
           'DECODER_VARIANCE = {"beta_tilde_2": ("beta_tilde", 1), "beta_1": ("beta", 1)}'),
    Mutant("L_0 decoder variance β_2 instead of β_1 (beta-1 convention)",
           "likelihood.py",
           'DECODER_VARIANCE = {"beta_tilde_2": ("beta_tilde", 2), "beta_1": ("beta", 1)}',
           'DECODER_VARIANCE = {"beta_tilde_2": ("beta_tilde", 2), "beta_1": ("beta", 2)}'),
    Mutant("model variance β̃_t instead of β_t in L_{t−1} (fixed-large convention)",
           "likelihood.py",
           'REVERSE_VARIANCE = {"fixed_small": "beta_tilde", "fixed_large": "beta"}',
           'REVERSE_VARIANCE = {"fixed_small": "beta_tilde", "fixed_large": "beta_tilde"}'),
    Mutant("x̂0 not clipped in the bound (reference-code convention)",
           "likelihood.py", "        x0_hat = x0_hat.clamp(-1.0, 1.0)", "        x0_hat = x0_hat"),
    Mutant("Heun without its correction step (Euler posing as Heun)",
           "edm.py", "        return (x.to(wd) + dsig * (0.5 * d + 0.5 * d_next)).to(x.dtype)",
           "        return x_euler.to(x.dtype)"),
    Mutant("EDM σ grid ramp i/N instead of i/(N − 1) (σ_min never reached)",
           "edm.py", "    ramp = torch.arange(n, dtype=torch.float64) / max(n - 1, 1)",
           "    ramp = torch.arange(n, dtype=torch.float64) / n"),
    Mutant("EDM denoiser fed σ as the model's time instead of t(σ)",
           "edm.py", "        t_norm = sch.time_of_edm_sigma(float(sigma))",
           "        t_norm = float(sigma)"),
    Mutant("DPM-Solver++ reuses the current step's x̂0 as the previous one",
           "dpm_solver.py",
           "        x = dpm_solver_pp_2m_step(sched, x, x0, ts[i], ts[i + 1], x0_prev, t_prev)",
           "        x = dpm_solver_pp_2m_step(sched, x, x0, ts[i], ts[i + 1], x0_prev if x0_prev "
           "is None else x0, t_prev)"),
    Mutant("DPM-Solver++ lower-order final step never fires (second order into λ = ∞)",
           "dpm_solver.py",
           "        c = torch.where(ab_next < 1.0, c, torch.zeros_like(c)).to(wd)",
           "        c = c.to(wd)"),
    Mutant("cosine β(t) = −d log ᾱ/dt off by 2 (the derivative of cos u, not of cos²u)",
           "pf_ode.py", "        return _back(math.pi / (1 + self.s) * tan, t)",
           "        return _back(math.pi / 2 / (1 + self.s) * tan, t)"),
    Mutant("PF ODE drift coefficients computed in the working dtype (float32), not float64",
           "pf_ode.py", "        tc = t.to(device=x.device, dtype=coef_dtype(x.device))",
           "        tc = t.to(device=x.device, dtype=wd)"),
    # --- prediction targets, timestep grids, zero terminal SNR, min-SNR, guidance ---
    Mutant("v built with the two square roots swapped",
           "prediction.py", "        target=lambda sqrt_ab, sqrt_1m: (-sqrt_1m, sqrt_ab, 1),",
           "        target=lambda sqrt_ab, sqrt_1m: (-sqrt_ab, sqrt_1m, 1),"),
    Mutant("x̂0 of a v-prediction with the wrong sign",
           "prediction.py", "        x0=lambda sqrt_ab, sqrt_1m: (sqrt_ab, -sqrt_1m, 1),",
           "        x0=lambda sqrt_ab, sqrt_1m: (sqrt_ab, sqrt_1m, 1),"),
    Mutant("ε̂ of an x0-prediction divided by √ᾱ instead of √(1 − ᾱ)",
           "prediction.py", "        eps=lambda sqrt_ab, sqrt_1m: (1, -sqrt_ab, sqrt_1m),",
           "        eps=lambda sqrt_ab, sqrt_1m: (1, -sqrt_ab, sqrt_ab),"),
    Mutant("min-SNR applied as max",
           "prediction.py", "        min_snr=lambda s, g: torch.minimum(s, g),",
           "        min_snr=lambda s, g: torch.maximum(s, g),"),
    Mutant("an ε-model sampled at ᾱ_T = 0 without the error (per-sample t unchecked)",
           "prediction.py",
           "    hit = bool((t >= first).any()) if isinstance(t, Tensor) else t >= first",
           "    hit = False if isinstance(t, Tensor) else t >= first"),
    Mutant("SNR as (1 − ᾱ)/ᾱ",
           "schedule.py", '        "snr": safe_div(alpha_bar, one_minus_alpha_bar),',
           '        "snr": safe_div(one_minus_alpha_bar, alpha_bar),'),
    Mutant("min-SNR weight computed but not applied to the loss",
           "loss.py", "        losses = losses * weight.to(device=losses.device, dtype=wd)",
           "        losses = losses"),
    Mutant("trailing grid starts at T − 1 (diffusers' 0-based times taken as ours)",
           "schedule.py", "        times = [_round_half_even(T * (n - i), n) for i in range(n)]",
           "        times = [_round_half_even(T * (n - i), n) - 1 for i in range(n)]"),
    Mutant("leading grid without the +1 (diffusers' 0-based times taken as ours)",
           "schedule.py", "        times = [1 + (n - 1 - i) * (T // n) for i in range(n)]",
           "        times = [(n - 1 - i) * (T // n) for i in range(n)]"),
    Mutant("linspace grid rounded down instead of to nearest",
           "schedule.py",
           "        times = [_round_half_even((n - 1) + (n - 1 - i) * (T - 1), n - 1) for i in range(n)]",
           "        times = [((n - 1) + (n - 1 - i) * (T - 1)) // (n - 1) for i in range(n)]"),
    Mutant("zero terminal SNR shifted but not rescaled (√ᾱ_1 changes)",
           "schedule.py", "    ab = (s1 * ((s - sT) / (s1 - sT))) ** 2", "    ab = (s - sT) ** 2"),
    Mutant("guidance mixes the outputs the wrong way round (cond and uncond swapped)",
           "guidance.py", "        cond, uncond = out.chunk(2)", "        uncond, cond = out.chunk(2)"),
    Mutant("conditional net ignores its label (label embedding not added)",
           "model.py", "        silu_e = F.silu(e if extra is None else e + extra)  # (B, E)",
           "        silu_e = F.silu(e)  # (B, E)"),
    # --- precision: a coefficient formed in the working dtype (float32) instead of float64 near
    # ᾱ = 1, where 1 − ᾱ cancels (6e-4 relative on a coefficient of size 1e-2 at t = 1). The
    # random records reach such t only sometimes (and the ones with a model keep a flat
    # tolerance far above it), so each is run against the fixed t = 1 / small-t / t = T cases,
    # held to the formula's conditioning (conformance/test_precision.py).
    Mutant("√(1 − ᾱ) of a given ᾱ formed after rounding ᾱ to the working dtype",
           "prediction.py",
           "    ab = torch.as_tensor(ab, dtype=coef_dtype(like.device), device=like.device)",
           "    ab = torch.as_tensor(ab, dtype=work_dtype(like.dtype), device=like.device)",
           PRECISION),
    Mutant("√(1 − ᾱ_t) of the conversions from the float32 ᾱ_t table, not the float64 root",
           "prediction.py",
           "    return (sched.sqrt_alpha_bar.at(t, like), sched.sqrt_one_minus_alpha_bar.at(t, like))",
           "    return (sched.sqrt_alpha_bar.at(t, like), sqrt_nonneg(1.0 - sched.alpha_bar.at(t, like)))",
           PRECISION),
    Mutant("DPM-Solver++'s σ_next/σ_t formed from ᾱ cast to the working dtype",
           "dpm_solver.py",
           "    ratio = safe_div(sqrt_nonneg(1.0 - ab_next), sqrt_nonneg(1.0 - ab)).to(wd)",
           "    ratio = safe_div(sqrt_nonneg(1.0 - ab_next.to(wd)), sqrt_nonneg(1.0 - ab.to(wd)))",
           PRECISION),
    Mutant("DPM-Solver++'s λ_t (log(1 − ᾱ)) from ᾱ cast to the working dtype",
           "dpm_solver.py",
           "        lam, lam_next = half_log_snr(ab), half_log_snr(ab_next)",
           "        lam, lam_next = half_log_snr(ab.to(wd)), half_log_snr(ab_next.to(wd))",
           PRECISION),
    Mutant("DDIM's σ_η formed from the working-dtype ᾱ_t",
           "ddim.py", "    ab = sched.alpha_bar.coef(t, x_t)  # ᾱ_t, float64",
           "    ab = sched.alpha_bar.at(t, x_t)  # ᾱ_t, float64", PRECISION),
    Mutant("EDM denoiser's √(1 − ᾱ) from ᾱ = 1/(1 + σ²) cast to the working dtype",
           "edm.py", "    ab = _coef(ab, x_tilde)", "    ab = _cast(_coef(ab, x_tilde), wd)",
           PRECISION),
    Mutant("DDPM's σ_t² = β̃_t formed from the working-dtype ᾱ tables (as diffusers' "
           "_get_variance does)",
           "ddpm.py", "    sigma_t = VARIANCES[variance](sched).at(t, x_t)",
           '    sigma_t = VARIANCES[variance](sched).at(t, x_t) if variance == "fixed_large" else '
           "torch.sqrt((1.0 - sched.alpha_bar_prev.at(t, x_t)) * sched.beta.at(t, x_t) / "
           "(1.0 - sched.alpha_bar.at(t, x_t)))",
           PRECISION),
    Mutant("ddim_prev's √(1 − ᾱ_prev) of a given ᾱ_prev rounded to the working dtype",
           "ddim.py", "    ab_prev = torch.as_tensor(ab_prev, dtype=cd, device=x_t.device)",
           "    ab_prev = torch.as_tensor(ab_prev, dtype=wd, device=x_t.device)", PRECISION),
    Mutant("DPM-Solver++(3M)'s λ_t from the working-dtype ᾱ_t",
           "dpm_solver.py", "    lam0 = half_log_snr(sched.alpha_bar.coef(t, x_t))",
           "    lam0 = half_log_snr(sched.alpha_bar.at(t, x_t))", PRECISION),
    Mutant("DPM-Solver++(2S)'s λ_t from the working-dtype ᾱ_t",
           "dpm_solver.py", "    lam = half_log_snr(sched.alpha_bar.coef(t, x_t))",
           "    lam = half_log_snr(sched.alpha_bar.at(t, x_t))", PRECISION),
    Mutant("UniPC's λ from the schedule's default-dtype ᾱ table, not the float64 one",
           "unipc.py", "    ab = float(sched.alpha_bar.float64[t])",
           "    ab = float(sched.alpha_bar[t])", PRECISION),
    Mutant("VP → EDM σ = √((1 − ᾱ)/ᾱ) of a float64 ᾱ formed in the working dtype",
           "edm.py",
           "                        else safe_div(1.0 - alpha_bar.double(), alpha_bar.double()))",
           "                        else safe_div(1.0 - alpha_bar.to(wd), alpha_bar.to(wd)))",
           PRECISION),
    Mutant("VP → flow σ = √(1 − ᾱ)/c of a float64 ᾱ formed in the working dtype",
           "flow.py", "        ab = alpha_bar.double()",
           "        ab = alpha_bar.to(work_dtype(x_t.dtype))", PRECISION),
    Mutant("ancestral σ_up, σ_down of tensor σ's in float32 (σ² − σ_next² cancels)",
           "edm.py", "    s = torch.as_tensor(sigma, dtype=torch.float64)",
           "    s = torch.as_tensor(sigma, dtype=torch.float32)", PRECISION),
    Mutant("min-SNR-γ weights from SNR of the schedule's default-dtype ᾱ (as diffusers' "
           "compute_snr does)",
           "prediction.py", "    s = snr(sched, t)",
           "    s = safe_div(sched.alpha_bar[t], 1.0 - sched.alpha_bar[t])", PRECISION),
    Mutant("the posterior mean's products in a 16-bit input's dtype (a 0-d coefficient of an "
           "int t does not promote them)",
           "forward.py", "        sched.mu_tilde_coef_x0.at(t, x0) * x0.to(wd)",
           "        sched.mu_tilde_coef_x0.at(t, x0) * x0", PRECISION),
    Mutant("the half-resolution stage pools by taking one pixel of each 2×2 window, not the mean",
           "model.py", "    return F.avg_pool2d(x, 2)", "    return x[..., ::2, ::2]"),
]


PIPE = "tests/test_train_pipeline.py::"
SPEC = "tests/test_commands_match_spec.py::"
# Pipeline mutants: bugs between the functions (train loop, data, checkpoint, sample, evaluate,
# artifacts, DDP, the quality metric), each run against the tests of `make test` that should
# catch it (`make test` whole is too slow to run twenty times on two cores).
PIPELINE_MUTANTS = [
    Mutant("t drawn from {0..T−1} instead of {1..T}",
           "train_step.py",
           "        draw=lambda cfg, B, gen: torch.randint(1, cfg.T + 1, (B,), generator=gen),",
           "        draw=lambda cfg, B, gen: torch.randint(0, cfg.T, (B,), generator=gen),",
           (PIPE + "test_t_noise_and_data_drawn_by_the_real_trainer",)),
    Mutant("t never reaches T (randint's exclusive bound)",
           "train_step.py",
           "        draw=lambda cfg, B, gen: torch.randint(1, cfg.T + 1, (B,), generator=gen),",
           "        draw=lambda cfg, B, gen: torch.randint(1, cfg.T, (B,), generator=gen),",
           (PIPE + "test_t_noise_and_data_drawn_by_the_real_trainer",)),
    Mutant("the same noise every step (generator re-seeded each step)",
           "train/run.py",
           "    noise = info.shard(torch.randn((B, C, H, W), generator=streams.noise,",
           "    noise = info.shard(torch.randn((B, C, H, W), generator=Streams.create("
           "cfg.seed, 1, run.device, False).noise,",
           (PIPE + "test_t_noise_and_data_drawn_by_the_real_trainer",)),
    Mutant("training data mapped to [−1, 1] twice (once on load, once in the step)",
           "train/run.py",
           "    x = torch.from_numpy(np.array(x01, dtype=np.float32, copy=True))",
           "    x = torch.from_numpy(np.array(x01, dtype=np.float32, copy=True)) * 2 - 1",
           (PIPE + "test_t_noise_and_data_drawn_by_the_real_trainer",)),
    Mutant("no shuffling: every epoch in index order",
           "train/rng.py",
           "                self.perm = torch.randperm(self.n, generator=self.generator)",
           "                self.perm = torch.arange(self.n)",
           (PIPE + "test_t_noise_and_data_drawn_by_the_real_trainer",)),
    Mutant("the step trains on [0, 1] data (to_diffusion_range missing)",
           "train_step.py",
           '    per = prediction_loss(sched, model, x0, t, eps, None, prediction, reduction="none")  # (B,)',
           '    per = prediction_loss(sched, model, x01, t, eps, None, prediction, reduction="none")  # (B,)',
           ("conformance/test_conformance.py::test_matches_spec[train_loss-float64-cpu]",)),
    Mutant("EMA weight decay instead of 1 − decay",
           "train_step.py", "    weight = 1.0 - decay", "    weight = decay",
           ("conformance/test_conformance.py::test_matches_spec[train_step-float64-cpu]",
            "conformance/test_train_step_fixed.py")),
    Mutant("Adam's β2 = 0.99 in the optimizer the trainer builds",
           "train_step.py",
           "    return torch.optim.Adam(params, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS, fused=True)",
           "    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99), eps=ADAM_EPS, fused=True)",
           ("conformance/test_conformance.py::test_matches_spec[train_step-float64-cpu]",)),
    Mutant("gradients never zeroed (each step adds to the last one's)",
           "train_step.py", "    update.optimizer.zero_grad(set_to_none=True)", "    pass",
           (PIPE + "test_each_step_uses_only_its_own_gradient",)),
    Mutant("the non-finite guard ignored",
           "train_step.py", "    update.step(finite)", "    update.step(torch.ones_like(finite))",
           (PIPE + "test_a_nan_step_changes_nothing_exactly",)),
    Mutant("checkpoint stores the raw weights as EMA",
           "train/resume.py", '        "ema": update.ema_state_dict(model),',
           '        "ema": model.state_dict(),',
           (PIPE + "test_training_samples_come_from_the_ema_weights",)),
    Mutant("training artifacts drawn from the raw weights, not the EMA",
           "train/artifacts.py",
           "    sample_model.load_state_dict(ema_state if ema_state is not None else "
           "model.state_dict())",
           "    sample_model.load_state_dict(model.state_dict())",
           (PIPE + "test_training_samples_come_from_the_ema_weights",)),
    Mutant("inference loads the raw weights even when EMA is asked for",
           "plumbing/checkpoint.py",
           '    weights = "ema" if use_ema and payload.get("ema") is not None else "model"',
           '    weights = "model"',
           (PIPE + "test_sample_outputs_equal_the_spec_sampler",)),
    Mutant("samples written in [−1, 1] (from_diffusion_range missing)",
           "sample.py",
           "    images01 = from_diffusion_range(x0).clamp(0.0, 1.0).float().cpu().numpy()  "
           "# (N, C, H, W)",
           "    images01 = x0.clamp(0.0, 1.0).float().cpu().numpy()  # (N, C, H, W)",
           (PIPE + "test_sample_outputs_equal_the_spec_sampler",)),
    Mutant("bits/dim reported in nats (ln 2 missing)",
           "evaluate.py", "    to_bpd = 1.0 / (n * per_image * math.log(2))",
           "    to_bpd = 1.0 / (n * per_image)",
           (PIPE + "test_evaluate_bits_per_dim_equals_the_spec",)),
    Mutant("evaluate feeds [0, 1] data to the bound",
           "evaluate.py",
           "    x0_all = to_diffusion_range(torch.from_numpy(x01)).to(device)  # (N, C, H, W) in "
           "[-1, 1]",
           "    x0_all = torch.from_numpy(x01).to(device)  # (N, C, H, W) in [-1, 1]",
           (PIPE + "test_evaluate_bits_per_dim_equals_the_spec",)),
    Mutant("every rank trains on the first slice of the global batch",
           "plumbing/distributed.py",
           "        return global_batch[self.rank * per_rank:(self.rank + 1) * per_rank]",
           "        return global_batch[:per_rank]",
           (PIPE + "test_rank_slices_partition_the_global_batch",)),
    Mutant("Fréchet distance without the factor 2 on the cross term",
           "plumbing/quality.py",
           "    d2 = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * "
           "np.trace(covmean))",
           "    d2 = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - "
           "np.trace(covmean))",
           ("tests/test_quality.py::test_frechet_distance_of_diagonal_gaussians_is_closed_form",)),
    Mutant("Fréchet distance with Σ1^½·Σ2^½ for (Σ1·Σ2)^½ (right only for commuting covariances)",
           "plumbing/quality.py", "    covmean = linalg.sqrtm(s1 @ s2)",
           "    covmean = linalg.sqrtm(s1) @ linalg.sqrtm(s2)",
           ("tests/test_quality.py::test_frechet_distance_of_non_commuting_covariances_is_closed_"
            "form", "tests/test_quality.py::test_frechet_distance_matches_the_symmetric_form_in_"
            "eight_dimensions")),
    Mutant("min-SNR-γ weight of the ε-loss applied whatever the model predicts",
           "train_step.py",
           "        weights = min_snr_weight(sched, t, min_snr_gamma, prediction).to(per.device)",
           "        weights = min_snr_weight(sched, t, min_snr_gamma, \"eps\").to(per.device)",
           ("conformance/test_conformance.py::test_matches_spec[train_loss-float64-cpu]",
            "conformance/test_conformance.py::test_matches_spec[train_step-float64-cpu]")),
    Mutant("labels dropped with probability 1 − p instead of p",
           "train/run.py",
           "        model_args = (torch.where(drop < cfg.label_dropout, run.model.num_classes,",
           "        model_args = (torch.where(drop > cfg.label_dropout, run.model.num_classes,",
           (PIPE + "test_label_dropout_rate_and_kept_labels_of_the_real_trainer",)),
    Mutant("held-out ε-loss of an x0- or v-model from its raw output, not the converted ε̂",
           "evaluate.py", "            eps_hat = predict_eps(sched, x_t, out, t, prediction)",
           "            eps_hat = out",
           (PIPE + "test_evaluate_held_out_losses_equal_the_spec_conversion",)),
    # --- the commands against the spec (tests/test_commands_match_spec.py)
    Mutant("sampler name dispatched to the wrong sampler (--sampler heun runs Euler)",
           "samplers.py",
           '        spec="spec.edm.edm_sample_heun", sample=edm_sample_heun, kind="sigmas",',
           '        spec="spec.edm.edm_sample_heun", sample=edm_sample_euler, kind="sigmas",',
           (SPEC + "test_sample_writes_the_spec_samplers_images",)),
    Mutant("--eta silently ignored (DDIM always deterministic)",
           "sample.py", "    options = {name: getattr(cfg, name) for name in entry.options}",
           '    options = {name: getattr(cfg, name) for name in entry.options if name != "eta"}',
           (SPEC + "test_sample_writes_the_spec_samplers_images",)),
    Mutant("--clip/--no-clip silently ignored (DDIM never clips x̂0)",
           "sample.py", "    options = {name: getattr(cfg, name) for name in entry.options}",
           '    options = {name: getattr(cfg, name) for name in entry.options if name != "clip"}',
           (SPEC + "test_sample_writes_the_spec_samplers_images",)),
    Mutant("--guidance-scale silently ignored (the conditional model alone)",
           "sample.py", "        model = GuidedModel(model, labels, cfg.guidance_scale)",
           "        model = GuidedModel(model, labels, 1.0)",
           (SPEC + "test_sample_writes_the_spec_samplers_images",)),
    Mutant("the table-time grid of dpm-solver++ and unipc ignores its σ cap (starts at T, not t0)",
           "samplers.py", "    return timestep_grid(start.t0, steps, spacing)",
           "    return timestep_grid(start.sched.T, steps, spacing)",
           (SPEC + "test_sample_writes_the_spec_samplers_images",)),
    Mutant("evaluate feeds the first image's time to the whole batch",
           "evaluate.py", "            out = model(x_t, time_of_index(t, T, dtype=x0.dtype))",
           "            out = model(x_t, time_of_index(t[:1].expand_as(t), T, dtype=x0.dtype))",
           (SPEC + "test_evaluate_prints_the_spec_figures",)),
    Mutant("--shift silently ignored (a flow checkpoint's grid left unshifted)",
           "samplers.py", "    return flow_sigmas(steps, start.shift)",
           "    return flow_sigmas(steps)",
           (SPEC + "test_sample_writes_the_spec_samplers_images",)),
    # --- the training options
    Mutant("EMA warm-up without its cap (the decay never settles at --ema-decay)",
           "train_step.py", "    return torch.clamp((1 + n) / (10 + n), max=decay)",
           "    return (1 + n) / (10 + n)",
           ("conformance/test_conformance.py::test_matches_spec[ema_decay_at-float64-cpu]",)),
]


def check_applicable(mutants: list[Mutant]) -> None:
    """Every old line must occur exactly once in its file (the source may have moved on)."""
    problems = []
    for i, m in enumerate(mutants, 1):
        lines = (ROOT / "runtime" / m.file).read_text().splitlines()
        count = lines.count(m.old)
        if count != 1:
            problems.append(f"mutant {i} ({m.bug}): runtime/{m.file} has {count} lines equal to\n"
                            f"    {m.old!r}")
    if problems:
        sys.exit("mutants.py: the runtime source changed; update MUTANTS:\n" + "\n".join(problems))


def make_workdir() -> Path:
    work = Path(tempfile.mkdtemp(prefix="diffspec-mutants-"))
    shutil.copytree(ROOT / "runtime", work / "runtime",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in LINKED:
        (work / name).symlink_to(ROOT / name)
    return work


def env_for(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(work) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # a stale .pyc of another mutant must never be used
    env["HYPOTHESIS_PROFILE"] = "mutants"  # conftest.py: dev without shrinking
    return env


def run_suite(work: Path, tests: tuple[str, ...] = ("conformance",)) -> tuple[bool, str, float]:
    """(passed, first failing test or '', seconds)."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *tests, "-x", "-q", "-p", "no:cacheprovider"],
        cwd=work, env=env_for(work), capture_output=True, text=True,
    )
    seconds = time.perf_counter() - start
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, flags=re.M)
    detail = failed[0] if failed else (proc.stdout.strip().splitlines() or ["?"])[-1]
    return proc.returncode == 0, detail, seconds


def run_group(work: Path, title: str, labelled: list[tuple[str, Mutant]]) -> tuple[int, int]:
    """Baseline (the union of the group's tests must pass), then each mutant; print the table.
    Returns (killed, run)."""
    tests = tuple(dict.fromkeys(t for _, m in labelled for t in m.tests))
    ok, detail, seconds = run_suite(work, tests)
    print(f"\n== {title}\nbaseline (unmutated copy, {len(tests)} test target(s)): "
          f"{'passes' if ok else 'FAILS: ' + detail} ({seconds:.0f} s)", flush=True)
    if not ok:
        return 0, -1
    rows = []
    started = time.perf_counter()
    for label, m in labelled:
        path = work / "runtime" / m.file
        original = path.read_text()
        lines = original.splitlines(keepends=True)
        index = [line.rstrip("\n") for line in lines].index(m.old)
        lines[index] = m.new + "\n"
        path.write_text("".join(lines))
        try:
            survived, detail, seconds = run_suite(work, m.tests)
        finally:
            path.write_text(original)
        rows.append((label, m, not survived, detail, seconds))
        status = "killed  " if not survived else "SURVIVED"
        print(f"{label:>3} {status} {seconds:5.1f} s  runtime/{m.file}: {m.bug}", flush=True)
        if not survived:
            print(f"{'':>17}by {detail}", flush=True)
    killed = sum(1 for r in rows if r[2])
    print()
    print("| # | bug | file | run against | killed by |")
    print("|---|-----|------|-------------|-----------|")
    for label, m, was_killed, detail, _ in rows:
        by = detail.split("::", 1)[-1] if was_killed else "**SURVIVED**"
        print(f"| {label} | {m.bug} | runtime/{m.file} | {' '.join(m.tests)} | {by} |")
    print(f"\n{title}: kill rate {killed}/{len(rows)} = {100.0 * killed / max(1, len(rows)):.0f}% "
          f"({time.perf_counter() - started:.0f} s)")
    return killed, len(rows)


def labelled_mutants(group: str, only: str) -> list[tuple[str, Mutant]]:
    """(label, mutant): conformance mutants are 1, 2, …; pipeline mutants P1, P2, …"""
    everything = [(str(i), m) for i, m in enumerate(MUTANTS, 1)] * (group != "pipeline") + \
        [(f"P{i}", m) for i, m in enumerate(PIPELINE_MUTANTS, 1)] * (group != "conformance")
    wanted = {w.strip().upper() for w in only.split(",") if w.strip()}
    return [(label, m) for label, m in everything if not wanted or label in wanted]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    parser.add_argument("--only", default="", help="comma-separated mutant labels (1, 4, P2)")
    parser.add_argument("--group", choices=["conformance", "pipeline", "all"], default="all",
                        help="conformance mutants (run against `pytest conformance`), pipeline "
                        "mutants (each against its own tests), or both (default)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    check_applicable(MUTANTS + PIPELINE_MUTANTS)
    chosen = labelled_mutants(args.group, args.only)
    if args.list:
        for label, m in chosen:
            print(f"{label:>3}  runtime/{m.file}: {m.bug}\n       - {m.old.strip()}\n"
                  f"       + {m.new.strip()}\n       tests: {' '.join(m.tests)}")
        return 0

    work = make_workdir()
    results = []
    try:
        probe = subprocess.run([sys.executable, "-c", "import runtime; print(runtime.__file__)"],
                               cwd=work, env=env_for(work), capture_output=True, text=True)
        if not probe.stdout.strip().startswith(str(work)):
            sys.exit(f"mutants.py: the copy is not what Python imports ({probe.stdout.strip()!r})")
        for title, group in (("conformance mutants", [c for c in chosen if c[0][0] != "P"]),
                             ("pipeline mutants", [c for c in chosen if c[0][0] == "P"])):
            if group:
                results.append((title, *run_group(work, title, group)))
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    for title, killed, run in results:
        print(f"{title}: " + (f"{killed}/{run} killed" if run >= 0 else "baseline FAILED"))
    if any(run < 0 for _, _, run in results):
        return 2
    return 0 if all(killed == run for _, killed, run in results) else 1


if __name__ == "__main__":
    sys.exit(main())
