"""Your own step function as a target, in the spec's conventions (README, "Checking other
implementations").

    from conformance.external import StepTarget, check
    report = check(StepTarget("mine", "ddim", make_step))

`KINDS` is the table of what a step function can claim to compute: for each kind, the method
its claim names and the configuration families drawn for it. A new kind is one entry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

from conformance.external.methods import (
    DDIM,
    DDPM,
    DPMSolverPP,
    DPMSolverPP2S,
    DPMSolverPP3M,
    EDMEuler,
    EDMEulerAncestral,
    EDMHeun,
    FlowEuler,
    FlowHeun,
    FlowUniPC,
    Method,
    UniPC,
)
from conformance.external.targets import (
    FLOAT64,
    FLOW32,
    PREDICTIONS,
    Claim,
    Family,
    Predict,
    Run,
    flow_betas,
)


@dataclass(frozen=True)
class SpecConfig:
    """A configuration in the spec's own conventions, drawn for a `StepTarget`.

    betas (T,) float64; grid t_0 > … > t_{n−1} ≥ 1 with end 0; eta, clip as in `DDIM`/`DDPM`;
    shape of x; seed of x_T, the noise and the ε-model.
    """

    betas: tuple[float, ...]
    grid: tuple[int, ...]
    eta: float
    clip: bool
    shape: tuple[int, ...]
    seed: int
    prediction: str = "epsilon"

    @property
    def T(self) -> int:
        return len(self.betas)

    @property
    def alpha_bars(self) -> np.ndarray:
        """ᾱ_0..ᾱ_T (T + 1 entries, ᾱ_0 = 1), from the spec's own schedule."""
        from spec.schedule import VPSchedule

        return VPSchedule(np.asarray(self.betas, dtype=np.float64)).alpha_bar

    def describe(self) -> str:
        return (
            f"T={self.T} betas=[{self.betas[0]:.6g} … {self.betas[-1]:.6g}] grid={list(self.grid)}"
            f"→0 eta={self.eta:g} clip={self.clip} prediction={self.prediction} "
            f"shape={self.shape} seed={self.seed}"
        )


# ---------------------------------------------------------------------------------------------
# Families in the spec's own conventions


@st.composite
def _spec_configs(draw, grid_kind: str, profile: str, prediction: str,
                  eta: str = "zero", clip: bool | None = False) -> SpecConfig:
    from spec.ddim import ddim_timesteps
    from spec.schedule import cosine_betas, linear_betas

    T = draw(st.integers(2, 40 if profile == "small" else 1000))
    if draw(st.booleans()):
        b0 = draw(st.floats(1e-5, 1e-3))
        b1 = draw(st.floats(max(2 * b0, 1e-3), min(0.3, 20.0 / T)))
        betas = linear_betas(T, b0, b1)
    else:
        betas = cosine_betas(T)
    if grid_kind == "every":
        grid = tuple(range(T, 0, -1))
    elif grid_kind == "strided":
        n = draw(st.integers(1, T))
        grid = tuple(int(t) for t in ddim_timesteps(T, n)[:-1])
    else:  # any strictly decreasing grid that starts at T
        rest = draw(st.sets(st.integers(1, T - 1), max_size=min(T - 1, 12)))
        grid = (T, *sorted(rest, reverse=True))
    eta_v = 0.0 if eta == "zero" else draw(st.floats(0.1, 1.0))
    clip_v = draw(st.booleans()) if clip is None else clip
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 4)),
             draw(st.integers(1, 4)))
    return SpecConfig(tuple(float(b) for b in betas), grid, eta_v, clip_v, shape,
                      draw(st.integers(0, 2**16)), prediction)


def _ddim_families(profile: str, prediction: str) -> list[Family]:
    c = _spec_configs
    return [
        Family("strided grid (ddim_timesteps), η = 0", c("strided", profile, prediction), FLOAT64),
        Family("any decreasing grid, η = 0", c("any", profile, prediction), FLOAT64),
        Family("any grid, η ∈ [0.1, 1]", c("any", profile, prediction, "pos"), FLOAT64),
        Family("any grid, clipped x̂_0", c("any", profile, prediction, "zero", True), FLOAT64),
    ]


def _ddpm_families(profile: str, prediction: str) -> list[Family]:
    c = _spec_configs
    return [
        Family("every step", c("every", profile, prediction), FLOAT64),
        Family("strided grid", c("any", profile, prediction), FLOAT64),
        Family("every step, clipped x̂_0", c("every", profile, prediction, "zero", True), FLOAT64),
    ]


