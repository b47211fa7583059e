"""Adapters for diffusers' DDIM, DDPM, EulerDiscrete, HeunDiscrete and DPMSolverMultistep schedulers,
mapped onto the spec (the EDM and DPM-Solver conventions are in `EulerTarget`, `HeunTarget` and
`DPMSolverTarget`; the Karras σ rows in `karras_results`).

Conventions, all mapped in this module and nowhere else:

* **Time.** diffusers counts timesteps τ ∈ {0..T−1}; `alphas_cumprod[τ]` is ᾱ after τ + 1
  noising steps, i.e. the spec's ᾱ_t at t = τ + 1 (`spec_time`). The model of a diffusers loop
  is called as model(x, τ); the adapter calls the spec-side model at t = τ + 1 (model time t/T).
* **The last step.** A step whose previous timestep is < 0 lands on `final_alpha_cumprod`:
  ᾱ = 1 is the spec's t = 0; with DDIM's `set_alpha_to_one=False` it is `alphas_cumprod[0]`,
  the spec's ᾱ_1, so that loop ends at t = 1 (`final_time`). A step from t = 1 to t = 1 is DDIM
  Eq. 12 with ᾱ_prev = ᾱ_t (σ = 0 by Eq. 16): it keeps the noise level and only clips x̂_0.
* **The grid it claims** is `scheduler.timesteps` after `set_timesteps(n)` (whatever
  `timestep_spacing` and `steps_offset` made of it), each step going to the next entry and the
  last one to the final time. Whether that grid is the one Lin et al. 2023 (Table 2) describe
  is a separate check (`grid_results`: t = τ + 1 against `spec.timestep_grid`).
* **The schedule.** The spec side is given the scheduler's own `alphas_cumprod` (float32
  values, as float64) as a VPSchedule, so a step check tests the step, not the schedule; the
  schedule is checked on its own against `spec.linear_betas` / `spec.cosine_betas`.
* **Precision.** diffusers keeps its tables in float32 and computes the step's coefficients in
  the table's dtype. For the float64 families the adapter casts the tables (the same float32
  values) to float64 and runs a float64 sample, so both sides compute in float64; one family
  per scheduler runs as shipped (float32 tables and sample) with its own tolerance.
* **Prediction type.** The model given to diffusers returns ε, x_0 or v of the spec's ε-model
  (`targets.eps_to_prediction`, which calls spec.prediction); the spec side always runs the ε-model.
* **Noise.** DDIM gets each step's noise as `variance_noise`; DDPMScheduler.step draws its own,
  so the adapter substitutes the module's `randn_tensor` during each call to hand it noise[i].

Options that are out of scope, or pending a spec feature, are listed in `SCOPE` with reasons.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from conformance.external.check import (
    FLOAT64,
    CaseResult,
    FamilyResult,
    check_family,
)
from conformance.external.targets import (
    DDIM,
    DDPM,
    PREDICTIONS,
    Claim,
    DPMSolverPP,
    EDMEuler,
    EDMHeun,
    Family,
    Run,
    Tolerance,
    defined_at_zero_snr,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PINNED = "0.42.1"

FLOAT32 = Tolerance(
    2e-5,
    "as shipped: diffusers' ᾱ tables, its step coefficients and the sample are float32 "
    "(u = 2^-24 ≈ 6e-8 per rounding). One step: 2e-5 × max(1, 1/√ᾱ_t) (about 300 roundings, "
    "magnified by x̂_0 = (x − √(1−ᾱ)ε)/√ᾱ, DDIM Eq. 9) + 64u × max 1/(1 − ᾱ_t) (1 − ᾱ_t and "
    "DDPM's β'_t = 1 − ᾱ_t/ᾱ_prev are formed by cancellation, and the coefficient of x̂_0 in "
    "DDPM Eq. 7 divides by 1 − ᾱ_t), over the grid; the whole loop: n times one step's bound",
    magnified=True,
    cancel=64 * 2.0**-24,
)


def spec_time(tau: int) -> int:
    """THE time map: diffusers' timestep τ (alphas_cumprod[τ]) is the spec's t = τ + 1."""
    return int(tau) + 1


def final_time(set_alpha_to_one: bool) -> int:
    """Where a diffusers loop ends in spec time: ᾱ = 1 is t = 0; alphas_cumprod[0] is t = 1."""
    return 0 if set_alpha_to_one else 1


@dataclass(frozen=True)
class DiffusersConfig:
    """One configuration of a diffusers scheduler and its sampling loop."""

    scheduler: str  # "DDIMScheduler" | "DDPMScheduler"
    T: int
    beta_schedule: str
    beta_start: float
    beta_end: float
    n: int  # num_inference_steps
    spacing: str  # timestep_spacing
    steps_offset: int = 0
    eta: float = 0.0  # DDIM
    clip: bool = False
    prediction_type: str = "epsilon"
    set_alpha_to_one: bool = True  # DDIM
    variance_type: str = "fixed_small"  # DDPM
    tables: str = "float64"  # "float64": tables cast to float64; "float32": as shipped
    shape: tuple[int, ...] = (1, 1, 2, 2)
    seed: int = 0
    rescale: bool = False  # rescale_betas_zero_snr (Lin et al. 2023, Algorithm 1)
    solver_order: int = 2  # DPMSolverMultistepScheduler
    lower_order_final: bool = True  # DPM
    euler_at_final: bool = False  # DPM
    final_sigmas_type: str = "zero"  # DPM: "zero" or "sigma_min"

    def kwargs(self) -> dict[str, Any]:
        """The scheduler's constructor arguments (everything else at diffusers' defaults)."""
        if self.scheduler in ("EulerDiscreteScheduler", "HeunDiscreteScheduler",
                              "DPMSolverMultistepScheduler"):
            kw = dict(
                num_train_timesteps=self.T, beta_schedule=self.beta_schedule,
                beta_start=self.beta_start, beta_end=self.beta_end,
                timestep_spacing=self.spacing, steps_offset=self.steps_offset,
                prediction_type=self.prediction_type,
            )
            if self.scheduler == "DPMSolverMultistepScheduler":
                kw.update(algorithm_type="dpmsolver++", solver_order=self.solver_order,
                          lower_order_final=self.lower_order_final,
                          euler_at_final=self.euler_at_final,
                          final_sigmas_type=self.final_sigmas_type)
            return kw
        kw: dict[str, Any] = dict(
            num_train_timesteps=self.T, beta_schedule=self.beta_schedule,
            beta_start=self.beta_start, beta_end=self.beta_end, timestep_spacing=self.spacing,
            steps_offset=self.steps_offset, clip_sample=self.clip,
            prediction_type=self.prediction_type,
        )
        if self.scheduler == "DDIMScheduler":
            kw["set_alpha_to_one"] = self.set_alpha_to_one
        else:
            kw["variance_type"] = self.variance_type
        if self.rescale:
            kw["rescale_betas_zero_snr"] = True
        return kw

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> DiffusersConfig:
        d = json.loads(text)
        d["shape"] = tuple(d["shape"])
        return cls(**d)

    def code(self) -> str:
        """The target's own code for this run (torch dtype: the sample's)."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs().items())
        lift = (
            "; tables cast to float64" if self.tables == "float64" else "; float32 tables and sample"
        )
        if self.scheduler in ("EulerDiscreteScheduler", "HeunDiscreteScheduler",
                              "DPMSolverMultistepScheduler"):
            step = "s.step(model(s.scale_model_input(x, tau), tau), tau, x)"
        elif self.scheduler == "DDIMScheduler":
            step = f"s.step(model(x, tau), tau, x, eta={self.eta!r}, variance_noise=noise[i])"
        else:
            step = "s.step(model(x, tau), tau, x)  # noise[i] as its randn_tensor"
        return (
            f"s = {self.scheduler}({args}){lift}\n"
            f"  s.set_timesteps({self.n}); for i, tau in enumerate(s.timesteps): x = {step}.prev_sample\n"
            f"  x_T, noise: shape {self.shape}, seed {self.seed}"
            + ("; x starts as x_T·√(1 + σ_0²)\n"
               if self.scheduler in ("EulerDiscreteScheduler", "HeunDiscreteScheduler") else "\n")
            + f"  rerun: python -m conformance.external diffusers --case '{self.to_json()}'"
        )


def _import(name: str) -> Any:
    import diffusers

    return getattr(diffusers, name)


def installed_version() -> str | None:
    """The installed diffusers version, or None when it is not installed."""
    try:
        from importlib.metadata import version

        return version("diffusers")
    except Exception:
        return None


@contextlib.contextmanager
def _ddpm_noise(noise: Any):
    """Hand DDPMScheduler.step the given noise instead of its own draw."""
    import diffusers.schedulers.scheduling_ddpm as mod

    saved = mod.randn_tensor

    def given(shape, generator=None, device=None, dtype=None, **_: Any):
        if tuple(shape) != tuple(noise.shape):
            raise ValueError(f"noise of shape {tuple(noise.shape)} asked for {tuple(shape)}")
        return noise.to(dtype=dtype)

    mod.randn_tensor = given
    try:
        yield
    finally:
        mod.randn_tensor = saved


