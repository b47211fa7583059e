"""One training step: DDPM Algorithm 1 with Adam and an EMA of the weights.

DDPM (Ho et al. 2020), Algorithm 1, one iteration on a batch of B images:

    x_0 ~ q(x_0)                 a batch in [0, 1], mapped to [-1, 1] (x0 = 2·x01 − 1, §4)
    t ~ Uniform({1, …, T})       one time per sample (explicit here: the caller draws it)
    ε ~ N(0, I)                  explicit noise
    gradient step on ∇_θ ‖ε − ε_θ(√ᾱ_t·x_0 + √(1 − ᾱ_t)·ε, t)‖²   (Eq. 14; the model sees t/T)

The model may predict ε, x_0 or v (a `spec.prediction.Denoiser`): each sample's loss is then
`spec.loss.prediction_loss`, the model's own target, optionally weighted by min-SNR-γ with the
weight of that target (Hang et al. 2023: min(1, γ/SNR) for ε, min(SNR, γ) for x_0,
min(SNR, γ)/(SNR + 1) for v). For an ε-model without γ this is Eq. 14 above.

The "gradient step" is Adam (Kingma & Ba 2015, Algorithm 1) on the batch mean of the per-sample
losses, followed by an exponential moving average of the weights (the EMA of DDPM §B:
"we used EMA on model parameters with a decay factor of 0.9999"), optionally with a warm-up of
its decay (`ema_decay_at`).

NumPy has no automatic differentiation, so the spec does not compute the gradient: it is, by
definition, the derivative of `train_loss` with respect to the parameters, and `train_step`
takes it as an input. Conformance checks the runtime's autograd gradient against central finite
differences of `train_loss` in float64 (along random directions, and coordinate by coordinate
for the small networks of the `train_step` record).

Non-finite guard: a step whose loss or gradient is not finite changes nothing (parameters,
Adam's moments and step count, and the EMA are returned as they were).

Parameters are dicts of arrays (the runtime's state_dict keys); Adam's state is
{"step": k, "m": {name: array}, "v": {name: array}} with k the number of steps taken.

Flow matching (`runtime.train --objective flow`) replaces lines 3–5 of Algorithm 1 by the
rectified-flow loss `flow_train_loss` (Esser et al. 2024, "SD3", §2–3.1; Lipman et al. 2023,
Eq. 23 with t → 1 − σ; notation of spec.flow): σ per sample from a training density
(spec.flow.uniform_sigma or logit_normal_sigma), x_σ = (1 − σ)·x_0 + σ·ε, the velocity
network fed σ itself as its time, target ε − x_0. The update (Adam, EMA, guard) is the same.
"""

from collections.abc import Callable, Sequence

import numpy as np
from jaxtyping import Float

from spec.core import Index, Scalar, check, holds, in_range, mse, same_shape
from spec.data import to_diffusion_range
from spec.flow import VelocityModel, flow_interpolation, flow_velocity_target
from spec.loss import prediction_loss
from spec.prediction import AnyModel
from spec.schedule import VPSchedule

__all__ = ["train_loss", "flow_train_loss", "adam_step", "ema_update", "ema_decay_at",
           "train_step"]

Params = dict[str, np.ndarray]
AdamState = dict  # {"step": int, "m": Params, "v": Params}


