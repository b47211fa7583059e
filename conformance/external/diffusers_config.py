"""diffusers' conventions mapped onto the spec's: the time map, the configuration of one run, the
scheduler built from it. The adapters are `diffusers_targets` (one class per scheduler, the
table `TARGETS`), their configuration families `diffusers_families`, the grid, schedule and
Karras σ rows `diffusers_rows`, the options' scope `diffusers_scope`.

Conventions, all mapped in these modules and nowhere else:

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
  is a separate check (the timesteps rows, `tables.check_timesteps`: t = τ + 1 against
  `spec.timestep_grid`).
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

Options that are out of scope, or pending a spec feature, are listed in `diffusers_scope.SCOPE`
with reasons.
"""


from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from conformance.external.targets import OutsideSpec

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PINNED = "0.42.1"

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
    options: tuple[tuple[str, Any], ...] = ()  # the generic adapter's targets: constructor options
    mu: float | None = None  # set_timesteps(n, mu=μ): dynamic shifting (flow schedulers)
    custom: tuple[tuple[str, tuple[float, ...]], ...] = ()  # set_timesteps' sigmas / timesteps

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
        d["options"] = tuple((k, tuple(v) if isinstance(v, list) else v)
                             for k, v in d.get("options", ()))
        d["custom"] = tuple((k, tuple(v)) for k, v in d.get("custom", ()))
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


def dpm_step_orders(solver_order: int, lower_order_final: bool, euler_at_final: bool,
                    final_sigmas_type: str, n: int) -> tuple[int, ...]:
    """The order of each of the n steps of DPMSolverMultistepScheduler.step() (dpmsolver++), by
    its own rule: step i is first order when i = 0, solver_order = 1 or it is the last step under
    euler_at_final, lower_order_final with n < 15, or final_sigmas_type "zero"; else second order
    when i = 1, solver_order = 2 or it is the second-to-last step under lower_order_final with
    n < 15; else third order (n = 5, solver_order 3: 1, 2, 3, 2, 1)."""
    out = []
    for i in range(n):
        last = i == n - 1 and (euler_at_final or (lower_order_final and n < 15)
                               or final_sigmas_type == "zero")
        second_last = i == n - 2 and lower_order_final and n < 15
        if solver_order == 1 or i == 0 or last:
            out.append(1)
        elif solver_order == 2 or i == 1 or second_last:
            out.append(2)
        else:
            out.append(3)
    return tuple(out)


def scheduler_class(name: str) -> Any:
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
def ddpm_noise(noise: Any):
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

    s = scheduler_class(cfg.scheduler)(**cfg.kwargs())
    s.set_timesteps(cfg.n)
    if cfg.tables == "float64":
        s.alphas_cumprod = s.alphas_cumprod.to(torch.float64)
        if hasattr(s, "final_alpha_cumprod"):
            s.final_alpha_cumprod = torch.as_tensor(s.final_alpha_cumprod).to(torch.float64)
        if hasattr(s, "one"):
            s.one = s.one.to(torch.float64)
    return s



def table_betas(s: Any) -> np.ndarray:
    """The spec's betas whose VPSchedule has ᾱ_{τ+1} = the scheduler's alphas_cumprod[τ]."""
    ab = s.alphas_cumprod.double().numpy()
    return 1.0 - ab / np.concatenate([[1.0], ab[:-1]])


def integer_taus(cfg: DiffusersConfig, raw: list[float]) -> list[int]:
    """The timesteps as integers τ ∈ {0..T−1}, or ValueError (the claim is outside the spec)."""
    if any(v != int(v) for v in raw):
        raise OutsideSpec(
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