def build_scheduler(cfg: DiffusersConfig) -> Any:
    """The scheduler of `cfg`, timesteps set, tables cast to float64 when cfg.tables says so."""
    import torch

    s = _import(cfg.scheduler)(**cfg.kwargs())
    s.set_timesteps(cfg.n)
    if cfg.tables == "float64":
        s.alphas_cumprod = s.alphas_cumprod.to(torch.float64)
        if hasattr(s, "final_alpha_cumprod"):
            s.final_alpha_cumprod = torch.as_tensor(s.final_alpha_cumprod).to(torch.float64)
        if hasattr(s, "one"):
            s.one = s.one.to(torch.float64)
    return s


class DiffusersTarget:
    """A diffusers scheduler driven by the loop of its pipeline (DDIMPipeline / DDPMPipeline)."""

    def __init__(self, scheduler: str) -> None:
        if scheduler not in ("DDIMScheduler", "DDPMScheduler"):
            raise ValueError(f"no adapter for {scheduler!r}")
        self.scheduler = scheduler
        self.name = scheduler

    def families(self, profile: str) -> list[Family]:
        return ddim_families(profile) if self.scheduler == "DDIMScheduler" else ddpm_families(profile)

    def claim(self, cfg: DiffusersConfig, s: Any) -> Claim:
        """The grid `s` claims, in spec time, with the scheduler's own ᾱ as the schedule."""
        ab = s.alphas_cumprod.double().numpy()
        betas = 1.0 - ab / np.concatenate([[1.0], ab[:-1]])  # VPSchedule(betas).ᾱ_{τ+1} = ab[τ]
        taus = [int(v) for v in s.timesteps]
        T = len(ab)
        past = [tau for tau in taus if not 0 <= tau < T]
        if past:
            raise ValueError(
                f"set_timesteps({cfg.n}) made {len(taus)} timesteps {taus}, with τ = {past} "
                f"outside alphas_cumprod's {{0..{T - 1}}} (spec t = τ + 1 = "
                f"{[spec_time(p) for p in past]}, outside {{1..{T}}}); a torch index −1 "
                "silently reads ᾱ_T, one past the end raises IndexError"
            )
        if self.scheduler == "DDIMScheduler":
            method: Any = DDIM(eta=cfg.eta, clip=cfg.clip)
            end = final_time(cfg.set_alpha_to_one)
            end_label = "final (ᾱ=1)" if cfg.set_alpha_to_one else "final (alphas_cumprod[0])"
        else:
            variance = {"fixed_small": "beta_tilde", "fixed_small_log": "beta_tilde",
                        "fixed_large": "beta", "fixed_large_log": "beta"}[cfg.variance_type]
            method = DDPM(variance=variance, clip=cfg.clip)
            end, end_label = 0, "final (ᾱ=1)"
        return Claim(
            betas=betas, grid=tuple(spec_time(tau) for tau in taus), end=end, method=method,
            prediction=cfg.prediction_type,
            labels=(*(f"τ={tau}" for tau in taus), end_label),
        )

    def prepare(self, cfg: DiffusersConfig) -> Run:
        import torch

        s = build_scheduler(cfg)
        claim = self.claim(cfg, s)
        dtype = np.float64 if cfg.tables == "float64" else np.float32
        taus = [int(v) for v in s.timesteps]
        ddim = self.scheduler == "DDIMScheduler"

        def sample(x_T: np.ndarray, predict: Any, noise: np.ndarray) -> list[np.ndarray]:
            x = torch.from_numpy(np.array(x_T))
            states = [x_T]
            for i, tau in enumerate(s.timesteps):
                out = torch.from_numpy(np.array(predict(x.numpy(), spec_time(int(tau)))))
                z = torch.from_numpy(np.array(noise[i]))
                if ddim:
                    x = s.step(out, tau, x, eta=cfg.eta, variance_noise=z).prev_sample
                else:
                    with _ddpm_noise(z):
                        x = s.step(out, tau, x).prev_sample
                states.append(x.numpy().copy())
            return states

        def describe(i: int) -> str:
            tau = taus[i]
            if ddim:
                prev = tau - cfg.T // cfg.n
                how = "τ − T // n"
            else:
                prev = int(s.previous_timestep(tau))
                how = "previous_timestep(τ)"
            where = (
                f"alphas_cumprod[{prev}] (spec t = {spec_time(prev)})" if prev >= 0
                else f"final_alpha_cumprod (spec t = {claim.end})"
            )
            return f"model at τ = {tau} (spec t = {spec_time(tau)}); prev = {how} = {prev}: ᾱ_prev = {where}"

        return Run(claim=claim, sample=sample, dtype=dtype, describe=describe, repro=cfg.code())


def _sigma_families(name: str, profile: str, note: str) -> list[Family]:
    """The spacing families of the σ-based schedulers (Euler, Heun): float32 tables as shipped."""
    c = _configs
    return [
        Family("leading, any n", c(name, profile, "leading", "any", tables="float32"), FLOAT32,
               note),
        Family("trailing, n divides T", c(name, profile, "trailing", "divides", tables="float32"),
               FLOAT32, note),
        Family("linspace, (n − 1) | (T − 1) (integer timesteps)",
               c(name, profile, "linspace", "whole", tables="float32"), FLOAT32, note),
        Family("linspace, (n − 1) ∤ (T − 1) (non-integer timesteps)",
               c(name, profile, "linspace", "frac", T_min=4, tables="float32"), FLOAT32, note),
    ]


class EulerTarget:
    """diffusers' EulerDiscreteScheduler (s_churn = 0) against spec.edm's Euler step.

    Its σ's are the VP σ_t = √((1 − ᾱ_t)/ᾱ_t) of alphas_cumprod (float32) at its timesteps, then
    σ = 0 (final_sigmas_type "zero"); its sample is x̃ = x_t·√(1 + σ²) (scale_model_input divides
    by √(1 + σ²) before the model), so the adapter starts it from x̃ = x_T·√(1 + σ_0²) (not
    init_noise_sigma, which is σ_0 for linspace/trailing: EDM's σ_max·z, not the VP x_T) and
    hands back x̃/√(1 + σ²). The model gets the spec time t = τ + 1. Non-integer timesteps
    (spacing "linspace": np.linspace(0, T − 1, n) unrounded, σ interpolated between table
    entries) are outside a discrete-time claim. The sample is float32 (step() upcasts to it).
    """

    name = "EulerDiscreteScheduler"

    def families(self, profile: str) -> list[Family]:
        return _sigma_families(self.name, profile, "prediction_type (ε, x_0, v), beta_schedule "
                               "and β range drawn freely; s_churn = 0")

    def prepare(self, cfg: DiffusersConfig) -> Run:
        import torch

        s = _import(self.name)(**cfg.kwargs())
        s.set_timesteps(cfg.n)
        raw = [float(v) for v in s.timesteps]
        if any(v != int(v) for v in raw):
            raise ValueError(
                f"set_timesteps({cfg.n}) made non-integer timesteps {raw[:6]}…: the model is called "
                "at fractional τ and σ is interpolated between alphas_cumprod entries, which no "
                "discrete grid t ∈ {1..T} claims"
            )
        taus = [int(v) for v in raw]
        ab = s.alphas_cumprod.double().numpy()
        betas = 1.0 - ab / np.concatenate([[1.0], ab[:-1]])
        claim = Claim(betas=betas, grid=tuple(spec_time(tau) for tau in taus), end=0,
                      method=EDMEuler(), prediction=cfg.prediction_type,
                      labels=(*(f"τ={tau}" for tau in taus), "σ=0"))
        sig = [float(v) for v in s.sigmas]

        def sample(x_T: np.ndarray, predict: Any, noise: np.ndarray) -> list[np.ndarray]:
            x = torch.from_numpy(np.array(x_T, dtype=np.float32)) * float(np.sqrt(1 + sig[0] ** 2))
            states = [x_T]
            for i, tau in enumerate(s.timesteps):
                x_in = s.scale_model_input(x, tau)
                out = torch.from_numpy(np.array(predict(x_in.numpy(), spec_time(int(tau)))))
                x = s.step(out, tau, x).prev_sample
                states.append(x.double().numpy() / np.sqrt(1 + sig[i + 1] ** 2))
            return states

        def describe(i: int) -> str:
            return (f"model at τ = {taus[i]} (spec t = {spec_time(taus[i])}) on scale_model_input(x̃); "
                    f"σ = {sig[i]!r} → σ_next = {sig[i + 1]!r}")

        return Run(claim=claim, sample=sample, dtype=np.float32, describe=describe, repro=cfg.code())


def _table_betas(s: Any) -> np.ndarray:
    """The spec's betas whose VPSchedule has ᾱ_{τ+1} = the scheduler's alphas_cumprod[τ]."""
    ab = s.alphas_cumprod.double().numpy()
    return 1.0 - ab / np.concatenate([[1.0], ab[:-1]])


