"""diffspec's executable specification of diffusion models: plain NumPy, read like the papers.

Every function here is the reference that `runtime` (PyTorch) is checked against by
`conformance`. The spec imports neither torch nor runtime, computes in the dtype of its inputs
(float64 by default; NumPy's promotion rules decide mixed inputs) and takes all randomness as
explicit noise arrays. TorchLean's names (qSample, epsPredLoss, ddimStepSystem, …) and the
errata of its Lean spec are in `spec.torchlean`; its aliases are importable from here.

Notation (Ho et al. 2020, "DDPM"; Song, Meng & Ermon 2021, "DDIM"; Song et al. 2021, "SDE";
Karras et al. 2022, "EDM"). One symbol per quantity; where a paper uses the symbol for
something else, the paper's quantity is renamed here (last column: the code).
-----------------------------------------------------------------------------------------------
    symbol      meaning                                           code
    T           number of diffusion steps                         sched.T
    t           time: t ∈ {0..T} discrete, t ∈ [0, 1] continuous  t
    t_norm      the model's time input, t/T (continuous: t)       time_of_index(t, T)
    x_0         clean data, in [-1, 1]                            x0
    x_t         noised sample at time t                           x_t
    ε           standard normal noise                             eps, noise, z
    ε̂, ε_θ      predicted noise ε_θ(x_t, t_norm)                  model.eps(x_t, t_norm)
    β_t         variance of the transition t−1 → t, t = 1..T      sched.beta[t]    (β_0 = 0)
    α_t         1 − β_t (DDPM)                                    sched.alpha[t]   (α_0 = 1)
    ᾱ_t         Π_{s≤t} α_s (DDPM's "alpha bar")                  sched.alpha_bar[t] (ᾱ_0 = 1)
                DDIM and DPM-Solver write α_t (DDIM) or α_t² (DPM-Solver) for ᾱ_t; this code
                always writes ᾱ, also in spec.ddim and spec.dpm_solver.
    β̃_t         (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t, posterior variance   q_posterior_mean_variance
    μ̃_t         posterior mean of q(x_{t−1} | x_t, x_0)          q_posterior_mean_variance
    σ_t         √β̃_t, DDPM's reverse-step noise scale (Alg. 2)   ddpm_step
                (√β_t with variance="fixed_large", DDPM §3.2)
    σ_η         DDIM's σ_t(η) = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev)  ddim_step_between
                (Eq. 16), renamed so that σ_t stays DDPM's
    x̂_0         predicted clean sample                            x0_pred, predict_x0
    v           √ᾱ_t·ε − √(1 − ᾱ_t)·x_0 (Salimans & Ho 2022)      v_target
    prediction  what the network outputs: "eps", "x0" or "v"      Denoiser.prediction,
                (the names of PREDICTION_TABLE)                   PREDICTION_TABLE
    SNR(t)      ᾱ_t / (1 − ᾱ_t)                                   snr
    λ_t         ½·log SNR(t), DPM-Solver's half log-SNR           half_log_snr
    β(t), ᾱ(t)  continuous VP schedule, t ∈ [0, 1] (SDE paper),   VPLinearSchedule,
                β(t) = −d log ᾱ(t)/dt                             VPCosineSchedule
    β_min,      the linear β(t) at t = 0 and t = 1 (the SDE       VPLinearSchedule.beta_min,
    β_max       paper's β̄_min, β̄_max; never β_0, β_1)             .beta_max
    √(1 − ᾱ(t)) the std of x_t given x_0 (the SDE paper and       sqrt_one_minus_alpha_bar
                DPM-Solver write σ_t; written out here)
    σ           EDM's noise level √((1 − ᾱ)/ᾱ) of x̃ = x_t/√ᾱ    vp_to_edm, edm_to_vp, sigma
                (in spec.flow only: the flow's noise level, x_σ = (1 − σ)·x_0 + σ·ε, σ ∈ [0, 1];
                EDM's σ of that state is σ/(1 − σ))
    x̃           EDM's state x_0 + σ·ε                             x_tilde
    D(x̃; σ)     EDM's denoiser, x̂_0 of x̃                          edm_denoise
    β1, β2      Adam's moment decay rates (Kingma & Ba), not      adam_step's beta1, beta2
                schedule betas

Time convention (stated here and in docs/conventions.md only; the modules link here)
------------------------------------------------------------------------------------
* t ∈ {0, 1, …, T}; x_0 is the data. Every public function takes the time t; a reverse step
  x_t → x_{t−1} takes t ∈ {1..T}. (TorchLean's step index k = t − 1 survives only in the
  aliases of `spec.torchlean`.)
* Every coefficient table has T + 1 entries and is indexed by t: `sched.beta[t]`,
  `sched.alpha[t]`, `sched.alpha_bar[t]`, with entry 0 defined as β_0 = 0, α_0 = 1, ᾱ_0 = 1.
  The schedule is built from its T inputs (β_1, …, β_T) (`linear_betas`, `cosine_betas`).
* The model receives t_norm = time_of_index(t, T) = t / T (0 when T = 0), in training, in every
  sampler and in the time channel. The probability-flow ODE runs in continuous t ∈ [0, 1] and
  gives the model t itself, on the same scale.

Totality: sqrt_nonneg(x) = sqrt(max(x, 0)) and safe_div(x, y) = x / (y + EPS), EPS = 1e-12, are
used exactly at: every square root of ᾱ, 1 − ᾱ, α, β̃, σ²-type quantities (incl. σ_η,
√(1 − ᾱ_prev − σ_η²) and √(1 − ᾱ(t))); every division by √ᾱ_t, √(1 − ᾱ_t), 1 − ᾱ_t, √α_t
and √(1 − ᾱ(t)). Nowhere else. safe_div moves x/y by the relative EPS/y: at most 2.4e-8 on the
default schedules (T = 1000, linear or cosine, with or without zero terminal SNR; the smallest
denominators are 1 − ᾱ_1 = 4.1e-5 and √ᾱ_T = 4.9e-5 of the cosine schedule), and about
EPS/√(β_min·t) for √(1 − ᾱ(t)) of the PF ODE at small t. Two divisions whose denominators go
far lower divide exactly and state their zero case instead: ᾱ'_t/ᾱ'_{t−1} in
rescale_zero_terminal_snr, and σ_η's (1 − ᾱ_prev)/(1 − ᾱ_t) and ᾱ_t/ᾱ_prev (ᾱ_999 = 4.2e-9
under zero terminal SNR, where EPS moved β'_998 by 2e-5, ᾱ'_999 by 1.4e-4 and σ_η by 1e-5).

Errors: bad arguments raise ValueError naming the argument, the value and the allowed range;
each function checks its arguments in one call (`spec.core.check`) before the math.
"""

import importlib as _importlib

MODULES = (
    "core", "schedule", "forward", "loss", "prediction", "ddpm", "ddim", "pf_ode", "edm",
    "dpm_solver", "unipc", "flow", "samplers", "dynamics", "model", "guidance", "data",
    "likelihood", "train", "torchlean",
)
"""The spec's modules in reading order. `__all__` is gathered from their own `__all__` lists in
this order (nothing is listed twice); `docs/api.md` is generated from the same lists."""

__all__: list[str] = []
for _name in MODULES:
    _module = _importlib.import_module(f"spec.{_name}")
    globals().update({name: getattr(_module, name) for name in _module.__all__})
    __all__ += _module.__all__

# TorchLean's names (qSample, ddimStepSystem, …): aliases importable from here, not in __all__.
_torchlean = _importlib.import_module("spec.torchlean")
TORCHLEAN_NAMES = _torchlean.TORCHLEAN_NAMES
globals().update({lean: getattr(_torchlean, lean) for lean in TORCHLEAN_NAMES})
del _name, _module, _torchlean
