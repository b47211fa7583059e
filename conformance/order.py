"""Order of accuracy of the ODE samplers, measured against the exact PF-ODE solution of Gaussian
data (used by tests/test_sampler_order.py on the spec, conformance/test_order.py on the runtime
in float64, and scripts/sampler_order.py for the README's table and plot).

Data x_0 ~ N(μ, s²) per coordinate. Under any VP schedule x_t ~ N(√ᾱ_t·μ, v_t),
v_t = ᾱ_t·s² + 1 − ᾱ_t, the exact ε-predictor is ε*(x, t) = √(1 − ᾱ_t)·(x − √ᾱ_t·μ)/v_t, and the
probability-flow ODE is the monotone transport of N(√ᾱ_t·μ, v_t) onto N(μ, s²), so its solution
from time t to 0 is, in closed form,

    x_0 = μ + s·(x_t − √ᾱ_t·μ)/√v_t.

It depends on ᾱ_t alone, so a sampler that reaches t = 0 (ᾱ = 1) from a state at ᾱ_t can be
scored by max |x̂_0 − x_0| whichever time grid it used.

Set-up (stated once, used everywhere):
* the continuous linear VP schedule of Song et al. (β_0 = 0.1, β_1 = 20); every sampler starts
  from the same 64 values x at t_max = 1 (ᾱ(1) = 4.3e-5: far from 0, so nothing degenerates;
  σ_max = √((1 − ᾱ)/ᾱ) = 152);
* grid kind "continuous" (PF-ODE Euler): N uniform steps in t from 1 to 0;
* grid kind "sigmas" (EDM Euler and Heun): `edm_sigmas(N, σ_min = 1e-3, σ_max, ρ = 7)` (σ_N = 0
  appended; the final step σ_min → 0 is Euler's, with error ~σ_min²/(2s²) ≈ 2e-6·|x_0 − μ|,
  below every error in the fitted range);
* grid kind "times" (DDIM η = 0, DPM-Solver++(2M), (2S), (3M), UniPC): the same N + 1 noise
  levels, as a discrete schedule of T = N steps with ᾱ_k = 1/(1 + σ_{N−k}²) run on its full grid
  N, N−1, …, 0 (the model reads ᾱ at its integer time). DDIM is then exactly EDM's Euler step
  (x̃' = x̃ + (σ' − σ)·ε̂; Karras et al. 2022 §3), which the tests also check;
* grid kind "flow" (flow Euler and Heun, spec.flow): the start mapped exactly to the flow
  (`vp_to_flow`: σ_start = √(1 − ᾱ)/(√ᾱ + √(1 − ᾱ)) = 0.9935), N steps uniform in σ from
  σ_start to 0, with the exact velocity of Gaussian data, v*(x, σ) = (σ − (1 − σ)·s²)·
  (x − (1 − σ)·μ)/V − μ, V = (1 − σ)²·s² + σ² (E[ε − x_0 | x_σ = x]); the flow ODE is the PF
  ODE in other coordinates, so the exact x_0 is the same;
* model evaluations (NFE): each sampler's cost in the sampler table (spec.samplers) at S = N.

What is measured comes from the sampler table: every `Order` of every entry (`CASES`: the
default options' order, and the variants', e.g. UniPC's orders and B(h)), each on the set-up of
its grid kind (`spec_setup`, `runtime_setup`). The order is the negated least-squares slope of
log error against log NFE over N = n_0, 2·n_0, 4·n_0 (n_0 = the entry's `fit_from`, 32 unless
the error is still pre-asymptotic there).

The methods above second order need a lower floor than σ_min = 1e-3 gives (the last step,
σ_min → 0, lands on x̂_0(σ_min), off by ~σ_min²/(2s²)·|x_0 − μ| ≈ 2e-6): they run with
HIGH_ORDER_SIGMA_MIN = 1e-5 (a floor of 2e-10); their errors at N = 32..256 stay far above it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

import spec.samplers

MU, S = 0.3, 0.5
BETA0, BETA1 = 0.1, 20.0
T_MAX = 1.0
SIGMA_MIN = 1e-3
RHO = 7.0
SHAPE = (2, 1, 4, 8)  # 64 coordinates, as a batch of two 1×4×8 images
FIT_STEPS = (32, 64, 128)
FIT_HALVINGS = 3
"""N = fit_from·2^k, k = 0..FIT_HALVINGS − 1: three points, two halvings of the step."""
PLOT_STEPS = (2, 4, 8, 16, 32, 64, 128, 256)
HIGH_ORDER_SIGMA_MIN = 1e-5
ORDER_TOLERANCE = 0.2
"""|fitted slope − claimed order| allowed. Measured slopes are within 0.1 of the order; a
first-order method posing as second order is off by ~1."""


SAMPLERS = tuple(s for s in spec.samplers.SAMPLERS.values() if s.order is not None)
"""The entries of the sampler table with an order of accuracy: each gets its order test."""


@dataclass(frozen=True)
class Case:
    """One order claim of the sampler table: entry `sampler` run with `claim.options` has order
    `claim.order`, fitted on `steps` with the grid floor `sigma_min`."""

    sampler: spec.samplers.Sampler
    claim: spec.samplers.Order

    @property
    def name(self) -> str:
        return self.sampler.name

    @property
    def options(self) -> dict[str, object]:
        return dict(self.claim.options)

    @property
    def order(self) -> int:
        return self.claim.order

    @property
    def id(self) -> str:
        """"unipc[order=1,variant=bh1,corrector=False]"; the name alone for default options."""
        opts = ",".join(f"{k}={v}" for k, v in self.claim.options)
        return f"{self.name}[{opts}]" if opts else self.name

    @property
    def sigma_min(self) -> float:
        return sigma_min_for(self.order)

    @property
    def steps(self) -> tuple[int, ...]:
        return tuple(self.claim.fit_from * 2**k for k in range(FIT_HALVINGS))


def sigma_min_for(order: int) -> float:
    """The last nonzero noise level of the grids of a method of this order (see above)."""
    return SIGMA_MIN if order <= 2 else HIGH_ORDER_SIGMA_MIN


CASES = tuple(Case(s, o) for s in SAMPLERS for o in s.orders)
"""Every order the table states, the default options' first for each entry."""
DEFAULT_CASES = tuple(Case(s, s.orders[0]) for s in SAMPLERS)
"""The default options of each entry with an order."""