def _integer_taus(cfg: DiffusersConfig, raw: list[float]) -> list[int]:
    """The timesteps as integers τ ∈ {0..T−1}, or ValueError (the claim is outside the spec)."""
    if any(v != int(v) for v in raw):
        raise ValueError(
            f"set_timesteps({cfg.n}) made non-integer timesteps {raw[:6]}…: the model is called "
            "at fractional τ and σ is interpolated between alphas_cumprod entries, which no "
            "discrete grid t ∈ {1..T} claims"
        )
    taus = [int(v) for v in raw]
    past = [tau for tau in taus if not 0 <= tau < cfg.T]
    if past:
        raise ValueError(
            f"set_timesteps({cfg.n}) made timesteps {taus} with τ = {past} outside alphas_cumprod's "
            f"{{0..{cfg.T - 1}}} (spec t = τ + 1 outside {{1..{cfg.T}}})"
        )
    return taus


class HeunTarget:
    """diffusers' HeunDiscreteScheduler against spec.edm's Heun step (Karras Algorithm 1).

    Its conventions, mapped here:
    * σ's: the VP σ_t = √((1 − ᾱ_t)/ᾱ_t) of alphas_cumprod (float32) at its timesteps τ (spec
      t = τ + 1), then σ = 0 (no final_sigmas_type option).
    * The interleaved timesteps: set_timesteps(n) makes [τ_0, τ_1, τ_1, τ_2, τ_2, …, τ_{n−1},
      τ_{n−1}] (2n − 1 entries) and sigmas [σ_0, σ_1, σ_1, …, σ_{n−1}, σ_{n−1}, 0]: each
      repeated τ is one Heun step's corrector call (at σ_next, on the predicted state) followed
      by the next step's predictor call. The claimed grid is timesteps[0::2]; the adapter
      checks that the list has exactly this shape (else the claim is refused) and that the
      model calls are t_0, t_1, t_1, …, t_{n−1}, t_{n−1} (`EDMHeun.calls`).
    * The last step, σ_{n−1} → 0, is one Euler call (the odd length): spec.edm.edm_heun_step
      into σ = 0 is Euler's too (the slope is undefined at σ = 0).
    * scale_model_input divides x̃ by √(σ² + 1): the model gets the VP x_t (spec.edm.edm_to_vp),
      at t = τ + 1; the sample is x̃ = x_t·√(1 + σ²). Started from x̃ = x_T·√(1 + σ_0²), not
      init_noise_sigma (σ_0 for linspace/trailing: EDM's σ_max·z, not the VP x_T).
    * prediction_type: ε, x_0 and v of the same ε-model (v converted with the σ of the call,
      as diffusers does: x̂_0 = x̃/(σ²+1) − σ/√(σ²+1)·v).
    * A state is recorded after each whole Heun step (after its corrector, and after the last
      Euler call), in VP scale x̃/√(1 + σ_next²). Float32 as shipped (its tables and σ's).
    """

    name = "HeunDiscreteScheduler"

    def families(self, profile: str) -> list[Family]:
        return _sigma_families(self.name, profile, "prediction_type (ε, x_0, v), beta_schedule "
                               "and β range drawn freely; clip_sample off")

    def prepare(self, cfg: DiffusersConfig) -> Run:
        import torch

        s = _import(self.name)(**cfg.kwargs())
        s.set_timesteps(cfg.n)
        raw = [float(v) for v in s.timesteps]
        grid_raw = raw[0::2]
        interleaved = [grid_raw[0], *(v for g in grid_raw[1:] for v in (g, g))]
        if raw != interleaved:
            raise ValueError(f"timesteps {raw} are not [τ_0, τ_1, τ_1, …, τ_(n−1), τ_(n−1)]")
        taus = _integer_taus(cfg, grid_raw)
        sig_all = [float(v) for v in s.sigmas]
        sig = [*sig_all[0::2], 0.0]  # σ_0, σ_1, …, σ_(n−1), then 0
        if len(sig) != len(taus) + 1 or sig_all[-1] != 0.0:
            raise ValueError(f"sigmas {sig_all} do not end in one σ = 0 after the interleaved σ's")
        claim = Claim(betas=_table_betas(s), grid=tuple(spec_time(tau) for tau in taus), end=0,
                      method=EDMHeun(), prediction=cfg.prediction_type,
                      labels=(*(f"τ={tau}" for tau in taus), "σ=0"))

        def sample(x_T: np.ndarray, predict: Any, noise: np.ndarray) -> list[np.ndarray]:
            x = torch.from_numpy(np.array(x_T, dtype=np.float32)) * float(np.sqrt(1 + sig[0] ** 2))
            states = [x_T]
            last = len(s.timesteps) - 1
            for k, tau in enumerate(s.timesteps):
                x_in = s.scale_model_input(x, tau)
                out = torch.from_numpy(np.array(predict(x_in.numpy(), spec_time(int(tau)))))
                x = s.step(out, tau, x).prev_sample
                if k % 2 == 1 or k == last:  # a whole step: after its corrector, or the last Euler
                    i = len(states)  # the state at grid index i
                    states.append(x.double().numpy() / np.sqrt(1 + sig[i] ** 2))
            return states

        def describe(i: int) -> str:
            what = (f"then at τ = {taus[i + 1]} (spec t = {spec_time(taus[i + 1])}) on the predicted x̃' "
                    "(the corrector)" if i + 1 < len(taus) else "one Euler call into σ = 0")
            return (f"model at τ = {taus[i]} (spec t = {spec_time(taus[i])}) on scale_model_input(x̃), "
                    f"{what}; σ = {sig[i]!r} → σ_next = {sig[i + 1]!r}")

        return Run(claim=claim, sample=sample, dtype=np.float32, describe=describe, repro=cfg.code())