def train_loss(
    sched: VPSchedule,
    model: AnyModel,
    x01: Float[np.ndarray, "b c h w"],
    t: Sequence[Index],
    eps: Float[np.ndarray, "b c h w"],
    weights: Float[np.ndarray, " b"] | None = None,
    min_snr_gamma: Scalar | None = None,
) -> Scalar:
    """The batch loss of one training step (DDPM Algorithm 1, lines 2–5; Eq. 14; for x_0- and
    v-models Salimans & Ho 2022 §4, min-SNR-γ Hang et al. 2023 Eq. 7–8).

    Formula: L = (1/B) Σ_i w_i · ℓ_i,  t_i ∈ {1..T},
      ℓ_i = prediction_loss(sched, model, 2·x01_i − 1, t_i, ε_i)
          = mse(out(√ᾱ_{t_i}·x0_i + √(1 − ᾱ_{t_i})·ε_i, t_i/T), y_i), y_i the target of what the
            model predicts (ε_i, x0_i or v_i; an EpsModel predicts ε: Eq. 14);
      w_i = weights_i if `weights` is given, else min_snr_weight(sched, t_i, γ, the model's
            prediction) if `min_snr_gamma` = γ is given, else 1.
    Shapes: x01 (B,C,H,W) in [0, 1], t B ints, eps (B,C,H,W), weights (B,) or None -> scalar.
    """
    check(holds(len(t) == x01.shape[0],
                f"t must hold one time per sample ({x01.shape[0]}), got {len(t)}"),
          *(in_range("t", t_i, 1, sched.T) for t_i in t))
    x0 = to_diffusion_range(x01)
    gamma = min_snr_gamma if weights is None else None  # explicit weights replace min-SNR-γ
    losses = np.array([prediction_loss(sched, model, x0[i], t[i], eps[i], gamma)
                       for i in range(x0.shape[0])])
    w = np.ones_like(losses) if weights is None else np.asarray(weights, dtype=losses.dtype)
    return np.mean(w * losses)


def flow_train_loss(
    model: VelocityModel,
    x01: Float[np.ndarray, "b c h w"],
    sigma: Sequence[Scalar],
    eps: Float[np.ndarray, "b c h w"],
) -> Scalar:
    """The batch loss of one flow-matching step: conditional flow matching on the rectified-flow
    path (Esser et al. 2024, "SD3", §2, the loss L_CFM with the "RF" path of §3.1, unweighted;
    Lipman et al. 2023, Eq. 9 and 23 with σ_min = 0 and t → 1 − σ; Liu et al. 2023, Eq. 1).

    Formula: L = (1/B) Σ_i mse(v̂(x_{σ_i}, σ_i), u_i),  x0 = 2·x01 − 1,
             x_{σ_i} = flow_interpolation(x0_i, σ_i, ε_i) = (1 − σ_i)·x0_i + σ_i·ε_i,
             u_i = flow_velocity_target(x0_i, ε_i) = ε_i − x0_i,  σ_i ∈ [0, 1].
    The σ_i are the caller's draws from a training density (SD3 §3.1: uniform_sigma, or
    logit_normal_sigma with m = 0, s = 1, SD3's best "lognorm(0.00, 1.00)" of Table 1); no
    weighting (SD3 writes the densities as weights of one loss, here they are the sampling).
    The network is fed σ itself as its time input (spec.flow's convention, in [0, 1] like t/T).
    Shapes: x01 (B,C,H,W) in [0, 1], sigma B scalars, eps (B,C,H,W) -> scalar.
    """
    check(holds(len(sigma) == x01.shape[0],
                f"sigma must hold one value per sample ({x01.shape[0]}), got {len(sigma)}"),
          same_shape("eps", eps, "x01", x01.shape))
    x0 = to_diffusion_range(x01)
    losses = [mse(model.velocity(flow_interpolation(x0[i], sigma[i], eps[i]), sigma[i]),
                  flow_velocity_target(x0[i], eps[i])) for i in range(x0.shape[0])]
    return np.mean(np.array(losses))


def adam_step(
    params: Params,
    grads: Params,
    state: AdamState,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> tuple[Params, AdamState]:
    """One Adam update (Kingma & Ba 2015, Algorithm 1, with its bias corrections).

    Formula, per parameter θ with gradient g, step k = state["step"] + 1:
      m ← β1·m + (1 − β1)·g;   v ← β2·v + (1 − β2)·g²;
      m̂ = m / (1 − β1^k);      v̂ = v / (1 − β2^k);
      θ ← θ − lr · m̂ / (√v̂ + ε).
    PyTorch's torch.optim.Adam computes the same quantity as lr/(1 − β1^k) · m / (√v/√(1 − β2^k)
    + ε) (ε added after the bias correction of v, as in Algorithm 1; not the "ε̂" variant of the
    paper's §2, which adds ε to √v before the correction); the two differ only by rounding.
    Shapes: params, grads, state["m"], state["v"] dicts of equally shaped arrays -> (params, state).
    """
    k = int(state["step"]) + 1
    new_params, m_new, v_new = {}, {}, {}
    for name, theta in params.items():
        g = grads[name]
        m = beta1 * state["m"][name] + (1 - beta1) * g
        v = beta2 * state["v"][name] + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**k)
        v_hat = v / (1 - beta2**k)
        new_params[name] = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
        m_new[name], v_new[name] = m, v
    return new_params, {"step": k, "m": m_new, "v": v_new}