def alpha_bar_linear(t: float) -> float:
    return math.exp(-(BETA0 * t + 0.5 * (BETA1 - BETA0) * t**2))


def start() -> tuple[np.ndarray, float]:
    """x at t_max (drawn from its marginal, seed 0) and ᾱ(t_max)."""
    ab = alpha_bar_linear(T_MAX)
    z = np.random.default_rng(0).standard_normal(SHAPE)
    return math.sqrt(ab) * MU + math.sqrt(ab * S**2 + 1 - ab) * z, ab


def exact_x0(x: np.ndarray, ab: float) -> np.ndarray:
    """The PF-ODE's exact solution at t = 0 from x at ᾱ."""
    return MU + S * (x - math.sqrt(ab) * MU) / math.sqrt(ab * S**2 + 1 - ab)


def eps_star(x, ab: float):  # noqa: ANN001, ANN201 - NumPy array or tensor
    return math.sqrt(1 - ab) * (x - math.sqrt(ab) * MU) / (ab * S**2 + 1 - ab)


def velocity_star(x, sigma: float):  # noqa: ANN001, ANN201 - NumPy array or tensor
    """E[ε − x_0 | x_σ = x] for Gaussian data (the flow's exact velocity)."""
    v = (1 - sigma) ** 2 * S**2 + sigma**2
    return (sigma - (1 - sigma) * S**2) * (x - (1 - sigma) * MU) / v - MU


class _SpecVelocity:
    def velocity(self, x: np.ndarray, sigma: float) -> np.ndarray:
        return velocity_star(x, sigma)


def _torch_velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return velocity_star(x, float(sigma))


def discrete_alpha_bars(sigmas: np.ndarray) -> np.ndarray:
    """ᾱ_0..ᾱ_N of the grid's noise levels, ᾱ_k = 1/(1 + σ_{N−k}²) (ᾱ_0 = 1 from σ_N = 0)."""
    return 1.0 / (1.0 + np.asarray(sigmas, dtype=np.float64)[::-1] ** 2)


def discrete_betas(sigmas: np.ndarray) -> np.ndarray:
    abk = discrete_alpha_bars(sigmas)
    return 1.0 - abk[1:] / abk[:-1]


class _SpecOracle:
    def __init__(self, ab_of: Callable[[float], float]) -> None:
        self.ab_of = ab_of

    def eps(self, x: np.ndarray, t_norm: float) -> np.ndarray:
        return eps_star(x, self.ab_of(t_norm))


class _TorchOracle(torch.nn.Module):
    def __init__(self, ab_of: Callable[[float], float]) -> None:
        super().__init__()
        self.ab_of = ab_of

    def forward(self, x: torch.Tensor, t_norm: float) -> torch.Tensor:
        return eps_star(x, self.ab_of(float(t_norm)))


def _table_lookup(alpha_bars: np.ndarray) -> Callable[[float], float]:
    T = len(alpha_bars) - 1
    return lambda t_norm: float(alpha_bars[round(t_norm * T)])


Run = Callable[[int], tuple[int, np.ndarray]]
"""N ↦ (model evaluations, x̂_0 as a float64 array of SHAPE)."""