class DPMSolverTarget:
    """diffusers' DPMSolverMultistepScheduler (algorithm_type "dpmsolver++", solver_type
    "midpoint", solver_order 1 or 2) against spec.dpm_solver (Lu et al. 2022b, Algorithm 2).

    Its conventions, mapped here:
    * Time: its timesteps τ are spec t = τ + 1 (integers for every spacing: its linspace and
      leading grids are built over n + 1 points and drop τ = 0, trailing as DDIM's); its σ's
      are the VP σ_t = √((1 − ᾱ_t)/ᾱ_t) of alphas_cumprod (float32) there, from which step()
      rebuilds α_t = 1/√(σ² + 1), σ_t = σ·α_t and λ = log α_t − log σ_t (DPM-Solver++ Eq. 3):
      the spec's half_log_snr of ᾱ_t, so the spec is given the table as a VPSchedule.
    * The sample is the VP x_t itself (init_noise_sigma = 1, scale_model_input is the identity).
    * final_sigmas_type: "zero" ends at σ = 0, the spec's t = 0 (ᾱ = 1; the spec's step into it
      is first order, as diffusers' is for "zero"); "sigma_min" ends at σ of alphas_cumprod[0],
      the spec's t = 1 (a grid whose last time is t = 1 then has a step t = 1 → t = 1: h = 0,
      the identity in both).
    * Multistep state: step i ≥ 1 reuses the x̂_0 of step i − 1 (model_outputs[-2]); the spec
      recomputes it from the target's own state at that time (`DPMSolverPP`).
    * First-order steps (`DPMSolverPP.first_order`): step 0 (lower_order_nums = 0), every step
      for solver_order = 1, and the last step when euler_at_final, or lower_order_final with
      fewer than 15 steps, or final_sigmas_type "zero" (diffusers' `lower_order_final` flag in
      step()); the spec computes them with dpm_solver_pp_2m_step without history (line 3).
    * prediction_type: ε, x_0, v of the same ε-model, converted by convert_model_output with
      the σ of the step. step() upcasts the sample to float32: float32 as shipped.
    """

    name = "DPMSolverMultistepScheduler"

    def families(self, profile: str) -> list[Family]:
        c = _configs
        D = self.name
        note = ("prediction_type (ε, x_0, v), lower_order_final, euler_at_final, beta_schedule and β "
                "range drawn freely; algorithm_type dpmsolver++, solver_type midpoint")
        f32 = dict(tables="float32")
        return [
            Family("2M, leading, n < T, final σ = 0", c(D, profile, "leading", "lt", **f32), FLOAT32, note),
            Family("2M, trailing, n divides T, final σ = 0",
                   c(D, profile, "trailing", "divides", **f32), FLOAT32, note),
            Family("2M, linspace, n < T, final σ = 0", c(D, profile, "linspace", "lt", **f32),
                   FLOAT32, note),
            Family("2M, trailing, n does not divide T (n timesteps)",
                   c(D, profile, "trailing", "not_divides", T_min=3, **f32), FLOAT32, note),
            Family("2M, trailing, float arange adds τ = −1 (e.g. T=17, n=7)",
                   c(D, profile, "trailing", "trailing_extra", T_min=15, **f32), FLOAT32, note),
            Family("2M, linspace, n = T ≥ 4 (a τ repeats)",
                   c(D, profile, "linspace", "eq", T_min=4, **f32), FLOAT32, note),
            Family("2M, leading, n = T (every τ = 0)", c(D, profile, "leading", "eq", **f32),
                   FLOAT32, note),
            Family("2M, final_sigmas_type=sigma_min, leading, n < T",
                   c(D, profile, "leading", "lt", final="sigma_min", **f32), FLOAT32, note),
            Family("2M, final_sigmas_type=sigma_min, trailing, n divides T",
                   c(D, profile, "trailing", "divides", final="sigma_min", **f32), FLOAT32, note),
            Family("solver_order=1 (DPM-Solver++(1)), leading, n < T, final σ drawn",
                   c(D, profile, "leading", "lt", order=1, final=None, **f32), FLOAT32, note),
        ]

    def first_order(self, cfg: DiffusersConfig, n: int) -> tuple[int, ...]:
        """diffusers' first-order steps beyond the spec's own (step 0; a step into ᾱ = 1)."""
        if cfg.solver_order == 1:
            return tuple(range(1, n))
        last = cfg.euler_at_final or (cfg.lower_order_final and n < 15)
        return (n - 1,) if last and n > 1 and cfg.final_sigmas_type != "zero" else ()

    def prepare(self, cfg: DiffusersConfig) -> Run:
        import torch

        if cfg.solver_order not in (1, 2):
            raise ValueError(f"solver_order {cfg.solver_order}: the spec has DPM-Solver++(1) and (2M) only")
        s = _import(self.name)(**cfg.kwargs())
        s.set_timesteps(cfg.n)
        taus = _integer_taus(cfg, [float(v) for v in s.timesteps])
        n = len(taus)
        repeated = sorted({tau for tau in taus if taus.count(tau) > 1})
        if repeated:
            raise ValueError(
                f"set_timesteps({cfg.n}) made timesteps {taus}, repeating τ = {repeated} (its "
                f"{cfg.spacing} grid spreads n + 1 = {cfg.n + 1} points over {{0..{cfg.T - 1}}}): a "
                "step from σ to the same σ has h = 0, and the next one divides by it (1/r = h/h_prev) "
                "or runs past the end of sigmas; no strictly decreasing grid is claimed"
            )
        end = 0 if cfg.final_sigmas_type == "zero" else 1
        claim = Claim(betas=_table_betas(s), grid=tuple(spec_time(tau) for tau in taus), end=end,
                      method=DPMSolverPP(first_order=self.first_order(cfg, n)),
                      prediction=cfg.prediction_type,
                      labels=(*(f"τ={tau}" for tau in taus),
                              "σ=0" if end == 0 else "σ_min (alphas_cumprod[0])"))
        sig = [float(v) for v in s.sigmas]

        def sample(x_T: np.ndarray, predict: Any, noise: np.ndarray) -> list[np.ndarray]:
            x = torch.from_numpy(np.array(x_T, dtype=np.float32))
            states = [x_T]
            for tau in s.timesteps:
                x_in = s.scale_model_input(x, tau)
                out = torch.from_numpy(np.array(predict(x_in.numpy(), spec_time(int(tau)))))
                x = s.step(out, tau, x).prev_sample
                states.append(x.double().numpy())
            return states

        def describe(i: int) -> str:
            # step()'s own rule: lower_order_nums < 1, solver_order 1, or its lower_order_final
            final = i == n - 1 and (cfg.euler_at_final or (cfg.lower_order_final and n < 15)
                                    or cfg.final_sigmas_type == "zero")
            order = 1 if i == 0 or cfg.solver_order == 1 or final else 2
            hist = f", with model_outputs[-2] from τ = {taus[i - 1]}" if order == 2 else ""
            return (f"model at τ = {taus[i]} (spec t = {spec_time(taus[i])}); σ = {sig[i]!r} → "
                    f"σ_next = {sig[i + 1]!r}; order {order}{hist}")

        return Run(claim=claim, sample=sample, dtype=np.float32, describe=describe, repro=cfg.code())


# ---------------------------------------------------------------------------------------------
# Configuration families


def direction_radicand_negative(cfg: DiffusersConfig) -> bool:
    """Whether DDIMScheduler.step's first step computes 1 − ᾱ_prev − σ² < 0 (its own arithmetic,
    on its own tables): with η = 1 from ᾱ_t = 0 (zero terminal SNR) Eq. 16 gives σ² = 1 − ᾱ_prev,
    so the radicand of Eq. 12's direction is 0 in exact arithmetic and its rounding decides."""
    s = build_scheduler(cfg)
    tau = int(s.timesteps[0])
    prev = tau - cfg.T // cfg.n
    ab_prev = s.alphas_cumprod[prev] if prev >= 0 else s.final_alpha_cumprod
    std = cfg.eta * s._get_variance(tau, prev) ** 0.5
    return bool(1 - ab_prev - std**2 < 0)


def _divisors(T: int) -> list[int]:
    return [n for n in range(1, T + 1) if T % n == 0]


def trailing_extra(T: int, n: int) -> bool:
    """Whether diffusers' "trailing" grid, round(arange(T, 0, −T/n)) − 1, has n + 1 entries
    (the float arange overshoots and adds τ = −1), as it does for T = 17, n = 7."""
    return len(np.arange(T, 0, -T / n)) > n


@functools.lru_cache(maxsize=4)
def _extra_Ts(T_min: int, T_max: int) -> tuple[int, ...]:
    return tuple(T for T in range(T_min, T_max + 1)
                 if any(trailing_extra(T, n) for n in range(2, T)))