def _ode_families(profile: str, prediction: str) -> list[Family]:
    c = _spec_configs  # ODE solvers: no η, no clipping (Karras Algorithm 1, Lu et al. have neither)
    return [
        Family("strided grid (ddim_timesteps)", c("strided", profile, prediction), FLOAT64),
        Family("any decreasing grid", c("any", profile, prediction), FLOAT64),
    ]


@st.composite
def _flow_configs(draw, profile: str, prediction: str) -> SpecConfig:
    """A flow configuration: the σ's of spec.flow.flow_sigmas(n, shift) without its final 0, as
    the claim's table (`targets.flow_betas`: table time t = n − i is σ_i; σ_t of a step function
    is spec.flow.vp_to_flow(cfg.alpha_bars[t])[1]); model(x, t) returns the velocity v̂(x, σ_t)."""
    from spec.flow import flow_sigmas

    n = draw(st.integers(1, 40 if profile == "small" else 200))
    sigmas = flow_sigmas(n, draw(st.floats(1.0, 6.0)))[:-1]
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 4)),
             draw(st.integers(1, 4)))
    return SpecConfig(tuple(float(b) for b in flow_betas(sigmas)), tuple(range(n, 0, -1)), 0.0,
                      False, shape, draw(st.integers(0, 2**16)), prediction)


def _flow_families(profile: str, prediction: str) -> list[Family]:
    return [Family("flow_sigmas(n, shift), shift ∈ [1, 6]", _flow_configs(profile, prediction),
                   FLOW32)]


@dataclass(frozen=True)
class Kind:
    """What a step function of one kind claims: its method (from the drawn config) and the
    configuration families drawn for it (from the profile and the prediction)."""

    method: Callable[[SpecConfig], Method]
    families: Callable[[str, str], list[Family]]
    description: str


KINDS: dict[str, Kind] = {
    "ddim": Kind(lambda cfg: DDIM(eta=cfg.eta, clip=cfg.clip), _ddim_families,
                 "DDIM Eq. 12 with cfg.eta and cfg.clip"),
    "ddpm": Kind(lambda cfg: DDPM(variance="fixed_small", clip=cfg.clip), _ddpm_families,
                 "DDPM Algorithm 2, σ² = β̃_t, cfg.clip"),
    "euler": Kind(lambda cfg: EDMEuler(), _ode_families,
                  "EDM Euler (Karras Algorithm 1 without its correction) on σ_t = "
                  "√((1−ᾱ_t)/ᾱ_t) and σ = 0 at the end; VP states in and out"),
    "heun": Kind(lambda cfg: EDMHeun(), _ode_families,
                 "EDM Heun (Karras Algorithm 1) on σ_t = √((1−ᾱ_t)/ᾱ_t) and σ = 0 at the end; "
                 "VP states in and out, the model called at t and at t_prev"),
    "dpmsolver++2m": Kind(lambda cfg: DPMSolverPP(), _ode_families,
                          "DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2): first order on the "
                          "first step and into t = 0; the step function keeps the previous "
                          "x̂_0 itself (make_step is called once per run)"),
    "dpmsolver++3m": Kind(lambda cfg: DPMSolverPP3M(), _ode_families,
                          "DPM-Solver++(3M) (spec.dpm_solver_pp_3m_sample): step i of n of order "
                          "min(3, i + 1, n − i), first order into t = 0; the step function keeps "
                          "the last two x̂_0 itself (make_step is called once per run)"),
    "dpmsolver++2s": Kind(lambda cfg: DPMSolverPP2S(), _ode_families,
                          "DPM-Solver++(2S) (Lu et al. 2022b, Algorithm 1), the grid in pairs: the "
                          "first step of a pair the first-order step to the intermediate time, the "
                          "second from the pair's start (the step function keeps it itself)"),
    "unipc": Kind(lambda cfg: UniPC(), _ode_families,
                  "UniPC-2, bh2, corrector on (Zhao et al. 2023; spec.unipc_sample's schedule of "
                  "orders): the state after a step is the predictor's output"),
    "euler_ancestral": Kind(lambda cfg: EDMEulerAncestral(), _ode_families,
                            "EDM ancestral Euler (η = 1) on σ_t = √((1−ᾱ_t)/ᾱ_t), σ = 0 at the "
                            "end; VP states in and out, the noise z added as σ_up·z in EDM scale"),
    "flow_euler": Kind(lambda cfg: FlowEuler(), _flow_families,
                       "flow Euler x' = x + (σ_next − σ)·v̂ on the σ's of cfg's table; flow "
                       "states in and out, model(x, t) the velocity at σ_t"),
    "flow_unipc": Kind(lambda cfg: FlowUniPC(), _flow_families,
                       "UniPC-2, bh2, corrector on, on the σ's of cfg's table through spec.flow's "
                       "exact VP ↔ flow map; flow states in and out, model(x, t) the velocity at σ_t"),
    "flow_heun": Kind(lambda cfg: FlowHeun(euler_last=True), _flow_families,
                      "flow Heun (Karras Algorithm 1 on dx/dσ = v̂), Euler into σ = 0; the model "
                      "called at t and at t_prev"),
}
"""The kinds of step function a `StepTarget` can claim, by name."""


