"""diffspec's executable specification of diffusion models: plain NumPy, read like the papers.

Every function here is the reference that `runtime` (PyTorch) is checked against by
`conformance`. The spec imports neither torch nor runtime, computes in the dtype of its inputs
(float64 by default; NumPy's promotion rules decide mixed inputs) and takes all randomness as
explicit noise arrays.

Notation (Ho et al. 2020, "DDPM"; Song, Meng & Ermon 2021, "DDIM"; Song et al. 2021, "SDE")
----------------------------------------------------------------------------------------------
    symbol      meaning                                           code
    T           number of diffusion steps                         sched.T
    x_0         clean data, in [-1, 1]                            x0
    x_t         noised sample at time t                           x_t
    ε           standard normal noise                             eps, noise, z
    ε̂, ε_θ      predicted noise ε_θ(x_t, t/T)                     model.eps(x_t, t / T)
    β_t         variance of the transition t−1 → t, t = 1..T      sched.beta(t − 1) = betas[t − 1]
    α_t         1 − β_t (DDPM)                                    sched.alpha(t − 1)
    ᾱ_t         Π_{s≤t} α_s, ᾱ_0 = 1 (DDPM's "alpha bar")         sched.alpha_bar(t)
    α_t (DDIM)  = DDPM's ᾱ_t. DDIM writes α for the cumulative product; this code always
                writes ᾱ (alpha_bar), also in spec.ddim.
    β̃_t         (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t, posterior variance   q_posterior_mean_variance
    μ̃_t         posterior mean of q(x_{t−1} | x_t, x_0)          q_posterior_mean_variance
    x̂_0         predicted clean sample                            x0_pred, predict_x0
    v           √ᾱ_t·ε − √(1 − ᾱ_t)·x_0 (Salimans & Ho 2022)      v_target
    prediction  what the network outputs: "eps", "x0" or "v"      Denoiser.prediction
    SNR(t)      ᾱ_t / (1 − ᾱ_t)                                   snr
    σ (DDIM)    η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev)           ddim_step_between
    β(t), ᾱ(t)  continuous VP schedule, t ∈ [0, 1] (SDE paper)    VPLinearSchedule,
                β(t) = −d log ᾱ(t)/dt                             VPCosineSchedule
    σ(t)        √(1 − ᾱ(t))                                       VP…Schedule.sigma
    σ (EDM)     √((1 − ᾱ)/ᾱ), the noise level of x̃ = x_t/√ᾱ       vp_to_edm, edm_to_vp
    D(x̃; σ)     EDM's denoiser, x̂_0 of x̃ = x_0 + σ·ε               edm_denoise
    λ_t         log(√ᾱ_t/√(1 − ᾱ_t)), DPM-Solver's half log-SNR    half_log_snr

Time convention (the one convention, stated here only)
------------------------------------------------------
* t ∈ {0, 1, …, T}; x_0 is the data. `betas` has length T; betas[k] is the variance of the
  transition k → k+1 (β_{k+1}). ᾱ_0 = 1, ᾱ_{k+1} = ᾱ_k·(1 − betas[k]); alpha_bars has T + 1
  entries.
* The reverse step with index k ∈ {0..T−1} maps x_{k+1} → x_k (it runs at time t = k + 1).
* The model receives time_of_index(t, T) = t / T (0 when T = 0), in training, in every sampler
  and in the time channel. The probability-flow ODE runs in continuous t ∈ [0, 1] and gives
  the model t itself, on the same scale.

Totality: sqrt_nonneg(x) = sqrt(max(x, 0)) and safe_div(x, y) = x / (y + EPS), EPS = 1e-12, are
used exactly at: every square root of ᾱ, 1 − ᾱ, α, β̃, σ²-type quantities (incl. σ_DDIM,
√(1 − ᾱ_prev − σ²) and σ(t)); every division by √ᾱ_t, √(1 − ᾱ_t), 1 − ᾱ_t, √α_t, σ(t), and by
1 − ᾱ_t and ᾱ_prev inside σ_DDIM. Nowhere else.

Errors: bad arguments raise ValueError naming the argument, the value and the allowed range.
"""

from spec.core import EPS, EpsModel, mse, safe_div, sqrt_nonneg
from spec.data import from_diffusion_range, noised_sample_from_eps, to_diffusion_range
from spec.ddim import (
    ddim_prev,
    ddim_sample,
    ddim_sample_strided,
    ddim_step,
    ddim_step_between,
    ddim_step_system,
    ddim_timesteps,
)
from spec.ddpm import ddpm_sample, ddpm_step, x0_pred
from spec.dpm_solver import dpm_solver_pp_2m_sample, dpm_solver_pp_2m_step, half_log_snr
from spec.dynamics import (
    DrivenSystem,
    DynamicalSystem,
    driven_trajectory,
    is_fixed_point,
    iterate,
    iterate_with_input,
    trajectory,
)
from spec.edm import (
    edm_denoise,
    edm_euler_step,
    edm_heun_step,
    edm_sample_euler,
    edm_sample_heun,
    edm_sigmas,
    edm_to_vp,
    vp_to_edm,
)
from spec.forward import q_posterior_mean_variance, q_sample
from spec.guidance import GuidedModel, guided_output
from spec.likelihood import (
    bits_per_dim,
    discretized_gaussian_log_likelihood,
    normal_kl,
    standard_normal_cdf,
    vlb_terms,
)
from spec.loss import eps_pred_loss, prediction_loss
from spec.model import (
    CondFiLMNetConfig,
    EpsConvNetConfig,
    EpsFiLMNetConfig,
    append_time_channel,
    cond_film_net,
    conv2d_same,
    eps_conv_net,
    eps_film_net,
    eps_residual_conv_net,
    group_norm,
    init_cond_film_params,
    init_film_params,
    init_params,
    linear,
    relu,
    silu,
    sinusoidal_embedding,
)
from spec.pf_ode import (
    VPCosineSchedule,
    VPLinearSchedule,
    euler_step,
    pf_ode_euler_system,
    pf_ode_rhs,
    pf_ode_sample_euler,
)
from spec.prediction import (
    PREDICTIONS,
    Denoiser,
    denoise,
    eps_from_output,
    min_snr_weight,
    predict_eps,
    predict_x0,
    prediction_target,
    snr,
    v_target,
    x0_from_output,
)
from spec.schedule import (
    SPACINGS,
    VPSchedule,
    cosine_betas,
    linear_betas,
    rescale_zero_terminal_snr,
    time_of_index,
    timestep_grid,
)
from spec.train import adam_step, ema_update, train_loss, train_step