@st.composite
def _configs(draw, scheduler: str, profile: str, spacing: str, n_rule: str, *,
             offset: int = 0, variance: tuple[str, ...] = ("fixed_small", "fixed_small_log"),
             tables: str = "float64", T_min: int = 2,
             alpha_one: bool | None = None, rescale: bool = False, order: int = 2,
             final: str | None = "zero", eta_one: bool = False) -> DiffusersConfig:
    T_max = 40 if profile == "small" else 1000
    if n_rule == "trailing_extra":
        T = draw(st.sampled_from(_extra_Ts(T_min, T_max)))
    else:
        T = draw(st.integers(T_min, T_max))
    if n_rule == "any":
        n = draw(st.integers(1, T))
    elif n_rule == "lt":
        n = draw(st.integers(1, T - 1))
    elif n_rule == "eq":
        n = T
    elif n_rule == "divides":
        n = draw(st.sampled_from(_divisors(T)))
    elif n_rule == "not_divides":
        n = draw(st.sampled_from([k for k in range(2, T) if T % k]))
    elif n_rule == "between":  # 1 < n < T
        n = draw(st.integers(2, T - 1))
    elif n_rule == "ends":  # n ∈ {1, T}
        n = draw(st.sampled_from([1, T]))
    elif n_rule == "half":  # n ≤ T/2 (T // n ≥ 2)
        n = draw(st.integers(1, T // 2))
    elif n_rule == "upper":  # T/2 < n < T (T // n = 1)
        n = draw(st.integers(T // 2 + 1, T - 1))
    elif n_rule == "frac":  # 1 < n < T with (n − 1) ∤ (T − 1): linspace(0, T − 1, n) not integer
        ns = [k for k in range(2, T) if (T - 1) % (k - 1)]
        n = draw(st.sampled_from(ns)) if ns else draw(st.nothing())
    elif n_rule == "whole":  # (n − 1) | (T − 1) (or n = 1): linspace(0, T − 1, n) integer
        n = draw(st.sampled_from([k for k in range(1, T + 1) if k == 1 or (T - 1) % (k - 1) == 0]))
    elif n_rule == "atleast2":
        n = draw(st.integers(2, T))
    elif n_rule == "trailing_extra":
        ns = [k for k in range(2, T) if trailing_extra(T, k)]
        n = draw(st.sampled_from(ns)) if ns else T  # T: no extra; filtered out below
    else:
        raise ValueError(n_rule)
    if spacing == "trailing" and (n_rule == "trailing_extra") != trailing_extra(T, n):
        draw(st.nothing())  # keep the family homogeneous
    schedule = draw(st.sampled_from(["linear", "scaled_linear", "squaredcos_cap_v2"]))
    b0 = draw(st.floats(1e-5, 1e-3))
    b1 = draw(st.floats(max(2 * b0, 1e-3), max(2 * b0, min(0.3, 20.0 / T))))
    ddim = scheduler == "DDIMScheduler"
    # under zero terminal SNR, η near 1 makes Eq. 12's radicand 1 − ᾱ_prev − σ² a rounded 0
    # (σ² = 1 − ᾱ_prev at ᾱ_t = 0): those draws are the family with eta_one
    eta = 0.0 if not ddim or draw(st.booleans()) else draw(st.floats(0.1, 0.99 if rescale else 1.0))
    if eta_one:
        eta = 1.0
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 4)),
             draw(st.integers(1, 4)))
    made = DiffusersConfig(
        scheduler=scheduler, T=T, beta_schedule=schedule, beta_start=b0, beta_end=b1, n=n,
        spacing=spacing, steps_offset=offset, eta=eta,
        # Heun's clip_sample and DPM's (absent) clipping are out of scope (SCOPE): drawn, unused
        clip=draw(st.booleans()) and scheduler not in ("HeunDiscreteScheduler",
                                                       "DPMSolverMultistepScheduler"),
        # under zero terminal SNR an ε-model cannot be sampled from ᾱ_T = 0 (spec.prediction
        # raises), so rescaled configurations draw x_0- and v-prediction only
        prediction_type=draw(st.sampled_from(
            [p for p in PREDICTIONS if not rescale or defined_at_zero_snr(p)])),
        set_alpha_to_one=(draw(st.booleans()) if alpha_one is None else alpha_one) if ddim else True,
        variance_type=draw(st.sampled_from(variance)), tables=tables, shape=shape,
        seed=draw(st.integers(0, 2**16)), rescale=rescale,
        **(dict(solver_order=order, lower_order_final=draw(st.booleans()),
                euler_at_final=draw(st.booleans()),
                final_sigmas_type=final or draw(st.sampled_from(["zero", "sigma_min"])))
           if scheduler == "DPMSolverMultistepScheduler" else {}),
    )
    if eta_one and not direction_radicand_negative(made):
        draw(st.nothing())  # keep the family homogeneous: only the draws whose radicand is < 0
    return made


def ddim_families(profile: str) -> list[Family]:
    c = _configs
    D = "DDIMScheduler"
    note = ("η, clip_sample, prediction_type, set_alpha_to_one, beta_schedule and β range drawn "
            "freely")
    return [
        Family("leading, any n", c(D, profile, "leading", "any"), FLOAT64, note),
        Family("leading, steps_offset=1, n ≤ T/2", c(D, profile, "leading", "half", offset=1),
               FLOAT64, note),
        Family("leading, steps_offset=1, T/2 < n < T, set_alpha_to_one=True",
               c(D, profile, "leading", "upper", offset=1, T_min=3, alpha_one=True), FLOAT64, note),
        Family("leading, steps_offset=1, n = T", c(D, profile, "leading", "eq", offset=1), FLOAT64, note),
        Family("trailing, n divides T", c(D, profile, "trailing", "divides"), FLOAT64, note),
        Family("trailing, n does not divide T (n timesteps)",
               c(D, profile, "trailing", "not_divides", T_min=3), FLOAT64, note),
        Family("trailing, float arange adds τ = −1 (e.g. T=17, n=7)",
               c(D, profile, "trailing", "trailing_extra", T_min=15), FLOAT64, note),
        Family("linspace, n ∈ {1, T}", c(D, profile, "linspace", "ends"), FLOAT64, note),
        Family("linspace, 1 < n < T", c(D, profile, "linspace", "between", T_min=3), FLOAT64, note),
        Family("as shipped (float32), leading", c(D, profile, "leading", "any", tables="float32"),
               FLOAT32, note),
        Family("rescale_betas_zero_snr, trailing, n divides T, x_0/v",
               c(D, profile, "trailing", "divides", rescale=True, T_min=3), FLOAT64,
               note.replace("η,", "η ∈ {0} ∪ [0.1, 0.99],")),
        Family("rescale_betas_zero_snr, η = 1 where 1 − ᾱ_prev − σ² rounds below 0",
               c(D, profile, "trailing", "divides", rescale=True, T_min=3, eta_one=True), FLOAT64,
               note.replace("η,", "η = 1,")),
    ]


def ddpm_families(profile: str) -> list[Family]:
    c = _configs
    D = "DDPMScheduler"
    note = "clip_sample, prediction_type, beta_schedule and β range drawn freely"
    large = ("fixed_large",)
    return [
        Family("every step (n = T), fixed_small[_log]", c(D, profile, "leading", "eq"), FLOAT64, note),
        Family("leading, n < T, fixed_small[_log]", c(D, profile, "leading", "lt"), FLOAT64, note),
        Family("leading, steps_offset=1, n < T", c(D, profile, "leading", "lt", offset=1), FLOAT64, note),
        Family("leading, steps_offset=1, n = T", c(D, profile, "leading", "eq", offset=1), FLOAT64, note),
        Family("trailing, n timesteps, fixed_small[_log]", c(D, profile, "trailing", "any"),
               FLOAT64, note),
        Family("trailing, float arange adds τ = −1 (e.g. T=17, n=7)",
               c(D, profile, "trailing", "trailing_extra", T_min=15), FLOAT64, note),
        Family("linspace, any n, fixed_small[_log]", c(D, profile, "linspace", "any"), FLOAT64, note),
        Family("fixed_large, grid ending at τ = 0 (leading)",
               c(D, profile, "leading", "any", variance=large), FLOAT64, note),
        Family("fixed_large, grid ending at τ > 0 (trailing, n ≤ T/2)",
               c(D, profile, "trailing", "half", variance=large), FLOAT64, note),
        Family("fixed_large_log, n ≥ 2",
               c(D, profile, "leading", "atleast2", variance=("fixed_large_log",)), FLOAT64, note),
        Family("as shipped (float32), leading", c(D, profile, "leading", "any", tables="float32"),
               FLOAT32, note),
        Family("rescale_betas_zero_snr, trailing, x_0/v, fixed_small[_log]",
               c(D, profile, "trailing", "any", rescale=True, T_min=3), FLOAT64, note),
    ]


# ---------------------------------------------------------------------------------------------
# The schedule: alphas_cumprod against the spec's betas


SCHEDULE_TOL = Tolerance(
    1.0,
    "schedule rows: the ratio of |ᾱ_diffusers − ᾱ_spec|/ᾱ_spec to the float32 bound "
    "Σ_{s≤t} 3·2^-24·(1 + β_s/(1 − β_s)) (each β_s and 1 − β_s rounded once to float32 and the "
    "running product once per step); agrees when ≤ 1",
)


@dataclass(frozen=True)
class ScheduleConfig:
    T: int
    beta_schedule: str
    beta_start: float
    beta_end: float
    shape: tuple[int, ...] = ()
    seed: int = 0


def _schedule_case(_target: Any, cfg: ScheduleConfig, tol: Tolerance) -> CaseResult:
    from spec.schedule import VPSchedule, cosine_betas, linear_betas

    s = _import("DDIMScheduler")(
        num_train_timesteps=cfg.T, beta_schedule=cfg.beta_schedule, beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
    )
    ab = s.alphas_cumprod.double().numpy()
    if cfg.beta_schedule == "linear":
        betas, name = linear_betas(cfg.T, cfg.beta_start, cfg.beta_end), "spec.linear_betas (DDPM §4)"
    else:
        betas, name = cosine_betas(cfg.T), "spec.cosine_betas (Nichol & Dhariwal 2021, Eq. 17)"
    ref = VPSchedule(betas).alpha_bar[1:]
    bound = np.cumsum(3 * 2.0**-24 * (1 + betas / (1 - betas)))
    ratio = np.abs(ab - ref) / ref / bound
    worst = int(np.argmax(ratio))
    r = CaseResult(cfg, bool(ratio[worst] <= tol.rel), float(ratio[worst]), [])
    if not r.agrees:
        r.first = worst
        r.detail = (
            f"configuration: DDIMScheduler(num_train_timesteps={cfg.T}, beta_schedule="
            f"{cfg.beta_schedule!r}, beta_start={cfg.beta_start!r}, beta_end={cfg.beta_end!r})\n"
            f"alphas_cumprod[{worst}] = {ab[worst]!r}; spec ᾱ_{worst + 1} = {ref[worst]!r} "
            f"({ratio[worst]:.3g}× the float32 bound)\nspec formula departed from: {name}"
        )
    return r


def _sqrt_ab_bound(betas: np.ndarray) -> np.ndarray:
    """The float32 bound on |√ᾱ'_diffusers − √ᾱ'_spec| after rescaling (t = 1..T).

    diffusers rescales in float32: the running product and its square root (t + 1 roundings of
    √ᾱ_t relatively, plus each β_s once), the shift √ᾱ_t − √ᾱ_T and the scale s_1/(s_1 − s_T)
    (which magnifies the absolute errors of √ᾱ_t and √ᾱ_T by s_1/(s_1 − s_T)), then ᾱ' → β' →
    ᾱ' again (another t roundings, relatively). Bound: 4·u·(t + 4)·(1 + s_1/(s_1 − s_T)), u = 2^-24.
    """
    s = np.sqrt(np.cumprod(1 - betas))
    t = np.arange(1, len(betas) + 1)
    return 4 * 2.0**-24 * (t + 4) * (1 + s[0] / (s[0] - s[-1]))


def _rescale_case(_target: Any, cfg: ScheduleConfig, tol: Tolerance) -> CaseResult:
    from spec.schedule import VPSchedule, cosine_betas, linear_betas, rescale_zero_terminal_snr

    s = _import("DDIMScheduler")(
        num_train_timesteps=cfg.T, beta_schedule=cfg.beta_schedule, beta_start=cfg.beta_start,
        beta_end=cfg.beta_end, rescale_betas_zero_snr=True,
    )
    ab = s.alphas_cumprod.double().numpy()
    betas = (linear_betas(cfg.T, cfg.beta_start, cfg.beta_end) if cfg.beta_schedule == "linear"
             else cosine_betas(cfg.T))
    ref = VPSchedule(rescale_zero_terminal_snr(betas)).alpha_bar[1:]
    ratio = np.abs(np.sqrt(ab) - np.sqrt(ref)) / _sqrt_ab_bound(betas)
    worst = int(np.argmax(ratio))
    zero = ab[-1] == 0.0 and ref[-1] == 0.0  # SNR(T) = 0 exactly on both sides
    r = CaseResult(cfg, bool(zero and ratio[worst] <= tol.rel), float(ratio[worst]), [])
    if not r.agrees:
        r.first = worst
        r.detail = (
            f"configuration: DDIMScheduler(num_train_timesteps={cfg.T}, beta_schedule="
            f"{cfg.beta_schedule!r}, beta_start={cfg.beta_start!r}, beta_end={cfg.beta_end!r}, "
            f"rescale_betas_zero_snr=True)\nalphas_cumprod[{worst}] = {ab[worst]!r}; spec ᾱ'_"
            f"{worst + 1} = {ref[worst]!r} ({ratio[worst]:.3g}× the float32 bound on √ᾱ'); "
            f"ᾱ'_T: diffusers {ab[-1]!r}, spec {ref[-1]!r}\n"
            "spec formula departed from: spec.rescale_zero_terminal_snr (Lin et al. 2023, Algorithm 1)"
        )
    return r


RESCALE_TOL = Tolerance(
    1.0,
    "rescaled schedule rows: ᾱ'_T = 0 exactly on both sides, and the ratio of |√ᾱ'_diffusers − "
    "√ᾱ'_spec| to the float32 bound 4·2^-24·(t + 4)·(1 + s_1/(s_1 − s_T)) (s = √ᾱ before "
    "rescaling; the shift by s_T magnifies absolute errors by s_1/(s_1 − s_T)); agrees when ≤ 1",
)


@st.composite
def _schedule_configs(draw, schedule: str, profile: str) -> ScheduleConfig:
    T = draw(st.integers(2, 40 if profile == "small" else 1000))
    b0 = draw(st.floats(1e-5, 1e-3))
    b1 = draw(st.floats(max(2 * b0, 1e-3), max(2 * b0, min(0.3, 20.0 / T))))
    return ScheduleConfig(T, schedule, b0, b1)


def schedule_results(profile: str, examples: int) -> list[FamilyResult]:
    """diffusers' `alphas_cumprod` against the spec's schedules (both schedulers share the code)."""

    class _T:
        name = "alphas_cumprod (both)"

    out = []
    for schedule in ("linear", "squaredcos_cap_v2"):
        fam = Family(f"beta_schedule={schedule} vs spec", _schedule_configs(schedule, profile),
                     SCHEDULE_TOL)
        out.append(check_family(_T(), fam, examples, evaluate_case=_schedule_case))
    for schedule in ("linear", "squaredcos_cap_v2"):
        fam = Family(f"beta_schedule={schedule}, rescale_betas_zero_snr vs spec",
                     _schedule_configs(schedule, profile), RESCALE_TOL)
        out.append(check_family(_T(), fam, examples, evaluate_case=_rescale_case))
    return out


# ---------------------------------------------------------------------------------------------
# The grid: scheduler.timesteps against spec.timestep_grid (Lin et al. 2023, Table 2)


GRID_TOL = Tolerance(
    0.0,
    "grid rows: scheduler.timesteps mapped to t = τ + 1 must equal spec.timestep_grid(T, n, "
    "spacing) without its final 0, entry for entry (integers: no tolerance); the value is the "
    "number of entries that differ (a grid of another length counts every entry)",
)


@dataclass(frozen=True)
class GridConfig:
    scheduler: str
    T: int
    n: int
    spacing: str
    steps_offset: int = 0
    shape: tuple[int, ...] = ()
    seed: int = 0


def linspace_tie(T: int, n: int) -> bool:
    """Whether diffusers' grid round(np.linspace(0, T − 1, n)) + 1 (τ rounded half to even in
    floats, then t = τ + 1) differs from the spec's exact round(1 + k(T−1)/(n−1)): at a tie x.5
    the two roundings always part, and the float linspace decides which values are ties."""
    from spec.schedule import timestep_grid

    got = (np.round(np.linspace(0, T - 1, n)) + 1).astype(np.int64)[::-1]
    return list(got) != list(timestep_grid(T, n, "linspace")[:-1])


def trailing_misround(T: int, n: int) -> bool:
    """Whether diffusers' float arange(T, 0, −T/n), rounded, differs from the exact round(T·(n−i)/n)
    (ties to even) on its first n entries: a tie that the float step pushes the other way."""
    from spec.schedule import timestep_grid

    got = np.round(np.arange(T, 0, -T / n)).astype(np.int64)[:n]
    return list(got) != list(timestep_grid(T, n, "trailing")[:-1])


def _grid_kind(T: int, n: int, spacing: str) -> str:
    if spacing == "linspace":
        return "tie" if linspace_tie(T, n) else "exact"
    if spacing == "trailing":
        if trailing_extra(T, n):
            return "extra"
        return "misround" if trailing_misround(T, n) else "exact"
    return "exact"


def _grid_case(_target: Any, cfg: GridConfig, tol: Tolerance) -> CaseResult:
    from spec.schedule import timestep_grid

    s = _import(cfg.scheduler)(num_train_timesteps=cfg.T, timestep_spacing=cfg.spacing,
                               steps_offset=cfg.steps_offset)
    code = (f"{cfg.scheduler}(num_train_timesteps={cfg.T}, timestep_spacing={cfg.spacing!r}, "
            f"steps_offset={cfg.steps_offset}).set_timesteps({cfg.n})")
    ref = [int(t) for t in timestep_grid(cfg.T, cfg.n, cfg.spacing)[:-1]]
    try:
        s.set_timesteps(cfg.n)
        raw = [float(tau) for tau in s.timesteps]
        if cfg.scheduler == "HeunDiscreteScheduler":  # [τ_0, τ_1, τ_1, …]: its grid is [0::2]
            raw = raw[0::2]
        got = [spec_time(int(tau)) for tau in raw]
    except Exception as exc:
        return CaseResult(cfg, False, math.inf, [], 0,
                          f"configuration: {code}\nthe target raised {type(exc).__name__}: {exc}")
    wrong = [i for i in range(max(len(got), len(ref)))
             if i >= len(got) or i >= len(ref) or got[i] != ref[i]]
    r = CaseResult(cfg, not wrong, float(len(wrong)), [])
    if wrong:
        i = wrong[0]
        r.first = i
        r.detail = (
            f"configuration: {code}\nscheduler.timesteps + 1 = {got}\n"
            f"spec.timestep_grid({cfg.T}, {cfg.n}, {cfg.spacing!r})[:-1] = {ref}\n"
            f"first entry that parts: index {i}; {len(wrong)} of {max(len(got), len(ref))} differ\n"
            f"spec formula departed from: spec.timestep_grid, {cfg.spacing} spacing "
            "(Lin et al. 2023, Table 2), in the spec's t = τ + 1"
        )
    return r


@st.composite
def _grid_configs(draw, scheduler: str, profile: str, spacing: str, kind: str,
                  offset: int = 0) -> GridConfig:
    T = draw(st.integers(2, 40 if profile == "small" else 1000))
    ns = [n for n in range(1, T + 1) if _grid_kind(T, n, spacing) == kind]
    if not ns:
        draw(st.nothing())
    return GridConfig(scheduler, T, draw(st.sampled_from(ns)), spacing, offset)


GRID_FAMILIES: tuple[tuple[str, str, str, int], ...] = (
    ("timesteps: leading, steps_offset=0", "leading", "exact", 0),
    ("timesteps: leading, steps_offset=1", "leading", "exact", 1),
    ("timesteps: linspace, no tie rounded apart", "linspace", "exact", 0),
    ("timesteps: linspace, a tie k·(T−1)/(n−1) = x.5 rounded apart (e.g. T=4, n=3)", "linspace", "tie", 0),
    ("timesteps: trailing, float arange exact", "trailing", "exact", 0),
    ("timesteps: trailing, float arange misrounds a tie (e.g. T=7, n=6)", "trailing", "misround", 0),
    ("timesteps: trailing, float arange adds τ = −1 (e.g. T=17, n=7)", "trailing", "extra", 0),
)


def grid_results(profile: str, examples: int, derandomize: bool | None = None) -> list[FamilyResult]:
    """scheduler.timesteps (t = τ + 1) against spec.timestep_grid, per spacing: DDIM and DDPM,
    and the leading / trailing grids of Euler and Heun (Heun's interleaved list read as its
    grid, timesteps[0::2]; their linspace is unrounded, fractional τ: the step rows report it)."""
    out = []
    for scheduler in GRID_SCHEDULERS:
        class _T:
            name = f"{scheduler}.timesteps"

        for name, spacing, kind, offset in GRID_FAMILIES:
            if spacing == "linspace" and scheduler not in TARGETS:
                continue
            fam = Family(name, _grid_configs(scheduler, profile, spacing, kind, offset), GRID_TOL,
                         "T and n drawn; the family fixes the spacing and which rounding case")
            out.append(check_family(_T(), fam, examples, evaluate_case=_grid_case,
                                    derandomize=derandomize))
    return out


# ---------------------------------------------------------------------------------------------
# Karras σ's: use_karras_sigmas against spec.edm.edm_sigmas (Karras et al. 2022, Eq. 5)


KARRAS_TOL = Tolerance(
    1.0,
    "Karras σ rows: max_i |σ_i,diffusers − σ_i,spec|/σ_i,spec over the n σ's before the final 0, as "
    "a ratio to the float32 bound 16·2^-24 (σ_min, σ_max = √((1−ᾱ)/ᾱ) formed in float32, ~4 "
    "roundings each, carried through Eq. 5 as a relative error; the result cast to float32) plus "
    "EPS/ᾱ at the endpoints (spec.edm.vp_to_edm's safe_div(1 − ᾱ, ᾱ) adds EPS = 1e-12 to ᾱ, "
    "which the cosine schedule's ᾱ_T ~ 5e-7 makes ~2e-6); the final σ must be 0 on both "
    "sides; agrees when ≤ 1",
)


@dataclass(frozen=True)
class KarrasConfig:
    scheduler: str
    T: int
    n: int
    spacing: str
    beta_schedule: str
    beta_start: float
    beta_end: float
    shape: tuple[int, ...] = ()
    seed: int = 0

    def code(self) -> str:
        return (f"{self.scheduler}(num_train_timesteps={self.T}, beta_schedule={self.beta_schedule!r}, "
                f"beta_start={self.beta_start!r}, beta_end={self.beta_end!r}, timestep_spacing="
                f"{self.spacing!r}, use_karras_sigmas=True).set_timesteps({self.n})")


def karras_endpoints(cfg: KarrasConfig) -> tuple[float, float, str, float]:
    """(σ_min, σ_max, where from) that the scheduler's Karras σ's claim, in the spec's σ_t:
    Euler and Heun take the σ's of their own grid's last and first timesteps (set_timesteps
    without use_karras_sigmas, τ → t = τ + 1); DPMSolverMultistep takes the whole table's, σ_1
    and σ_T. σ_t = √((1 − ᾱ_t)/ᾱ_t) of the scheduler's alphas_cumprod, by spec.edm.vp_to_edm.
    The fourth value is the smaller ᾱ of the two (for the bound's safe_div term)."""
    from spec.edm import vp_to_edm

    plain = _import(cfg.scheduler)(num_train_timesteps=cfg.T, beta_schedule=cfg.beta_schedule,
                                   beta_start=cfg.beta_start, beta_end=cfg.beta_end,
                                   timestep_spacing=cfg.spacing)
    ab = plain.alphas_cumprod.double().numpy()  # ᾱ_{τ+1}

    def sigma(t: int) -> float:
        return float(vp_to_edm(ab[t - 1], np.zeros(1))[1])

    if cfg.scheduler == "DPMSolverMultistepScheduler":
        return sigma(1), sigma(cfg.T), "σ_1 and σ_T of the table", float(ab[-1])
    plain.set_timesteps(cfg.n)
    ts = [spec_time(int(v)) for v in plain.timesteps]
    return (sigma(ts[-1]), sigma(ts[0]), f"σ at the {cfg.spacing} grid's t = {ts[-1]} and t = {ts[0]}",
            float(ab[ts[0] - 1]))


def _karras_case(_target: Any, cfg: KarrasConfig, tol: Tolerance) -> CaseResult:
    from spec.edm import edm_sigmas

    s = _import(cfg.scheduler)(num_train_timesteps=cfg.T, beta_schedule=cfg.beta_schedule,
                               beta_start=cfg.beta_start, beta_end=cfg.beta_end,
                               timestep_spacing=cfg.spacing, use_karras_sigmas=True)
    s.set_timesteps(cfg.n)
    got = s.sigmas.double().numpy()
    if cfg.scheduler == "HeunDiscreteScheduler":  # [σ_0, σ_1, σ_1, …, σ_(n−1), σ_(n−1), 0]
        got = np.concatenate([got[0::2], got[-1:]])
    from spec.core import EPS

    lo, hi, where, ab_min = karras_endpoints(cfg)
    ref = edm_sigmas(cfg.n, lo, hi)
    if got.shape != ref.shape:
        ratio, worst = math.inf, 0
    else:
        rel = np.abs(got[:-1] - ref[:-1]) / ref[:-1] / (16 * 2.0**-24 + EPS / ab_min)
        worst = int(np.argmax(rel))
        ratio = float(rel[worst]) if got[-1] == 0.0 else math.inf
    r = CaseResult(cfg, bool(ratio <= tol.rel), ratio, [])
    if not r.agrees:
        r.first = worst
        r.detail = (
            f"configuration: {cfg.code()}\nsigmas = {[float(v) for v in got]}\n"
            f"spec.edm.edm_sigmas({cfg.n}, σ_min={lo!r}, σ_max={hi!r}) = {[float(v) for v in ref]} "
            f"(σ_min, σ_max: {where})\nfirst entry that parts: index {worst} ({ratio:.3g}× the "
            "bound)\nspec formula departed from: spec.edm.edm_sigmas (Karras et al. 2022, "
            "Eq. 5, ρ = 7)"
        )
    return r


@st.composite
def _karras_configs(draw, scheduler: str, profile: str) -> KarrasConfig:
    T = draw(st.integers(3, 40 if profile == "small" else 1000))
    # leading and linspace grids: integer first and last timesteps (trailing can add τ = −1)
    spacing = draw(st.sampled_from(["leading", "linspace"]))
    n = draw(st.integers(2, T - 1 if scheduler == "DPMSolverMultistepScheduler" else T))
    b0 = draw(st.floats(1e-5, 1e-3))
    b1 = draw(st.floats(max(2 * b0, 1e-3), max(2 * b0, min(0.3, 20.0 / T))))
    schedule = draw(st.sampled_from(["linear", "scaled_linear", "squaredcos_cap_v2"]))
    return KarrasConfig(scheduler, T, n, spacing, schedule, b0, b1)


KARRAS_SCHEDULERS = ("EulerDiscreteScheduler", "HeunDiscreteScheduler", "DPMSolverMultistepScheduler")


def karras_results(profile: str, examples: int, derandomize: bool | None = None) -> list[FamilyResult]:
    """scheduler.sigmas with use_karras_sigmas=True against spec.edm.edm_sigmas (ρ = 7).

    Only the σ's: their steps call the model at timesteps of their own σ → τ interpolation
    (fractional for Euler and Heun, rounded for DPM), which no discrete claim has (SCOPE)."""
    out = []
    for scheduler in KARRAS_SCHEDULERS:
        class _T:
            name = f"{scheduler}.sigmas"

        fam = Family("use_karras_sigmas vs spec.edm.edm_sigmas (ρ = 7)",
                     _karras_configs(scheduler, profile), KARRAS_TOL,
                     "T, n, spacing (leading, linspace), beta_schedule and β range drawn")
        out.append(check_family(_T(), fam, examples, evaluate_case=_karras_case,
                                derandomize=derandomize))
    return out


# ---------------------------------------------------------------------------------------------
# Scope: what each option does here

SCOPE: list[tuple[str, str, str]] = [
    ("num_train_timesteps, beta_start, beta_end", "mapped", "T and the schedule; the step checks use the scheduler's own alphas_cumprod as a VPSchedule"),
    ("beta_schedule linear / squaredcos_cap_v2", "mapped", "step checks with the scheduler's table; the table itself checked against spec.linear_betas / spec.cosine_betas"),
    ("beta_schedule scaled_linear", "mapped (steps only)", "step checks with the scheduler's table; the spec has no scaled_linear schedule (it comes from the Latent Diffusion code, not a paper equation), so the table itself is not checked"),
    ("beta_schedule sigmoid / laplace, trained_betas", "not drawn", "the same code path as any other table (the steps read alphas_cumprod only)"),
    ("timestep_spacing, steps_offset, num_inference_steps", "mapped", "the grid the scheduler claims: scheduler.timesteps, t = τ + 1, each step to the next entry; the grid itself is checked on its own against spec.timestep_grid (Lin et al. 2023, Table 2) per spacing (the timesteps rows)"),
    ("set_alpha_to_one (DDIM)", "mapped", "True: the last step lands on t = 0 (ᾱ_0 = 1); False: on alphas_cumprod[0] = ᾱ_1, i.e. t = 1"),
    ("eta (DDIM)", "mapped", "DDIM Eq. 16, σ = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev); each step's noise passed as variance_noise"),
    ("clip_sample (clip_sample_range = 1)", "mapped", "x̂_0 clipped to [−1, 1]; DDIM keeps the model's ε̂ as the direction (spec.ddim), DDPM takes μ̃_t(x_t, clip(x̂_0)) (DDPM Eq. 7)"),
    ("clip_sample_range ≠ 1", "out of scope", "the spec clips x̂_0 to the data range [−1, 1] only"),
    ("thresholding (dynamic)", "out of scope", "Imagen's per-sample percentile clipping (Saharia et al. 2022, §2.3) has no spec function; it is a heuristic on top of Eq. 12, not part of DDIM/DDPM"),
    ("prediction_type epsilon / sample / v_prediction", "mapped", "the model handed to diffusers returns ε̂, x̂_0 or v = √ᾱ·ε̂ − √(1−ᾱ)·x̂_0 of the same ε-model (Salimans & Ho 2022), converted by spec.prediction (predict_x0, prediction_target) through targets.eps_to_prediction"),
    ("variance_type fixed_small / fixed_small_log (DDPM)", "mapped", "σ² = β̃_t (DDPM Eq. 7); the _log form is the same σ through exp(½·log)"),
    ("variance_type fixed_large / fixed_large_log (DDPM)", "mapped", "σ² = β_t (DDPM §3.2), on a strided grid β'_t = 1 − ᾱ_t/ᾱ_prev"),
    ("variance_type learned / learned_range (DDPM)", "out of scope", "the variance comes from the model (Nichol & Dhariwal 2021, Eq. 15); the spec's models predict ε only"),
    ("rescale_betas_zero_snr", "mapped", "the table checked against spec.rescale_zero_terminal_snr (Lin et al. 2023, Algorithm 1; ᾱ_T = 0 exactly on both sides); DDIM/DDPM steps run for x_0- and v-prediction with a model of that kind on both sides (ε cannot be converted at ᾱ_T = 0). ε-prediction is not drawn: a claim starting at ᾱ = 0 with ε is outside the spec (spec.prediction raises), and the harness reports it as such"),
    ("use_clipped_model_output (DDIM.step argument)", "not drawn", "the pipeline default False is checked; True recomputes ε̂ from the clipped x̂_0, which spec.ddim does not (the model's ε̂ gives the direction)"),
    ("EulerDiscreteScheduler (s_churn = 0, final_sigmas_type zero, interpolation linear)", "mapped", "spec.edm.edm_euler_step on the VP σ_t = √((1−ᾱ_t)/ᾱ_t) of its float32 table at t = τ + 1, then σ = 0; scale_model_input's x̃/√(1+σ²) is the VP x_t the model gets; started from x̃ = x_T·√(1+σ_0²) (init_noise_sigma is σ_0 for linspace/trailing, EDM's σ_max·z); float32 as shipped"),
    ("EulerDiscreteScheduler use_karras_sigmas; HeunDiscreteScheduler and DPMSolverMultistepScheduler use_karras_sigmas", "σ's mapped, steps out of scope", "the σ's are checked against spec.edm.edm_sigmas (Karras et al. 2022, Eq. 5, ρ = 7) with the σ_min, σ_max the scheduler claims (Euler, Heun: σ at its grid's last and first times; DPM: σ_1 and σ_T of the table) — the '.sigmas' rows. The steps are not: Karras σ's lie between table entries and the model is called at diffusers' own σ → τ map (_sigma_to_t, linear in log σ; fractional τ for Euler and Heun, rounded for DPM, whose state then sits at a σ that is not the σ of the τ the model gets); the spec maps σ to a model time only through a continuous VP schedule (time_of_edm_sigma), so no discrete claim exists"),
    ("use_exponential_sigmas, use_beta_sigmas (Euler, Heun, DPM); use_lu_lambdas, use_flow_sigmas (DPM); interpolation_type log_linear, timestep_type continuous (Euler)", "out of scope", "σ sequences and time maps with no spec function (not Karras Eq. 5, not a discrete VP grid)"),
    ("EulerDiscreteScheduler s_churn > 0", "out of scope", "Karras Algorithm 2's churn (x̂ = x + √(σ̂² − σ²)·ε with σ̂ = σ(1 + γ)) has no spec function: spec.edm implements Algorithm 1 (S_churn = 0) only, so the same noise could drive both sides only with the churn written outside spec/. Not checked, read from the code: step() adds the churn to the sample but uses the model output the pipeline computed before it, at σ (Algorithm 2 line 7 evaluates D(x̂; σ̂) after the churn)"),
    ("EulerDiscreteScheduler final_sigmas_type sigma_min", "not drawn", "ends at σ of alphas_cumprod[0] (t = 1) instead of 0; mapped for DPMSolverMultistepScheduler, where the claim ends at t = 1; the EDM Euler claim ends at σ = 0 only"),
    ("HeunDiscreteScheduler (final σ = 0)", "mapped", "spec.edm.edm_heun_step (Karras Algorithm 1) on the VP σ_t = √((1−ᾱ_t)/ᾱ_t) of its float32 table at t = τ + 1, then σ = 0. Its interleaved timesteps [τ_0, τ_1, τ_1, …, τ_{n−1}, τ_{n−1}] are the claimed calls t_0, t_1, t_1, … (each step's predictor at t_i, its corrector at t_{i+1}); the grid is timesteps[0::2]; the last step, into σ = 0, is Euler's in both (one call: 2n − 1 in all). scale_model_input's division by √(σ²+1) is spec.edm.edm_to_vp (the model gets x_t); started from x̃ = x_T·√(1+σ_0²); a state is compared after each whole step; prediction_type ε, x_0, v; float32 as shipped; timestep_spacing as for Euler (linspace with (n − 1) ∤ (T − 1) gives fractional τ: outside a discrete claim)"),
    ("HeunDiscreteScheduler clip_sample", "out of scope", "Karras Algorithm 1 and spec.edm do not clip D(x̃; σ)"),
    ("DPMSolverMultistepScheduler algorithm_type dpmsolver++, solver_type midpoint, solver_order 2 and 1", "mapped", "spec.dpm_solver.dpm_solver_pp_2m_step (Lu et al. 2022b, Algorithm 2) on its timesteps (t = τ + 1), given the table as a VPSchedule (its λ = log α − log σ from σ_t of the table is the spec's half_log_snr); the claim carries the multistep state: step i ≥ 1 reuses x̂_0 at t_{i−1}, recomputed by the spec from the target's own state there. solver_order 1 (DPM-Solver++(1), every step first order) is the same function without history; prediction_type ε, x_0, v; float32 as shipped (step() upcasts the sample to float32)"),
    ("DPMSolverMultistepScheduler lower_order_final, euler_at_final", "mapped", "the last step is first order (the spec's step without history, Algorithm 2 line 3) when euler_at_final, or lower_order_final with fewer than 15 steps, or final_sigmas_type zero (then it steps into ᾱ = 1, first order in the spec too); drawn freely. lower_order_final's second-to-last rule only matters for solver_order 3"),
    ("DPMSolverMultistepScheduler final_sigmas_type zero / sigma_min", "mapped", "zero: the last step lands on σ = 0, the spec's t = 0; sigma_min: on σ of alphas_cumprod[0], the spec's t = 1 (from t = 1 that step has h = 0: the identity, DDIM Eq. 12 with ᾱ_prev = ᾱ_t)"),
    ("DPMSolverMultistepScheduler timestep_spacing, num_inference_steps", "mapped (steps only)", "the claimed grid is its timesteps, each step to the next; the grids themselves are not compared with spec.timestep_grid: its linspace and leading spread n + 1 points and drop τ = 0, another construction than Lin et al. 2023 Table 2's (n = T then repeats τ: the rows 'n = T'); steps_offset is not drawn"),
    ("DPMSolverMultistepScheduler solver_order 3, solver_type heun, algorithm_type dpmsolver / sde-dpmsolver / sde-dpmsolver++", "out of scope", "spec.dpm_solver has Algorithm 2 (DPM-Solver++(2M), the 1/(2r) combination) only: no third-order multistep, no 'heun' coefficient (e^{−h} − 1)/h + 1 for D1, no noise-prediction DPM-Solver, no SDE variant"),
    ("DPMSolverMultistepScheduler thresholding, variance_type learned / learned_range", "out of scope", "as for DDIM/DDPM: dynamic thresholding (Saharia et al. 2022) and learned variances have no spec function"),
    ("DPMSolverMultistepScheduler rescale_betas_zero_snr, lambda_min_clipped", "not drawn", "rescaling replaces ᾱ_T = 0 by 2^-24 (a finite σ_T), which is neither the spec's rescale_zero_terminal_snr nor a schedule it defines; lambda_min_clipped (default −∞) truncates the grid, a heuristic with no paper equation"),
]


TARGETS = ("DDIMScheduler", "DDPMScheduler")
GRID_SCHEDULERS = (*TARGETS, "EulerDiscreteScheduler", "HeunDiscreteScheduler")


def all_targets() -> list[Any]:
    """Every adapted scheduler: DDIM and DDPM (pipeline loops), then Euler and Heun (spec.edm)
    and DPM-Solver multistep (spec.dpm_solver)."""
    return [*(DiffusersTarget(name) for name in TARGETS), EulerTarget(), HeunTarget(),
            DPMSolverTarget()]
