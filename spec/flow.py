"""Flow matching with the straight (rectified-flow) path: the interpolation between data and
noise, its velocity, SD3's time shift and training-time σ densities, the sampling grid, Euler and
Heun on dx/dσ = v, and the exact map to and from a VP state (Lipman, Chen, Ben-Hamu, Nickel &
Le 2023, "Flow Matching for Generative Modeling"; Liu, Gong & Liu 2023, "Flow Straight and Fast";
Esser et al. 2024, "Scaling Rectified Flow Transformers for High-Resolution Image Synthesis",
"SD3").

Notation (one symbol per quantity, see spec/__init__.py). σ ∈ [0, 1] is the flow's noise level,
with the data at σ = 0 and pure noise at σ = 1: it is SD3's t and diffusers' `sigmas`; Lipman et
al. and Liu et al. run their time the other way (data at t = 1), so σ = 1 − t there. It is not
EDM's σ: the EDM noise level of the same state is σ/(1 − σ) (below).

    x_σ = (1 − σ)·x_0 + σ·ε                  (SD3 §3.1, "RF": a_t = 1 − t, b_t = t; Lipman
                                              Eq. 20–23, the OT path, with σ_min = 0 and t → 1 − σ;
                                              Liu Eq. 1)
    dx_σ/dσ = ε − x_0                         the velocity target of a pair (x_0, ε)
    v̂(x, σ) ≈ E[ε − x_0 | x_σ = x]            the network, trained on ‖v̂ − (ε − x_0)‖² (SD3 §2,
                                              conditional flow matching)

x_σ = (1 − σ)·x̂_0 + σ·ε̂ and v̂ = ε̂ − x̂_0 are two linear equations for (x̂_0, ε̂):

    x̂_0 = x_σ − σ·v̂,    ε̂ = x_σ + (1 − σ)·v̂.

Sampling solves dx/dσ = v̂(x, σ) from σ = 1 (x = ε ~ N(0, I)) to σ = 0 on a decreasing grid of
σ's. The velocity model is a `VelocityModel`: `model.velocity(x, σ)`, fed σ itself as its time
(on [0, 1], like every time input of this project; SD3's transformer is fed 1000·σ, which a
wrapper multiplies in). The samplers' first argument is the process, a `RectifiedFlow()`: it
holds nothing (the path above has no parameter), it names the process in the project-wide
signature `name_sample(sched, model, x_T, grid, noise=None)`.

The exact map to the VP process. A VP state x_t = √ᾱ·x_0 + √(1 − ᾱ)·ε divided by
c = √ᾱ + √(1 − ᾱ) (≥ 1) is (√ᾱ/c)·x_0 + (√(1 − ᾱ)/c)·ε, a flow state with the same x_0 and ε:

    x_σ = x_t/(√ᾱ + √(1 − ᾱ)),   σ = √(1 − ᾱ)/(√ᾱ + √(1 − ᾱ));
    back: D = (1 − σ)² + σ²,   ᾱ = (1 − σ)²/D,   x_t = x_σ/√D.

Both processes have the same x̂_0 and ε̂ at corresponding states, so a VP model is a velocity
model, v̂ = ε̂ − x̂_0 at x_t = c·x_σ (`velocity_from_vp`), and the flow's Euler step from σ to σ'
is exactly DDIM's η = 0 step between the corresponding times (both give (1 − σ')·x̂_0 + σ'·ε̂;
tests/test_flow.py). EDM's noise level of the state is √((1 − ᾱ)/ᾱ) = σ/(1 − σ).

The time shift (SD3 §5.3.2, Eq. 23) moves a grid or a training density towards noise:
σ' = s·σ/(1 + (s − 1)·σ), with s = √(m/n) when an image of m values is sampled with a schedule
tuned for n values ("resolution-dependent shifting"). Flux's `time_shift` (exponential, with
μ linear in the token count) is the same map with s = e^μ; it is not reproduced here.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from jaxtyping import Float

from spec.core import (
    Index,
    Scalar,
    check,
    decreasing_grid,
    deterministic,
    holds,
    in_range,
    same_shape,
    sqrt_nonneg,
)
from spec.prediction import AnyModel, denoise
from spec.schedule import VPSchedule

__all__ = [
    "RectifiedFlow",
    "VelocityModel",
    "flow_interpolation",
    "flow_velocity_target",
    "x0_from_velocity",
    "eps_from_velocity",
    "time_shift",
    "resolution_shift",
    "uniform_sigma",
    "logit_normal_sigma",
    "logit_normal_density",
    "flow_sigmas",
    "flow_euler_step",
    "flow_heun_step",
    "flow_euler_sample",
    "flow_heun_sample",
    "vp_to_flow",
    "flow_to_vp",
    "velocity_from_vp",
]

Array = Float[np.ndarray, "*shape"]


@dataclass(frozen=True)
class RectifiedFlow:
    """The process x_σ = (1 − σ)·x_0 + σ·ε, σ ∈ [0, 1] (SD3 §3.1, "RF").

    Formula: no parameters; the flow samplers take it as their `sched` argument (the
    project-wide signature `name_sample(sched, model, x_T, grid, noise=None)`).
    Shapes: none.
    """


@runtime_checkable
class VelocityModel(Protocol):
    """A velocity network v̂(x, σ) ≈ E[ε − x_0 | x_σ = x] (SD3 §2).

    `velocity(x, sigma)` returns an array of x's shape for x = x_σ, σ ∈ [0, 1] (fed as is).
    Shapes: x (*shape), sigma scalar -> (*shape).
    """

    def velocity(self, x: Float[np.ndarray, "*shape"], sigma: Scalar) -> Float[np.ndarray, "*shape"]:
        """v̂ at (x, σ). Shapes: (*shape) -> (*shape)."""
        ...


def _in_unit(name: str, value: Scalar | np.ndarray) -> Callable[[], None]:
    """Entry-check rule: every value of `name` lies in [0, 1]."""
    return holds(lambda: bool(np.all((np.asarray(value) >= 0) & (np.asarray(value) <= 1))),
                 f"{name} must lie in [0, 1], got {name} = {value!r}")


def flow_interpolation(x0: Array, sigma: Scalar, eps: Float[np.ndarray, "..."]) -> Array:
    """The rectified-flow state x_σ (SD3 §3.1; Lipman et al. Eq. 22 with σ_min = 0; Liu Eq. 1).

    Formula: x_σ = (1 − σ)·x0 + σ·ε, σ ∈ [0, 1].
    Shapes: x0 (*shape), eps (*shape), sigma scalar -> (*shape).
    """
    check(_in_unit("sigma", sigma), same_shape("eps", eps, "x0", x0.shape))
    return (1 - sigma) * x0 + sigma * eps


def flow_velocity_target(x0: Array, eps: Float[np.ndarray, "..."]) -> Array:
    """The velocity dx_σ/dσ of the pair (x0, ε), the network's training target (SD3 §2–3.1;
    Lipman et al. Eq. 23, the OT conditional field, with t → 1 − σ).

    Formula: u = ε − x0 (SD3's flow-matching target; not Salimans & Ho's v of `v_target`).
    Shapes: x0 (*shape), eps (*shape) -> (*shape).
    """
    check(same_shape("eps", eps, "x0", x0.shape))
    return eps - x0


def x0_from_velocity(x_sigma: Array, sigma: Scalar, v: Float[np.ndarray, "..."]) -> Array:
    """x̂_0 from a velocity prediction at σ (x_σ = (1 − σ)·x̂_0 + σ·ε̂ and v̂ = ε̂ − x̂_0 solved).

    Formula: x̂_0 = x_σ − σ·v̂, σ ∈ [0, 1].
    Shapes: x_sigma (*shape), v (*shape), sigma scalar -> (*shape).
    """
    check(_in_unit("sigma", sigma), same_shape("v", v, "x_sigma", x_sigma.shape))
    return x_sigma - sigma * v


def eps_from_velocity(x_sigma: Array, sigma: Scalar, v: Float[np.ndarray, "..."]) -> Array:
    """ε̂ from a velocity prediction at σ (the same two equations as `x0_from_velocity`).

    Formula: ε̂ = x_σ + (1 − σ)·v̂, σ ∈ [0, 1].
    Shapes: x_sigma (*shape), v (*shape), sigma scalar -> (*shape).
    """
    check(_in_unit("sigma", sigma), same_shape("v", v, "x_sigma", x_sigma.shape))
    return x_sigma + (1 - sigma) * v


def time_shift(
    sigma: Float[np.ndarray, "*shape"] | Scalar, shift: Scalar
) -> Float[np.ndarray, "*shape"] | Scalar:
    """SD3's timestep shift (Esser et al. 2024, §5.3.2, Eq. 23: t_m = √(m/n)·t_n/(1 +
    (√(m/n) − 1)·t_n), with √(m/n) written s).

    Formula: σ' = s·σ/(1 + (s − 1)·σ), σ ∈ [0, 1], s > 0. s = 1 is the identity; σ = 0 and
    σ = 1 are fixed; σ' is increasing in σ (dσ'/dσ = s/(1 + (s − 1)σ)²) and, for s > 1, above σ
    (towards noise). The denominator is ≥ min(1, s) > 0.
    Shapes: sigma (*shape) or scalar -> same.
    """
    check(_in_unit("sigma", sigma), holds(shift > 0, f"shift must be > 0, got shift = {shift!r}"))
    return shift * sigma / (1 + (shift - 1) * sigma)


def resolution_shift(m: Scalar, n: Scalar) -> Scalar:
    """The resolution-dependent shift s of SD3 §5.3.2 (the factor √(m/n) of Eq. 23).

    Formula: s = √(m/n), m > 0 the number of values per image to be sampled and n > 0 the number
    the σ schedule was tuned at (SD3 counts pixels, e.g. n = 256², m = 1024²; any count in fixed
    proportion to the pixels, such as latent elements or patch tokens, gives the same ratio).
    Shapes: scalars -> scalar.
    """
    check(holds(m > 0 and n > 0, f"m and n must be > 0, got m = {m!r}, n = {n!r}"))
    return float(np.sqrt(m / n))


def uniform_sigma(u: Float[np.ndarray, "*shape"] | Scalar) -> Float[np.ndarray, "*shape"] | Scalar:
    """A training σ drawn uniformly (SD3 §3.1, the rectified-flow default t ~ U(0, 1)).

    Formula: σ = u for a draw u ~ U[0, 1] given by the caller (the identity, written out so that
    every training density of SD3 §3.1 is a function of injected randomness).
    Shapes: u (*shape) or scalar -> same.
    """
    check(_in_unit("u", u))
    return u


def logit_normal_sigma(
    z: Float[np.ndarray, "*shape"] | Scalar, m: Scalar = 0.0, s: Scalar = 1.0
) -> Float[np.ndarray, "*shape"] | Scalar:
    """A training σ from SD3's logit-normal density (Esser et al. 2024, §3.1, Eq. 19).

    Formula: σ = 1/(1 + exp(−(m + s·z))) (the logistic function of u = m + s·z ~ N(m, s²)) for
    a standard normal draw z given by the caller; s > 0. Its density is
    `logit_normal_density(σ, m, s)`; σ's median is 1/(1 + e^{−m}). σ ∈ [0, 1] (the ends only by
    overflow, for |m + s·z| > 709).
    Shapes: z (*shape) or scalar -> same.
    """
    check(holds(s > 0, f"s must be > 0, got s = {s!r}"))
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-(m + s * np.asarray(z))))


def logit_normal_density(
    sigma: Float[np.ndarray, "*shape"] | Scalar, m: Scalar = 0.0, s: Scalar = 1.0
) -> Float[np.ndarray, "*shape"] | Scalar:
    """SD3's logit-normal density π_ln(σ; m, s) (Esser et al. 2024, §3.1, Eq. 19).

    Formula: π_ln(σ) = 1/(s·√(2π)) · 1/(σ·(1 − σ)) · exp(−(logit σ − m)²/(2s²)), σ ∈ (0, 1),
    logit σ = log(σ/(1 − σ)); s > 0.
    Shapes: sigma (*shape) or scalar -> same.
    """
    check(holds(lambda: bool(np.all((np.asarray(sigma) > 0) & (np.asarray(sigma) < 1))),
                f"sigma must lie in (0, 1), got sigma = {sigma!r}"),
          holds(s > 0, f"s must be > 0, got s = {s!r}"))
    logit = np.log(sigma) - np.log1p(-np.asarray(sigma))
    return np.exp(-((logit - m) ** 2) / (2 * s**2)) / (s * np.sqrt(2 * np.pi) * sigma * (1 - sigma))


def flow_sigmas(
    n: Index, shift: Scalar = 1.0, shift_terminal: Scalar | None = None
) -> Float[np.ndarray, " n_plus_1"]:
    """The sampling grid 1 = σ_0 > σ_1 > … > σ_n = 0 of n steps, shifted (SD3 §5.3.2, Eq. 23)
    and optionally stretched to a terminal value.

    Formula: (1) σ_i = 1 − i/n, i = 0..n (uniform in σ: every step has length 1/n);
    (2) σ_i ← time_shift(σ_i, shift) (σ_0 = 1 and σ_n = 0 stay);
    (3) if shift_terminal = σ_term is given and n ≥ 2, every nonzero σ is stretched so that
    the last one, σ_{n−1}, becomes σ_term and σ_0 stays 1: 1 − σ_i ← (1 − σ_i)·(1 − σ_term)/
    (1 − σ_{n−1}), i = 0..n−1 (diffusers' `stretch_shift_to_terminal`); σ_n = 0 is kept.
    Choices where the papers are silent: the grid ends with σ_n = 0 exactly, one of its n + 1
    points, not appended after a grid that ends at a small σ_min (SD3's reference code and
    diffusers put n points between 1 and σ_min = 1/1000 and append 0, so their last step is
    σ_min → 0 and the others have length (1 − σ_min)/(n − 1)); the shift is applied once to
    each point, so the grid depends on (n, shift, σ_term) alone and rebuilding it gives the same
    grid (at n = T its nonzero σ's are time_shift(t/T, shift), t = T..1). With n = 1 the grid is
    [1, 0] whatever σ_term: the stretch, like the shift, keeps σ = 1 and σ = 0 and moves the
    points strictly between them, of which a one-step grid has none (1 − σ_{n−1} = 0, so the
    formula of (3) would be 0/0); refusing instead would make a configuration valid for n ≥ 2
    fail at n = 1. Needs n ≥ 1, shift > 0, shift_terminal ∈ (0, 1) or None.
    Shapes: -> (n + 1,), float64.
    """
    n = check(
        in_range("n", n, 1, 2**62),
        holds(shift > 0, f"shift must be > 0, got shift = {shift!r}"),
        holds(shift_terminal is None or 0 < shift_terminal < 1,
              f"shift_terminal must lie in (0, 1), got shift_terminal = {shift_terminal!r}"),
    )
    # 1. uniform in σ from 1 to 0
    sigmas = 1 - np.arange(n + 1, dtype=np.float64) / n
    # 2. SD3's shift (Eq. 23)
    sigmas = time_shift(sigmas, shift)
    # 3. stretch 1 − σ so that the last nonzero σ is σ_term; σ_0 = 1 and σ_n = 0 stay
    if shift_terminal is not None and n >= 2:
        scale = (1 - shift_terminal) / (1 - sigmas[n - 1])
        sigmas[:n] = 1 - (1 - sigmas[:n]) * scale
    return sigmas


def _check_sigma_step(sigma: Scalar, sigma_next: Scalar) -> None:
    check(holds(0 <= sigma_next < sigma <= 1, "need 0 <= sigma_next < sigma <= 1, got "
                f"sigma = {sigma!r}, sigma_next = {sigma_next!r}"))


def flow_euler_step(
    flow: RectifiedFlow, model: VelocityModel, x: Array, sigma: Scalar, sigma_next: Scalar
) -> Array:
    """One Euler step σ → σ_next of dx/dσ = v̂(x, σ) (Euler's method on SD3 §2's ODE).

    Formula: x' = x + (σ_next − σ)·v̂(x, σ), 0 ≤ σ_next < σ ≤ 1. One model evaluation. With a
    VP model (`velocity_from_vp`) this is DDIM's η = 0 step between the corresponding times.
    Shapes: x (*shape), sigma and sigma_next scalars -> (*shape).
    """
    _check_sigma_step(sigma, sigma_next)
    return x + (sigma_next - sigma) * model.velocity(x, sigma)


def flow_heun_step(
    flow: RectifiedFlow, model: VelocityModel, x: Array, sigma: Scalar, sigma_next: Scalar
) -> Array:
    """One Heun step σ → σ_next of dx/dσ = v̂(x, σ) (the trapezoidal rule of Karras et al. 2022,
    Algorithm 1, lines 5–8, applied to the flow ODE).

    Formula: d = v̂(x, σ); x_e = x + (σ_next − σ)·d; d' = v̂(x_e, σ_next);
    x' = x + (σ_next − σ)·(½d + ½d'), 0 ≤ σ_next < σ ≤ 1. Two model evaluations, also when
    σ_next = 0: unlike EDM's slope (x̃ − D)/σ, the velocity is defined at σ = 0, so the spec
    corrects every step (2N evaluations for N steps).
    Shapes: x (*shape), sigma and sigma_next scalars -> (*shape).
    """
    _check_sigma_step(sigma, sigma_next)
    # 1. Euler predictor
    d = model.velocity(x, sigma)
    x_euler = x + (sigma_next - sigma) * d
    # 2. trapezoidal corrector with the velocity at (x_e, σ_next)
    d_next = model.velocity(x_euler, sigma_next)
    return x + (sigma_next - sigma) * (0.5 * d + 0.5 * d_next)


def flow_euler_sample(
    flow: RectifiedFlow,
    model: VelocityModel,
    x_T: Array,
    grid: Sequence[Scalar] | Float[np.ndarray, " n_plus_1"],
    noise: Float[np.ndarray, "..."] | None = None,
) -> Array:
    """Euler sampling of the flow ODE over σ_0 > σ_1 > … > σ_N ≥ 0 (SD3 §2; e.g. `flow_sigmas`).

    Formula: x ← x_T (the state at σ_0; at σ_0 = 1 that is ε ~ N(0, I)); for i = 0..N−1:
    x ← flow_euler_step(x, σ_i → σ_{i+1}). N model evaluations. Deterministic: noise is None.
    Shapes: x_T (*shape) -> (*shape).
    """
    values = check(decreasing_grid("grid", grid, 0, 1), deterministic(noise))
    x = x_T
    for i in range(len(values) - 1):
        x = flow_euler_step(flow, model, x, values[i], values[i + 1])
    return x


def flow_heun_sample(
    flow: RectifiedFlow,
    model: VelocityModel,
    x_T: Array,
    grid: Sequence[Scalar] | Float[np.ndarray, " n_plus_1"],
    noise: Float[np.ndarray, "..."] | None = None,
) -> Array:
    """Heun sampling of the flow ODE over σ_0 > σ_1 > … > σ_N ≥ 0 (Karras et al. 2022,
    Algorithm 1, on dx/dσ = v̂).

    Formula: x ← x_T; for i = 0..N−1: x ← flow_heun_step(x, σ_i → σ_{i+1}). 2N model
    evaluations (every step corrected, see `flow_heun_step`). Deterministic: noise is None.
    Shapes: x_T (*shape) -> (*shape).
    """
    values = check(decreasing_grid("grid", grid, 0, 1), deterministic(noise))
    x = x_T
    for i in range(len(values) - 1):
        x = flow_heun_step(flow, model, x, values[i], values[i + 1])
    return x


def vp_to_flow(alpha_bar: Scalar, x_t: Array) -> tuple[Array, Scalar]:
    """A VP state as the flow state with the same x_0 and ε (see the module docstring).

    Formula: c = sqrt_nonneg(ᾱ) + sqrt_nonneg(1 − ᾱ) (≥ 1); x_σ = x_t/c;
    σ = sqrt_nonneg(1 − ᾱ)/c, ᾱ ∈ [0, 1] (ᾱ = 1 gives σ = 0, ᾱ = 0 gives σ = 1).
    Shapes: x_t (*shape), alpha_bar scalar -> ((*shape), scalar).
    """
    check(_in_unit("alpha_bar", alpha_bar))
    c = sqrt_nonneg(alpha_bar) + sqrt_nonneg(1 - alpha_bar)
    return x_t / c, sqrt_nonneg(1 - alpha_bar) / c


def flow_to_vp(sigma: Scalar, x_sigma: Array) -> tuple[Scalar, Array]:
    """A flow state as the VP state with the same x_0 and ε (the inverse of `vp_to_flow`).

    Formula: D = (1 − σ)² + σ² (≥ ½); ᾱ = (1 − σ)²/D; x_t = x_σ/√D, σ ∈ [0, 1].
    Shapes: x_sigma (*shape), sigma scalar -> (scalar, (*shape)).
    """
    check(_in_unit("sigma", sigma))
    D = (1 - sigma) ** 2 + sigma**2
    return (1 - sigma) ** 2 / D, x_sigma / np.sqrt(D)


def velocity_from_vp(sched: VPSchedule, model: AnyModel, x_sigma: Array, t: Index) -> Array:
    """The velocity of a VP model (ε-, x_0- or v-prediction) at the flow state x_σ that
    corresponds to the table time t (σ = σ_t of `vp_to_flow(ᾱ_t, ·)`).

    Formula: c = sqrt_nonneg(ᾱ_t) + sqrt_nonneg(1 − ᾱ_t); x_t = c·x_σ;
    (x̂_0, ε̂) = denoise(sched, model, x_t, t) (spec.prediction, the one conversion point);
    v̂ = ε̂ − x̂_0, t ∈ {0..T}.
    Shapes: x_sigma (*shape) -> (*shape).
    """
    t = check(in_range("t", t, 0, sched.T))
    ab = sched.alpha_bar[t]
    x0_hat, eps_hat = denoise(sched, model, (sqrt_nonneg(ab) + sqrt_nonneg(1 - ab)) * x_sigma, t)
    return eps_hat - x0_hat