def spec_setup(kind: str, n: int, sigma_min: float = SIGMA_MIN) -> tuple:
    """(sched, model, x_T, grid) of the set-up above, N = n, for a sampler of grid kind `kind`."""
    import spec

    x, ab = start()
    if kind == "flow":  # the one kind without a VP schedule
        x_flow, sigma_start = spec.vp_to_flow(ab, x)
        return (spec.RectifiedFlow(), _SpecVelocity(), x_flow,
                sigma_start * spec.flow_sigmas(n))
    vp = spec.VPLinearSchedule(BETA0, BETA1)
    x_tilde, sigma_max = spec.vp_to_edm(ab, x)
    sigmas = spec.edm_sigmas(n, sigma_min, sigma_max, RHO)
    setups = {
        "continuous": lambda: (vp, _SpecOracle(vp.alpha_bar), x,
                               spec.pf_ode_uniform_grid(n, T_MAX)),
        "sigmas": lambda: (vp, _SpecOracle(vp.alpha_bar), x_tilde, sigmas),
        "times": lambda: (spec.VPSchedule(discrete_betas(sigmas)),
                          _SpecOracle(_table_lookup(discrete_alpha_bars(sigmas))), x,
                          list(range(n, -1, -1))),
    }
    return setups[kind]()


def runtime_setup(kind: str, n: int, sigma_min: float = SIGMA_MIN, device: str = "cpu") -> tuple:
    """`spec_setup`'s (sched, model, x_T, grid) as runtime objects, in float64."""
    import runtime.edm
    import runtime.flow
    import runtime.pf_ode
    import runtime.schedule

    x_np, ab = start()
    x = torch.tensor(x_np, dtype=torch.float64, device=device)
    if kind == "flow":
        x_flow, sigma_start = runtime.flow.vp_to_flow(ab, x)
        return (runtime.flow.RectifiedFlow(), _torch_velocity, x_flow,
                sigma_start * runtime.flow.flow_sigmas(n))
    vp = runtime.pf_ode.VPLinearSchedule(BETA0, BETA1)
    x_tilde, sigma_max = runtime.edm.vp_to_edm(ab, x)
    sigmas = runtime.edm.edm_sigmas(n, sigma_min, float(sigma_max), RHO)
    setups = {
        "continuous": lambda: (vp, _TorchOracle(alpha_bar_linear), x,
                               runtime.pf_ode.pf_ode_uniform_grid(n, T_MAX)),
        "sigmas": lambda: (vp, _TorchOracle(alpha_bar_linear), x_tilde, sigmas),
        "times": lambda: (runtime.schedule.Schedule(torch.tensor(discrete_betas(sigmas.numpy())),
                                                    torch.float64, device),
                          _TorchOracle(_table_lookup(discrete_alpha_bars(sigmas.numpy()))), x,
                          list(range(n, -1, -1))),
    }
    return setups[kind]()


def spec_runner(name: str, options: dict | None = None, sigma_min: float | None = None) -> Run:
    """The spec sampler `name` (an entry of spec.samplers.SAMPLERS) with keyword `options` on the
    set-up above; the grid floor of its order unless `sigma_min` is given."""
    entry = spec.samplers.SAMPLERS[name]
    floor = sigma_min_for(entry.order) if sigma_min is None else sigma_min

    def run(n: int) -> tuple[int, np.ndarray]:
        return (entry.evaluations(n, n),
                entry.sample(*spec_setup(entry.grid, n, floor), **(options or {})))

    return run


def runtime_runner(name: str, options: dict | None = None, sigma_min: float | None = None,
                   device: str = "cpu") -> Run:
    """The runtime sampler `name` (an entry of runtime.samplers.SAMPLERS), in float64."""
    import runtime.samplers

    entry = runtime.samplers.SAMPLERS[name]
    floor = sigma_min_for(spec.samplers.SAMPLERS[name].order) if sigma_min is None else sigma_min

    def run(n: int) -> tuple[int, np.ndarray]:
        out = entry.sample(*runtime_setup(entry.kind, n, floor, device), **(options or {}))
        return entry.evaluations(n, n), out.detach().cpu().double().numpy()

    return run


def errors(run: Run, steps: tuple[int, ...] = FIT_STEPS) -> list[tuple[int, float]]:
    """(NFE, max |x̂_0 − x_0|) for each N in steps."""
    x, ab = start()
    target = exact_x0(x, ab)
    out = []
    for n in steps:
        nfe, x0 = run(n)
        out.append((nfe, float(np.max(np.abs(x0 - target)))))
    return out


def fitted_order(points: list[tuple[int, float]]) -> float:
    """−(least-squares slope of log error against log NFE)."""
    nfe = np.log([p[0] for p in points])
    err = np.log([p[1] for p in points])
    return float(-np.polyfit(nfe, err, 1)[0])


def has_order(points: list[tuple[int, float]], order: int) -> bool:
    return abs(fitted_order(points) - order) <= ORDER_TOLERANCE