TORCHLEAN_NAMES: dict[str, str] = {
    "sqrtNonneg": "sqrt_nonneg",
    "safeDiv": "safe_div",
    "mseSpec": "mse",
    "timeOfIndex": "time_of_index",
    "qSample": "q_sample",
    "epsPredLoss": "eps_pred_loss",
    "x0Pred": "x0_pred",
    "ddpmStep": "ddpm_step",
    "ddpmSample": "ddpm_sample",
    "ddimStep": "ddim_step",
    "ddimSample": "ddim_sample",
    "ddimStepSystem": "ddim_step_system",
    "ddimPrev": "ddim_prev",
    "pfOdeRhs": "pf_ode_rhs",
    "eulerStep": "euler_step",
    "pfOdeSampleEuler": "pf_ode_sample_euler",
    "pfOdeEulerSystem": "pf_ode_euler_system",
    "epsConvNet": "eps_conv_net",
    "epsResidualConvNet": "eps_residual_conv_net",
    "toDiffusionRange": "to_diffusion_range",
    "noisedSampleFromEps": "noised_sample_from_eps",
}
"""TorchLean (Lean) name → Python name. Two are not faithful translations: our `pf_ode_rhs`
halves TorchLean's score term and our `pf_ode_sample_euler` evaluates t = 1 first (see
`spec.pf_ode`)."""

__all__ = [
    # spec.core
    "EPS",
    "sqrt_nonneg",
    "safe_div",
    "mse",
    "EpsModel",
    # spec.schedule
    "VPSchedule",
    "linear_betas",
    "cosine_betas",
    "time_of_index",
    "rescale_zero_terminal_snr",
    "SPACINGS",
    "timestep_grid",
    # spec.forward
    "q_sample",
    "q_posterior_mean_variance",
    # spec.loss
    "eps_pred_loss",
    "prediction_loss",
    # spec.prediction
    "PREDICTIONS",
    "Denoiser",
    "x0_from_output",
    "eps_from_output",
    "predict_x0",
    "predict_eps",
    "v_target",
    "prediction_target",
    "denoise",
    "snr",
    "min_snr_weight",
    # spec.ddpm
    "x0_pred",
    "ddpm_step",
    "ddpm_sample",
    # spec.ddim
    "ddim_step",
    "ddim_sample",
    "ddim_step_system",
    "ddim_prev",
    "ddim_timesteps",
    "ddim_step_between",
    "ddim_sample_strided",
    # spec.pf_ode
    "VPLinearSchedule",
    "VPCosineSchedule",
    "pf_ode_rhs",
    "euler_step",
    "pf_ode_sample_euler",
    "pf_ode_euler_system",
    # spec.edm
    "vp_to_edm",
    "edm_to_vp",
    "edm_sigmas",
    "edm_denoise",
    "edm_euler_step",
    "edm_heun_step",
    "edm_sample_euler",
    "edm_sample_heun",
    # spec.dpm_solver
    "half_log_snr",
    "dpm_solver_pp_2m_step",
    "dpm_solver_pp_2m_sample",
    # spec.dynamics
    "DynamicalSystem",
    "DrivenSystem",
    "iterate",
    "trajectory",
    "iterate_with_input",
    "driven_trajectory",
    "is_fixed_point",
    # spec.model
    "append_time_channel",
    "conv2d_same",
    "relu",
    "EpsConvNetConfig",
    "init_params",
    "eps_conv_net",
    "eps_residual_conv_net",
    "EpsFiLMNetConfig",
    "init_film_params",
    "eps_film_net",
    "silu",
    "group_norm",
    "linear",
    "sinusoidal_embedding",
    "CondFiLMNetConfig",
    "init_cond_film_params",
    "cond_film_net",
    # spec.guidance
    "guided_output",
    "GuidedModel",
    # spec.data
    "to_diffusion_range",
    "from_diffusion_range",
    "noised_sample_from_eps",
    # spec.likelihood
    "normal_kl",
    "standard_normal_cdf",
    "discretized_gaussian_log_likelihood",
    "vlb_terms",
    "bits_per_dim",
    # spec.train
    "train_loss",
    "adam_step",
    "ema_update",
    "train_step",
]