def spec_families(kind: str, profile: str = "small", prediction: str = "epsilon") -> list[Family]:
    """Configuration families for a `StepTarget` of `kind` (a name of `KINDS`)."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    return KINDS[kind].families(profile, prediction)


# ---------------------------------------------------------------------------------------------
# The target


StepFn = Callable[[Callable[[np.ndarray, Any], np.ndarray], np.ndarray, Any, Any, np.ndarray],
                  np.ndarray]
"""step(model, x, t, t_prev, z) -> x_prev; model(x, t) -> prediction; times in the target's labels."""


@dataclass
class StepTarget:
    """Your own step function as a target.

    make_step(cfg: SpecConfig) returns step(model, x, t, t_prev, z) -> x_prev. The harness runs
    it over cfg.grid (then to 0) with model(x, t) giving the prediction of cfg.prediction.
    kind: a name of `KINDS`: "ddim" (checked against DDIM Eq. 12 with cfg.eta and cfg.clip),
      "ddpm" (Algorithm 2, σ² = β̃, cfg.clip), "euler" / "heun" (EDM Euler / Heun, Karras
      Algorithm 1, on σ_t = √((1−ᾱ_t)/ᾱ_t) and σ = 0 at the end: your step takes and returns
      VP states x_t → x_{t_prev}; Heun may call the model twice, at t and at t_prev) or
      "dpmsolver++2m" (a multistep method: make_step(cfg) is called once per run, so the
      step function keeps its previous x̂_0 in its closure); η = 0 and no clipping are drawn
      for the last three.
    label / unlabel: how your code names a spec time t and back (default: the spec's t itself);
      `label=lambda t: t - 1, unlabel=lambda s: s + 1` is diffusers' τ.
    custom_families: the configuration families to draw (default: `spec_families(kind)`).
    """

    name: str
    kind: str
    make_step: Callable[[SpecConfig], StepFn]
    label: Callable[[int], Any] = field(default=lambda t: t)
    unlabel: Callable[[Any], int] = field(default=lambda s: s)
    prediction: str = "epsilon"
    custom_families: Sequence[Family] | None = None

    def families(self, profile: str) -> Sequence[Family]:
        if self.custom_families is not None:
            return self.custom_families
        return spec_families(self.kind, profile, self.prediction)

    config_type = SpecConfig

    def code(self, config: SpecConfig) -> str:
        from conformance.external.check import config_json

        return f"{self.name}: {config.describe()}\n  case: '{config_json(config)}'"

    def prepare(self, config: SpecConfig) -> Run:
        path = (*config.grid, 0)
        claim = Claim(
            betas=np.asarray(config.betas, dtype=np.float64),
            grid=tuple(config.grid),
            end=0,
            method=KINDS[self.kind].method(config),
            prediction=config.prediction,
            labels=tuple(f"{self.label(t)!r}" for t in path),
        )
        step = self.make_step(config)

        def sample(x_T: np.ndarray, predict: Predict, noise: np.ndarray) -> list[np.ndarray]:
            def model(x: np.ndarray, label: Any) -> np.ndarray:
                return predict(x, self.unlabel(label))

            states = [x_T]
            for i in range(len(path) - 1):
                t, t_prev = self.label(path[i]), self.label(path[i + 1])
                states.append(np.asarray(step(model, states[-1], t, t_prev, noise[i])))
            return states

        return Run(claim=claim, sample=sample, repro=self.code(config))
