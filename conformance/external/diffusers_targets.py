"""The diffusers schedulers under test, one class each, and `TARGETS`, the table of them.

Every list of schedulers elsewhere (the command's targets, its --case, the grid and Karras σ
rows) is derived from `TARGETS`: adding a scheduler is one class and one entry here. A class
states its claim in the spec's conventions (`prepare`), draws its configuration families
(`diffusers_families`) and says how the grid and Karras σ rows read it (`grid_spacings`,
`grid`, `karras`, `karras_from_table`, `karras_n_max`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from conformance.external import scheduler_target as generic
from conformance.external.diffusers_config import (
    DiffusersConfig,
    build_scheduler,
    ddpm_noise,
    dpm_step_orders,
    final_time,
    integer_taus,
    scheduler_class,
    spec_time,
    table_betas,
)
from conformance.external.diffusers_families import (
    ddim_families,
    ddpm_families,
    dpm_families,
    dpm_singlestep_families,
    euler_ancestral_families,
    flow_families,
    sigma_families,
    unipc_families,
)
from conformance.external.methods import (
    DDIM,
    DDPM,
    DPMSolverPP,
    DPMSolverPP3M,
    EDMEuler,
    EDMHeun,
    FlowEuler,
    Method,
)
from conformance.external.targets import (
    FLOAT32,
    FLOAT64,
    FLOW32,
    Claim,
    Family,
    OutsideSpec,
    Run,
    Tolerance,
    flow_betas,
)


class SchedulerTarget:
    """What every diffusers target shares: its name, its reproduction code and how the grid and
    Karras σ rows read it (class attributes, so that the rows need no instance)."""

    name: str
    grid_spacings: tuple[str, ...] = ("leading", "linspace", "trailing")
    """The timestep_spacing values whose grid is compared with spec.timestep_grid."""
    karras = False  # use_karras_sigmas: its σ's compared with spec.edm.edm_sigmas
    karras_from_table = False  # σ_min, σ_max of the whole table (else of its own grid)

    @staticmethod
    def grid(timesteps: Sequence[float]) -> list[float]:
        """The grid its timesteps list claims (each entry one step's model call)."""
        return list(timesteps)

    @staticmethod
    def sigma_grid(sigmas: Sequence[float]) -> list[float]:
        """σ of each grid time, then the final σ, from its sigmas list."""
        return list(sigmas)

    @staticmethod
    def karras_n_max(T: int) -> int:
        """The largest num_inference_steps the Karras σ rows draw."""
        return T

    config_type = DiffusersConfig

    def code(self, cfg: DiffusersConfig) -> str:
        """The scheduler's own code for `cfg` (DiffusersConfig.code)."""
        return cfg.code()

    @staticmethod
    def tolerance(cfg: DiffusersConfig) -> Tolerance:
        """The tolerance of `cfg`'s precision (for --case)."""
        return FLOAT64 if cfg.tables == "float64" else FLOAT32

    def families(self, profile: str) -> list[Family]:
        raise NotImplementedError

    def prepare(self, cfg: DiffusersConfig) -> Run:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# DDIM and DDPM: the loops of their pipelines


class PipelineTarget(SchedulerTarget):
    """A scheduler driven by the loop of its pipeline (DDIMPipeline / DDPMPipeline): float64 or
    float32 tables as the configuration says; the claim ends where `final` says."""

    def method(self, cfg: DiffusersConfig) -> Method:
        raise NotImplementedError

    def final(self, cfg: DiffusersConfig) -> tuple[int, str]:
        """(the spec time its last step lands on, its label)."""
        return 0, "final (ᾱ=1)"

    def step(self, s: Any, out: Any, tau: Any, x: Any, z: Any, cfg: DiffusersConfig) -> Any:
        """One call of its step(), handed the noise z."""
        raise NotImplementedError

    def previous(self, s: Any, tau: int, cfg: DiffusersConfig) -> tuple[int, str]:
        """(the τ its step from τ lands on, how step() computes it)."""
        raise NotImplementedError

    def claim(self, cfg: DiffusersConfig, s: Any) -> Claim:
        """The grid `s` claims, in spec time, with the scheduler's own ᾱ as the schedule."""
        taus = [int(v) for v in s.timesteps]
        T = len(s.alphas_cumprod)
        past = [tau for tau in taus if not 0 <= tau < T]
        if past:
            raise ValueError(
                f"set_timesteps({cfg.n}) made {len(taus)} timesteps {taus}, with τ = {past} "
                f"outside alphas_cumprod's {{0..{T - 1}}} (spec t = τ + 1 = "
                f"{[spec_time(p) for p in past]}, outside {{1..{T}}}); a torch index −1 "
                "silently reads ᾱ_T, one past the end raises IndexError"
            )
        end, end_label = self.final(cfg)
        return Claim(
            betas=table_betas(s), grid=tuple(spec_time(tau) for tau in taus), end=end,
            method=self.method(cfg), prediction=cfg.prediction_type,
            labels=(*(f"τ={tau}" for tau in taus), end_label),
        )

    def prepare(self, cfg: DiffusersConfig) -> Run:
        import torch

        s = build_scheduler(cfg)
        claim = self.claim(cfg, s)
        dtype = np.float64 if cfg.tables == "float64" else np.float32
        taus = [int(v) for v in s.timesteps]

        def sample(x_T: np.ndarray, predict: Any, noise: np.ndarray) -> list[np.ndarray]:
            x = torch.from_numpy(np.array(x_T))
            states = [x_T]
            for i, tau in enumerate(s.timesteps):
                out = torch.from_numpy(np.array(predict(x.numpy(), spec_time(int(tau)))))
                z = torch.from_numpy(np.array(noise[i]))
                x = self.step(s, out, tau, x, z, cfg)
                states.append(x.numpy().copy())
            return states

        def describe(i: int) -> str:
            tau = taus[i]
            prev, how = self.previous(s, tau, cfg)
            where = (
                f"alphas_cumprod[{prev}] (spec t = {spec_time(prev)})" if prev >= 0
                else f"final_alpha_cumprod (spec t = {claim.end})"
            )
            return f"model at τ = {tau} (spec t = {spec_time(tau)}); prev = {how} = {prev}: ᾱ_prev = {where}"

        return Run(claim=claim, sample=sample, dtype=dtype, describe=describe, repro=self.code(cfg))


class DDIMTarget(PipelineTarget):
    """diffusers' DDIMScheduler against spec.ddim (Eq. 12, σ of Eq. 16): each step's noise passed
    as variance_noise; set_alpha_to_one=False ends at alphas_cumprod[0], the spec's t = 1."""

    name = "DDIMScheduler"

    def families(self, profile: str) -> list[Family]:
        return ddim_families(profile)

    def method(self, cfg: DiffusersConfig) -> Method:
        return DDIM(eta=cfg.eta, clip=cfg.clip)

    def final(self, cfg: DiffusersConfig) -> tuple[int, str]:
        end = final_time(cfg.set_alpha_to_one)
        return end, "final (ᾱ=1)" if cfg.set_alpha_to_one else "final (alphas_cumprod[0])"

    def step(self, s, out, tau, x, z, cfg):
        return s.step(out, tau, x, eta=cfg.eta, variance_noise=z).prev_sample

    def previous(self, s, tau, cfg):
        return tau - cfg.T // cfg.n, "τ − T // n"


class DDPMTarget(PipelineTarget):
    """diffusers' DDPMScheduler against spec.ddpm (Algorithm 2, respaced on a strided grid):
    variance_type fixed_small[_log] / fixed_large[_log] is spec.ddpm's variance fixed_small /
    fixed_large (the _log forms are the same σ through exp(½·log)); step() draws its own noise,
    so the adapter hands it noise[i] as its randn_tensor (`ddpm_noise`)."""

    name = "DDPMScheduler"

    def families(self, profile: str) -> list[Family]:
        return ddpm_families(profile)

    def method(self, cfg: DiffusersConfig) -> Method:
        return DDPM(variance=cfg.variance_type.removesuffix("_log"), clip=cfg.clip)

    def step(self, s, out, tau, x, z, cfg):
        with ddpm_noise(z):
            return s.step(out, tau, x).prev_sample

    def previous(self, s, tau, cfg):
        return int(s.previous_timestep(tau)), "previous_timestep(τ)"


# ---------------------------------------------------------------------------------------------
# Euler and Heun: spec.edm on the VP σ's of the table


class SigmaTarget(SchedulerTarget):
    """What EulerDiscrete and HeunDiscrete share: the EDM sample x̃ = x_t·√(1 + σ²), started
    from x̃ = x_T·√(1 + σ_0²) and handed back as x̃/√(1 + σ²) after each whole step; the model
    gets scale_model_input(x̃) = x_t at the spec time t = τ + 1; float32 tables and sample as
    shipped; non-integer timesteps (linspace with (n − 1) ∤ (T − 1)) are outside a discrete
    claim. A subclass says its method, how its timesteps and sigmas lists give its grid, and
    which model calls end a whole step (`whole_step`)."""

    grid_spacings = ("leading", "trailing")  # linspace is unrounded: fractional τ (step rows)
    karras = True
    method: Method
    note: str

    def families(self, profile: str) -> list[Family]:
        return sigma_families(self.name, profile, self.note)

    @staticmethod
    def whole_step(k: int, last: int) -> bool:
        """Whether model call k (of 0..last) ends a whole step."""
        return True

    def describe(self, i: int, taus: list[int], sig: list[float]) -> str:
        raise NotImplementedError

    def prepare(self, cfg: DiffusersConfig) -> Run:
        import torch

        s = scheduler_class(self.name)(**cfg.kwargs())
        s.set_timesteps(cfg.n)
        taus = integer_taus(cfg, self.grid([float(v) for v in s.timesteps]))
        sig = self.sigma_grid([float(v) for v in s.sigmas])
        if len(sig) != len(taus) + 1:
            raise ValueError(f"sigmas {[float(v) for v in s.sigmas]} do not list one σ per grid "
                             "time and a final one")
        if sig[-1] != 0.0:
            raise OutsideSpec(f"sigmas end in σ = {sig[-1]!r}, not 0: the EDM claims (spec.edm, "
                              "Karras Algorithm 1) end at σ = 0")
        claim = Claim(betas=table_betas(s), grid=tuple(spec_time(tau) for tau in taus), end=0,
                      method=self.method, prediction=cfg.prediction_type,
                      labels=(*(f"τ={tau}" for tau in taus), "σ=0"))

        def sample(x_T: np.ndarray, predict: Any, noise: np.ndarray) -> list[np.ndarray]:
            x = torch.from_numpy(np.array(x_T, dtype=np.float32)) * float(np.sqrt(1 + sig[0] ** 2))
            states = [x_T]
            last = len(s.timesteps) - 1
            for k, tau in enumerate(s.timesteps):
                x_in = s.scale_model_input(x, tau)
                out = torch.from_numpy(np.array(predict(x_in.numpy(), spec_time(int(tau)))))
                x = s.step(out, tau, x).prev_sample
                if self.whole_step(k, last):
                    i = len(states)  # the state at grid index i
                    states.append(x.double().numpy() / np.sqrt(1 + sig[i] ** 2))
            return states

        return Run(claim=claim, sample=sample, dtype=np.float32,
                   describe=lambda i: self.describe(i, taus, sig), repro=self.code(cfg))


class EulerTarget(SigmaTarget):
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
    method = EDMEuler()
    note = "prediction_type (ε, x_0, v), beta_schedule and β range drawn freely; s_churn = 0"

    def describe(self, i, taus, sig):
        return (f"model at τ = {taus[i]} (spec t = {spec_time(taus[i])}) on scale_model_input(x̃); "
                f"σ = {sig[i]!r} → σ_next = {sig[i + 1]!r}")


class HeunTarget(SigmaTarget):
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
    method = EDMHeun()
    note = "prediction_type (ε, x_0, v), beta_schedule and β range drawn freely; clip_sample off"

    @staticmethod
    def grid(timesteps: Sequence[float]) -> list[float]:
        """timesteps[0::2], after checking the list is [τ_0, τ_1, τ_1, …, τ_(n−1), τ_(n−1)]."""
        raw = list(timesteps)
        grid = raw[0::2]
        if raw != [grid[0], *(v for g in grid[1:] for v in (g, g))]:
            raise ValueError(f"timesteps {raw} are not [τ_0, τ_1, τ_1, …, τ_(n−1), τ_(n−1)]")
        return grid

    @staticmethod
    def sigma_grid(sigmas: Sequence[float]) -> list[float]:
        """[σ_0, σ_1, σ_1, …, σ_(n−1), σ_(n−1), 0] read as σ_0, σ_1, …, σ_(n−1), 0."""
        return [*sigmas[0::2], sigmas[-1]]

    @staticmethod
    def whole_step(k: int, last: int) -> bool:
        return k % 2 == 1 or k == last  # after its corrector, or the last Euler call

    def describe(self, i, taus, sig):
        what = (f"then at τ = {taus[i + 1]} (spec t = {spec_time(taus[i + 1])}) on the predicted x̃' "
                "(the corrector)" if i + 1 < len(taus) else "one Euler call into σ = 0")
        return (f"model at τ = {taus[i]} (spec t = {spec_time(taus[i])}) on scale_model_input(x̃), "
                f"{what}; σ = {sig[i]!r} → σ_next = {sig[i + 1]!r}")


# ---------------------------------------------------------------------------------------------
# DPM-Solver multistep: spec.dpm_solver


class DPMSolverTarget(SchedulerTarget):
    """diffusers' DPMSolverMultistepScheduler (algorithm_type "dpmsolver++", solver_type
    "midpoint", solver_order 1, 2 or 3) against spec.dpm_solver: DPM-Solver++(2M) (Lu et al.
    2022b, Algorithm 2) and, for solver_order 3, DPM-Solver++(3M) (`DPMSolverPP3M`).

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
    * solver_order 3: the order of each step is step()'s own (`dpm_step_orders`: 1, 2, then 3,
      the last two steps 2 and 1 under lower_order_final with fewer than 15 steps); a
      third-order step reads model_outputs[-2] and [-3], which the spec recomputes from the
      target's states at t_{i−1} and t_{i−2} (`DPMSolverPP3M`).
    * prediction_type: ε, x_0, v of the same ε-model, converted by convert_model_output with
      the σ of the step. step() upcasts the sample to float32: float32 as shipped.
    """

    name = "DPMSolverMultistepScheduler"
    grid_spacings = ()  # another grid construction than Lin et al. 2023 Table 2's (SCOPE)
    karras = True
    karras_from_table = True

    @staticmethod
    def karras_n_max(T: int) -> int:
        return T - 1  # n = T repeats a τ (the rows 'n = T')

    def families(self, profile: str) -> list[Family]:
        return dpm_families(profile)

    def first_order(self, cfg: DiffusersConfig, n: int) -> tuple[int, ...]:
        """diffusers' first-order steps beyond the spec's own (step 0; a step into ᾱ = 1)."""
        if cfg.solver_order == 1:
            return tuple(range(1, n))
        last = cfg.euler_at_final or (cfg.lower_order_final and n < 15)
        return (n - 1,) if last and n > 1 and cfg.final_sigmas_type != "zero" else ()


    def prepare(self, cfg: DiffusersConfig) -> Run:
        import torch

        if cfg.solver_order not in (1, 2, 3):
            raise OutsideSpec(f"solver_order {cfg.solver_order}: the spec has DPM-Solver++(1), "
                              "(2M) and (3M) only")
        s = scheduler_class(self.name)(**cfg.kwargs())
        s.set_timesteps(cfg.n)
        taus = integer_taus(cfg, [float(v) for v in s.timesteps])
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
        orders = dpm_step_orders(cfg.solver_order, cfg.lower_order_final, cfg.euler_at_final,
                                 cfg.final_sigmas_type, n)
        method = (DPMSolverPP3M(orders=orders) if cfg.solver_order == 3
                  else DPMSolverPP(first_order=self.first_order(cfg, n)))
        claim = Claim(betas=table_betas(s), grid=tuple(spec_time(tau) for tau in taus), end=end,
                      method=method,
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
            order = orders[i]  # step()'s own rule (dpm_step_orders)
            hist = (f", with model_outputs[-2] from τ = {taus[i - 1]}" if order >= 2 else "") + (
                f" and model_outputs[-3] from τ = {taus[i - 2]}" if order == 3 else "")
            return (f"model at τ = {taus[i]} (spec t = {spec_time(taus[i])}); σ = {sig[i]!r} → "
                    f"σ_next = {sig[i + 1]!r}; order {order}{hist}")

        return Run(claim=claim, sample=sample, dtype=np.float32, describe=describe, repro=self.code(cfg))


# ---------------------------------------------------------------------------------------------
# The schedulers checked through the generic adapter: a claim of scheduler_target.CLAIMS, the
# configuration families of their options


class GenericTarget(SchedulerTarget):
    """A diffusers scheduler checked by the generic adapter (`scheduler_target.SchedulerTarget`
    with the claim `claims`), its DiffusersConfig handed over as a SchedulerConfig: the class
    built from keyword arguments, its own loop, its float32 tables as shipped. A subclass names
    the class, the claim and its option families."""

    claims: str
    grid_spacings = ()  # the grids of Euler's construction are the rows of EulerDiscrete

    def claim_of(self, cfg: DiffusersConfig | None) -> str:
        """The claim of a configuration (one claim per class unless a subclass says otherwise)."""
        return self.claims

    def adapter(self, cfg: DiffusersConfig | None = None) -> generic.SchedulerTarget:
        return generic.SchedulerTarget(scheduler_class(self.name), self.claim_of(cfg))

    @staticmethod
    def scheduler_config(cfg: DiffusersConfig) -> generic.SchedulerConfig:
        return generic.SchedulerConfig(
            T=cfg.T, n=cfg.n, beta_start=cfg.beta_start, beta_end=cfg.beta_end,
            beta_schedule=cfg.beta_schedule, spacing=cfg.spacing,
            prediction_type=cfg.prediction_type, shape=cfg.shape, seed=cfg.seed,
            options=cfg.options, mu=cfg.mu)

    def tolerance(self, cfg: DiffusersConfig) -> Tolerance:
        return FLOW32 if generic.CLAIMS[self.claim_of(cfg)].loop == "flow" else FLOAT32

    def code(self, cfg: DiffusersConfig) -> str:
        adapter = self.adapter(cfg)
        args = ", ".join(f"{k}={v!r}" for k, v in self.scheduler_config(cfg).kwargs(adapter.accepts).items())
        mu = "" if cfg.mu is None else f", mu={cfg.mu!r}"
        return (f"s = {self.name}({args}); s.set_timesteps({cfg.n}{mu})\n"
                f"  for tau in s.timesteps: x = s.step(model(s.scale_model_input(x, tau), tau), "
                f"tau, x).prev_sample\n  x_T, noise: shape {cfg.shape}, seed {cfg.seed}\n"
                f"  rerun: python -m conformance.external diffusers --case '{cfg.to_json()}'")

    def prepare(self, cfg: DiffusersConfig) -> Run:
        run = self.adapter(cfg).prepare(self.scheduler_config(cfg))
        run.repro = self.code(cfg)
        return run


class UniPCTarget(GenericTarget):
    """diffusers' UniPCMultistepScheduler against spec.unipc (Zhao et al. 2023): predict_x0,
    solver_type bh1 / bh2, solver_order 1–3, the corrector on or off, lower_order_final,
    final_sigmas_type; its states are the predictor's outputs (`methods.UniPC`)."""

    name, claims = "UniPCMultistepScheduler", "unipc"

    def claim_of(self, cfg: DiffusersConfig | None) -> str:
        """use_flow_sigmas: UniPC on flow states (α = 1 − σ), the claim flow_unipc."""
        return "flow_unipc" if cfg is not None and dict(cfg.options).get("use_flow_sigmas") else "unipc"

    def families(self, profile: str) -> list[Family]:
        return unipc_families(profile)


class DPMSolverSinglestepTarget(GenericTarget):
    """diffusers' DPMSolverSinglestepScheduler (dpmsolver++, midpoint) against spec.dpm_solver's
    DPM-Solver++(2S) (Lu et al. 2022b, Algorithm 1): its order list [1, 2, 1, 2, …] is the grid
    in pairs, each pair's first call the first-order step to the intermediate time."""

    name, claims = "DPMSolverSinglestepScheduler", "dpmsolver++2s"

    def families(self, profile: str) -> list[Family]:
        return dpm_singlestep_families(profile)


class EulerAncestralTarget(GenericTarget):
    """diffusers' EulerAncestralDiscreteScheduler against spec.edm.edm_euler_ancestral_step on
    the VP σ's of its table (x̃ = x_t·√(1 + σ²), as EulerDiscrete), each step's noise handed to
    its randn_tensor."""

    name, claims = "EulerAncestralDiscreteScheduler", "euler_ancestral"

    def families(self, profile: str) -> list[Family]:
        return euler_ancestral_families(profile)


class CustomGridAdapter(generic.SchedulerTarget):
    """The generic adapter with set_timesteps given a custom grid: `custom`, its keyword
    arguments `sigmas` and / or `timesteps` (DiffusersConfig.custom)."""

    def __init__(self, cls: Any, claims: str, custom: dict[str, list[float]]) -> None:
        super().__init__(cls, claims)
        self.custom = custom

    def build(self, cfg: generic.SchedulerConfig) -> Any:
        import logging

        s = self.cls(**cfg.kwargs(self.accepts))
        # its warning that timesteps without sigmas "may not be consistent" is the finding the
        # families report; silenced here so that it does not print once per configuration drawn
        logger = logging.getLogger(self.cls.__module__)
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            s.set_timesteps(cfg.n, **({} if cfg.mu is None else {"mu": cfg.mu}), **self.custom)
        finally:
            logger.setLevel(level)
        return s


class FlowMatchEulerTarget(GenericTarget):
    """diffusers' FlowMatchEulerDiscreteScheduler against spec.flow.flow_euler_step on its own
    σ's (shift, use_dynamic_shifting with μ, shift_terminal, custom sigmas / timesteps): the
    steps, not the grid, which is another construction than spec.flow.flow_sigmas
    (docs/errata.md §5; its σ's at n = T are the rows FlowMatchEulerDiscreteScheduler.sigmas).

    Custom grids (`set_timesteps(n, sigmas=…, timesteps=…)`): given sigmas, its σ's must be
    SD3 Eq. 23 of them (spec.flow.time_shift, the shift it documents applying), else the claim
    departs; given timesteps, the model is called at timestep/T, which the recorded calls
    compare with the σ of the state. Non-finite σ's (shift_terminal with one step: [nan, 0]):
    the claim is the grid its options ask for, spec.flow.flow_sigmas(n, shift, shift_terminal),
    on which the spec's sample is finite; its timesteps are NaN and name no σ, so the model is
    given the claim's σ of the step, and what fails is its own step()."""

    name, claims = "FlowMatchEulerDiscreteScheduler", "flow_euler"

    def families(self, profile: str) -> list[Family]:
        return flow_families(self.name, profile)

    def adapter(self, cfg: DiffusersConfig | None = None) -> generic.SchedulerTarget:
        custom = {k: list(v) for k, v in (cfg.custom if cfg is not None else ())}
        return CustomGridAdapter(scheduler_class(self.name), self.claim_of(cfg), custom)

    def code(self, cfg: DiffusersConfig) -> str:
        text = super().code(cfg)
        if not cfg.custom:
            return text
        custom = "".join(f", {k}={list(v)!r}" for k, v in cfg.custom)
        mu = "" if cfg.mu is None else f", mu={cfg.mu!r}"
        return text.replace(f"s.set_timesteps({cfg.n}{mu})", f"s.set_timesteps({cfg.n}{mu}{custom})", 1)

    @staticmethod
    def shift(cfg: DiffusersConfig) -> float:
        """The s of its σ' = s·σ/(1 + (s − 1)·σ): e^μ under use_dynamic_shifting, else `shift`."""
        options = dict(cfg.options)
        return float(np.exp(cfg.mu)) if options.get("use_dynamic_shifting") else float(
            options.get("shift", 1.0))

    def prepare(self, cfg: DiffusersConfig) -> Run:
        from spec.flow import time_shift

        adapter, sc = self.adapter(cfg), self.scheduler_config(cfg)
        s = adapter.build(sc)
        sig = s.sigmas.double().numpy()
        given = dict(cfg.custom).get("sigmas")
        if given is not None:
            want = time_shift(np.array(given), self.shift(cfg))
            if not np.allclose(sig[:-1], want, rtol=1e-6, atol=0):
                raise ValueError(f"set_timesteps(sigmas={list(given)}) made sigmas {list(sig)}: "
                                 f"not SD3 Eq. 23 of the given σ's, spec.flow.time_shift(σ, "
                                 f"{self.shift(cfg)!r}) = {list(want)}")
        run = adapter.prepare(sc) if np.all(np.isfinite(sig)) else self.spec_grid_run(cfg, s)
        run.repro = self.code(cfg)
        return run

    def spec_grid_run(self, cfg: DiffusersConfig, s: Any) -> Run:
        """The run of a scheduler whose σ's are not finite, on the grid its options ask for."""
        import torch

        from spec.flow import flow_sigmas

        n = cfg.n
        sig = flow_sigmas(n, self.shift(cfg), dict(cfg.options).get("shift_terminal"))
        its, taus = [float(v) for v in s.sigmas], [float(v) for v in s.timesteps]
        claim = Claim(betas=flow_betas(sig[:-1]), grid=tuple(range(n, 0, -1)), end=0,
                      method=FlowEuler(),
                      labels=(*(f"σ={v:.6g} (its sigmas[{i}] = {w!r}, timesteps[{i}] = {u!r})"
                                for i, (v, w, u) in enumerate(zip(sig[:-1], its[:-1], taus, strict=True))),
                              "σ=0"))

        def sample(x_T: np.ndarray, predict: Any, noise: np.ndarray) -> list[np.ndarray]:
            x = torch.from_numpy(np.array(x_T, dtype=np.float32))
            states = [x_T]
            for k, tau in enumerate(s.timesteps):  # τ = NaN: the model gets the claim's σ_k
                out = torch.from_numpy(np.array(predict(x.numpy(), n - k)))
                x = s.step(out, tau, x).prev_sample
                states.append(x.double().numpy())
            return states

        return Run(claim=claim, sample=sample, dtype=np.float32)


class FlowMatchHeunTarget(GenericTarget):
    """diffusers' FlowMatchHeunDiscreteScheduler against spec.flow.flow_heun_step on its own
    σ's, two calls per step (interleaved timesteps), Euler into σ = 0 (`methods.FlowHeun`)."""

    name, claims = "FlowMatchHeunDiscreteScheduler", "flow_heun"

    def families(self, profile: str) -> list[Family]:
        return flow_families(self.name, profile)


TARGETS: dict[str, type[SchedulerTarget]] = {
    target.name: target
    for target in (DDIMTarget, DDPMTarget, EulerTarget, HeunTarget, DPMSolverTarget,
                   UniPCTarget, DPMSolverSinglestepTarget, EulerAncestralTarget,
                   FlowMatchEulerTarget, FlowMatchHeunTarget)
}
"""Every adapted scheduler by its diffusers class name, in the order of the report."""


def all_targets() -> list[SchedulerTarget]:
    """A fresh instance of every adapted scheduler."""
    return [target() for target in TARGETS.values()]