def ema_update(ema: Params, params: Params, decay: float) -> Params:
    """Exponential moving average of the weights, after each optimizer step (DDPM §B).

    Formula: ema ← ema + (1 − decay)·(θ − ema)  ( = decay·ema + (1 − decay)·θ ).
    Shapes: ema, params dicts of equally shaped arrays -> dict.
    """
    return {name: ema[name] + (1 - decay) * (params[name] - ema[name]) for name in ema}


def ema_decay_at(decay: float, n: Index, warmup: bool) -> float:
    """The EMA decay of the n-th update taken (n = 1, 2, …; a skipped non-finite step is not
    one), fixed or warmed up.

    Formula: d_n = min(d, (1 + n)/(10 + n)) with the warm-up, d_n = d without.
    The warm-up is the decay of TensorFlow's tf.train.ExponentialMovingAverage given
    num_updates, min(decay, (1 + num_updates)/(10 + num_updates)); the spec's choice is
    num_updates = n, the count of updates including this one (Adam's step count after its
    step), so d_1 = 2/11 and d_n reaches d = 0.99 at n = 890, d = 0.999 at n = 8,990.
    Why: the EMA starts at the initial random weights θ_0, and after N updates of a fixed decay
    θ_0 keeps the share d^N of the average (0.999^1500 ≈ 0.22); with the warm-up the early
    updates nearly replace the average (the first one weighs 1 − d_1 = 9/11), and θ_0 keeps
    Π_{k=1..N} d_k ≤ 10!·(N + 1)!/(N + 10)! (9e-23 at N = 1500).
    Shapes: scalars -> scalar.
    """
    check(holds(n >= 1, f"n counts the updates taken, from 1; got {n}"))
    return min(decay, (1 + n) / (10 + n)) if warmup else decay


def train_step(
    sched: VPSchedule,
    net: Callable[[Params], AnyModel],
    params: Params,
    grads: Params,
    state: AdamState,
    ema: Params | None,
    x01: Float[np.ndarray, "b c h w"],
    t: Sequence[Index],
    eps: Float[np.ndarray, "b c h w"],
    lr: float,
    ema_decay: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    adam_eps: float = 1e-8,
    min_snr_gamma: Scalar | None = None,
    ema_warmup: bool = False,
) -> tuple[Scalar, Params, AdamState, Params | None, bool]:
    """One iteration of DDPM Algorithm 1: loss, guarded Adam step, EMA update.

    Formula: L = train_loss(sched, net(params), x01, t, ε, min_snr_gamma=γ) (net(params) an
    ε-, x_0- or v-model);  `grads` must be ∂L/∂θ at `params`
    (the derivative of the spec loss; see the module docstring). If L and every gradient are
    finite: (θ, state) ← adam_step(θ, grads, state, lr, β1, β2, adam_eps) and, when `ema` is
    given, ema ← ema_update(ema, θ, d_n) (with the updated θ), d_n = ema_decay_at(ema_decay, n,
    ema_warmup) at n = the updated state["step"] (the updates taken, this one included).
    Otherwise θ, state and ema are returned unchanged and `finite` is False.
    Shapes: x01, eps (B,C,H,W), t B ints; params, grads, ema dicts -> (L, θ, state, ema, finite).
    """
    loss = train_loss(sched, net(params), x01, t, eps, min_snr_gamma=min_snr_gamma)
    finite = bool(np.isfinite(loss)) and all(bool(np.isfinite(g).all()) for g in grads.values())
    if not finite:
        return loss, params, state, ema, False
    params, state = adam_step(params, grads, state, lr, beta1, beta2, adam_eps)
    if ema is not None:
        ema = ema_update(ema, params, ema_decay_at(ema_decay, state["step"], ema_warmup))
    return loss, params, state, ema, True
