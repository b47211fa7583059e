"""The configuration families drawn for each diffusers scheduler: hypothesis strategies of
`DiffusersConfig`, each family homogeneous (all its members agree or all deviate)."""

from __future__ import annotations

import functools

import numpy as np
from hypothesis import strategies as st

from conformance.external.diffusers_config import (
    DiffusersConfig,
    build_scheduler,
    dpm_step_orders,
)
from conformance.external.targets import (
    FLOAT32,
    FLOAT64,
    FLOW32,
    PREDICTIONS,
    Family,
    defined_at_zero_snr,
)


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
             final: str | None = "zero", eta_one: bool = False,
             third: bool | None = None, beta_end_min: float = 1e-3,
             schedules: tuple[str, ...] = ("linear", "scaled_linear", "squaredcos_cap_v2"),
             T_max: int | None = None) -> DiffusersConfig:
    T_max = T_max or (40 if profile == "small" else 1000)
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
    elif n_rule == "upto4":  # n ≤ 4, n < T
        n = draw(st.integers(1, min(4, T - 1)))
    elif n_rule == "few":  # 4 ≤ n ≤ 8, n ≤ T/2
        n = draw(st.integers(4, min(8, T // 2)))
    elif n_rule == "trailing_extra":
        ns = [k for k in range(2, T) if trailing_extra(T, k)]
        n = draw(st.sampled_from(ns)) if ns else T  # T: no extra; filtered out below
    else:
        raise ValueError(n_rule)
    if spacing == "trailing" and (n_rule == "trailing_extra") != trailing_extra(T, n):
        draw(st.nothing())  # keep the family homogeneous
    schedule = draw(st.sampled_from(list(schedules)))
    b0 = draw(st.floats(1e-5, 1e-3))
    b1 = draw(st.floats(max(2 * b0, beta_end_min), max(2 * b0, beta_end_min, min(0.3, 20.0 / T))))
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
    if third is not None and (3 in dpm_step_orders(
            made.solver_order, made.lower_order_final, made.euler_at_final,
            made.final_sigmas_type, len(build_scheduler(made).timesteps))) != third:
        draw(st.nothing())  # keep the family homogeneous: with or without a third-order step
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



def sigma_families(name: str, profile: str, note: str) -> list[Family]:
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



def dpm_families(profile: str) -> list[Family]:
    c = _configs
    D = "DPMSolverMultistepScheduler"
    note = ("prediction_type (ε, x_0, v), lower_order_final, euler_at_final, beta_schedule and β "
            "range drawn freely (3M: final_sigmas_type too); algorithm_type dpmsolver++, "
            "solver_type midpoint")
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
        # where the term the reference code halves is resolved in float32: few steps (large h)
        # on a schedule that reaches low ᾱ (β_T ≥ 0.2 or cosine), T ≤ 40 in both profiles
        Family("3M (solver_order=3), leading, 4 ≤ n ≤ min(8, T/2), β_T ≥ 0.2 or cosine (a "
               "third-order step resolved in float32)",
               c(D, profile, "leading", "few", order=3, final=None, third=True, T_min=10,
                 T_max=40, beta_end_min=0.2, schedules=("linear", "squaredcos_cap_v2"), **f32),
               FLOAT32, note),
        Family("3M (solver_order=3), leading, n ≤ 4 without a third-order step",
               c(D, profile, "leading", "upto4", order=3, final=None, third=False, **f32),
               FLOAT32, note),
    ]


# ---------------------------------------------------------------------------------------------
# The schedulers checked through the generic adapter (scheduler_target.SchedulerTarget): one
# strategy, options fixed or drawn per family


def _draw(draw, value):
    return draw(value) if isinstance(value, st.SearchStrategy) else value


@st.composite
def custom_grids(draw, n: int, T: int, given: str) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """set_timesteps' custom grid of n steps: σ's k/1000 (k ∈ {1..1000} distinct, decreasing),
    passed as `sigmas` (given "sigmas"), or as `timesteps` T·σ with or without those `sigmas`
    (given "timesteps")."""
    ks = sorted(draw(st.lists(st.integers(1, 1000), min_size=n, max_size=n, unique=True)),
                reverse=True)
    sigmas = tuple(k / 1000 for k in ks)
    if given == "sigmas":
        return (("sigmas", sigmas),)
    timesteps = ("timesteps", tuple(T * v for v in sigmas))
    return (("sigmas", sigmas), timesteps) if draw(st.booleans()) else (timesteps,)


@st.composite
def generic_configs(draw, scheduler: str, profile: str, *, spacing=None, n_rule: str = "lt",
                    predictions: tuple[str, ...] = PREDICTIONS, T_min: int = 2,
                    mu=None, custom: str | None = None, **options) -> DiffusersConfig:
    """A DiffusersConfig of a generic-adapter scheduler: T ≤ 40 ("small") or ≤ 1000, n by
    `n_rule`, β range and schedule, prediction type; spacing, μ and each option fixed or a
    strategy; `custom` ("sigmas" or "timesteps"): set_timesteps given a custom grid
    (`custom_grids`). An option given as the string "every step" becomes range(n)
    (disable_corrector). A "trailing" grid whose float arange adds τ = −1 (`trailing_extra`) is
    drawn by n_rule "trailing_extra" only, so that it is a family of its own."""
    T_max = 40 if profile == "small" else 1000
    if n_rule == "trailing_extra":
        T = draw(st.sampled_from(_extra_Ts(T_min, T_max)))
    else:
        T = draw(st.integers(T_min, T_max))
    n = {"any": lambda: draw(st.integers(1, T)), "lt": lambda: draw(st.integers(1, T - 1)),
         "trailing_extra": lambda: draw(st.sampled_from(
             [k for k in range(2, T) if trailing_extra(T, k)])),
         "upto40": lambda: draw(st.integers(1, min(T, 40))),
         "2to40": lambda: draw(st.integers(2, min(T, 40))),
         "divides": lambda: draw(st.sampled_from(_divisors(T))),
         "whole": lambda: draw(st.sampled_from(
             [k for k in range(1, T + 1) if k == 1 or (T - 1) % (k - 1) == 0])),
         "frac": lambda: draw(st.sampled_from([k for k in range(2, T) if (T - 1) % (k - 1)] or [0])),
         "one": lambda: 1, "atleast2": lambda: draw(st.integers(2, T)),
         "even": lambda: 2 * draw(st.integers(1, max(1, (T - 1) // 2)))}[n_rule]()
    if n < 1 or n > T or (n_rule == "even" and n >= T):
        draw(st.nothing())
    b0 = draw(st.floats(1e-5, 1e-3))
    b1 = draw(st.floats(max(2 * b0, 1e-3), max(2 * b0, min(0.3, 20.0 / T))))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 4)),
             draw(st.integers(1, 4)))
    drawn = {k: _draw(draw, v) for k, v in options.items()}
    opts = tuple(sorted((k, tuple(range(n)) if v == "every step" else v) for k, v in drawn.items()))
    schedule = draw(st.sampled_from(["linear", "scaled_linear", "squaredcos_cap_v2"]))
    spacing = _draw(draw, spacing) or "leading"
    if spacing == "trailing" and (n_rule == "trailing_extra") != trailing_extra(T, n):
        draw(st.nothing())  # a grid ending in τ = −1 is its own family (n_rule trailing_extra)
    return DiffusersConfig(
        scheduler=scheduler, T=T, beta_schedule=schedule,
        beta_start=b0, beta_end=b1, n=n, spacing=spacing,
        prediction_type=draw(st.sampled_from(list(predictions))), tables="float32", shape=shape,
        seed=draw(st.integers(0, 2**16)), options=opts, mu=_draw(draw, mu),
        custom=draw(custom_grids(n, T, custom)) if custom else ())


def unipc_families(profile: str) -> list[Family]:
    c, U = generic_configs, "UniPCMultistepScheduler"
    spacing = st.sampled_from(["leading", "trailing", "linspace"])
    order, variant = st.integers(1, 3), st.sampled_from(["bh1", "bh2"])
    note = ("prediction_type (ε, x_0, v), timestep_spacing, beta_schedule and β range drawn; "
            "n < T (n = T repeats a τ, as for DPMSolverMultistepScheduler)")
    return [
        Family("bh2, solver_order 1–3, corrector on, final σ = 0",
               c(U, profile, spacing=spacing, solver_order=order), FLOAT32, note),
        Family("bh2, solver_order 1–3, trailing, float arange adds τ = −1 (e.g. T=17, n=7)",
               c(U, profile, spacing="trailing", n_rule="trailing_extra", T_min=15,
                 solver_order=order), FLOAT32, note),
        Family("bh2, solver_order 1–3, corrector off (disable_corrector every step)",
               c(U, profile, spacing=spacing, solver_order=order, disable_corrector="every step"),
               FLOAT32, note),
        Family("bh2, solver_order 1–3, final_sigmas_type=sigma_min",
               c(U, profile, spacing="leading", solver_order=order, final_sigmas_type="sigma_min"),
               FLOAT32, note),
        Family("bh1, solver_order 1–3, final σ = 0",
               c(U, profile, spacing=spacing, solver_order=order, solver_type="bh1"), FLOAT32, note),
        Family("bh1, solver_order 1–3, final_sigmas_type=sigma_min",
               c(U, profile, spacing="leading", solver_order=order, solver_type="bh1",
                 final_sigmas_type="sigma_min"), FLOAT32, note),
        Family("bh2, solver_order 2–3, lower_order_final=False, final σ = 0, n ≥ 2",
               c(U, profile, spacing=spacing, n_rule="atleast2", T_min=3,
                 solver_order=st.integers(2, 3), lower_order_final=False), FLOAT32, note),
        Family("bh1 / bh2, solver_order 1–3, corrector off, final_sigmas_type=sigma_min",
               c(U, profile, spacing="leading", solver_order=order, solver_type=variant,
                 disable_corrector="every step", final_sigmas_type="sigma_min"), FLOAT32, note),
        Family("bh1 / bh2, solver_order 1–3, corrector on or off, lower_order_final=False, "
               "final_sigmas_type=sigma_min",
               c(U, profile, spacing="leading", solver_order=order, solver_type=variant,
                 disable_corrector=st.sampled_from([(), "every step"]), lower_order_final=False,
                 final_sigmas_type="sigma_min"), FLOAT32, note),
        Family("use_flow_sigmas, flow_prediction, bh2, solver_order 1–3, flow_shift ∈ [1, 6]",
               c(U, profile, predictions=("flow_prediction",), solver_order=order,
                 use_flow_sigmas=True, flow_shift=st.floats(1.0, 6.0)), FLOW32,
               "UniPC on flow states (spec.flow's exact VP ↔ flow map) over its own σ's, "
               "linspace(1, 1/T, n + 1)[:−1] shifted, σ_0 = 1 − 1e−6, then 0; beta_schedule and "
               "β range drawn (unused by flow σ's)"),
    ]


def dpm_singlestep_families(profile: str) -> list[Family]:
    c, D = generic_configs, "DPMSolverSinglestepScheduler"
    note = ("prediction_type (ε, x_0, v), beta_schedule and β range drawn; its own grid "
            "(linspace over n + 1 points, τ = 0 dropped), n < T")
    return [
        Family("2S, lower_order_final, final σ = 0", c(D, profile), FLOAT32, note),
        Family("2S, lower_order_final, final_sigmas_type=sigma_min",
               c(D, profile, final_sigmas_type="sigma_min"), FLOAT32, note),
        Family("2S, lower_order_final=False, final_sigmas_type=sigma_min, even n",
               c(D, profile, n_rule="even", T_min=3, lower_order_final=False,
                 final_sigmas_type="sigma_min"), FLOAT32, note),
        Family("solver_order=1", c(D, profile, solver_order=1), FLOAT32, note),
        Family("solver_order=3, n ≥ 2", c(D, profile, n_rule="atleast2", T_min=4, solver_order=3),
               FLOAT32, note),
    ]


def euler_ancestral_families(profile: str) -> list[Family]:
    c, E = generic_configs, "EulerAncestralDiscreteScheduler"
    note = ("prediction_type ε and v (its step() raises for x_0: not drawn), beta_schedule and "
            "β range drawn; each step's noise handed to its randn_tensor")
    p = ("epsilon", "v_prediction")
    return [
        Family("leading, any n", c(E, profile, spacing="leading", n_rule="any", predictions=p),
               FLOAT32, note),
        Family("trailing, n divides T", c(E, profile, spacing="trailing", n_rule="divides",
                                          predictions=p), FLOAT32, note),
        Family("linspace, (n − 1) | (T − 1) (integer timesteps)",
               c(E, profile, spacing="linspace", n_rule="whole", predictions=p), FLOAT32, note),
        Family("linspace, (n − 1) ∤ (T − 1) (non-integer timesteps)",
               c(E, profile, spacing="linspace", n_rule="frac", T_min=4, predictions=p),
               FLOAT32, note),
    ]


def flow_families(scheduler: str, profile: str) -> list[Family]:
    c = generic_configs
    e = ("epsilon",)  # a flow model predicts the velocity; prediction_type is not read
    note = "num_train_timesteps (T) and n drawn; the model is a velocity model fed σ"
    shift = st.floats(1.5, 6.0)
    out = [
        Family("shift = 1, any n", c(scheduler, profile, n_rule="any", predictions=e),
               FLOW32, note),
        Family("shift ∈ [1.5, 6], any n",
               c(scheduler, profile, n_rule="any", predictions=e, shift=shift), FLOW32, note),
    ]
    if scheduler != "FlowMatchEulerDiscreteScheduler":
        return out
    return [
        *out,
        Family("use_dynamic_shifting, μ ∈ [0.3, 1.5] (exponential), any n",
               c(scheduler, profile, n_rule="any", predictions=e, use_dynamic_shifting=True,
                 mu=st.floats(0.3, 1.5)), FLOW32, note),
        Family("shift_terminal ∈ [0.05, 0.5], n ≥ 2",
               c(scheduler, profile, n_rule="atleast2", predictions=e, shift=shift,
                 shift_terminal=st.floats(0.05, 0.5)), FLOW32, note),
        Family("shift_terminal, n = 1",
               c(scheduler, profile, n_rule="one", predictions=e, shift_terminal=st.floats(0.05, 0.5)),
               FLOW32, note),
        Family("stochastic_sampling", c(scheduler, profile, n_rule="any", predictions=e,
                                        stochastic_sampling=True), FLOW32, note),
        Family("custom sigmas (set_timesteps(n, sigmas=σ)), shift ∈ {1} ∪ [1.5, 6]",
               c(scheduler, profile, n_rule="upto40", predictions=e, custom="sigmas",
                 shift=st.one_of(st.just(1.0), shift)), FLOW32, note),
        Family("custom timesteps (set_timesteps(n, timesteps=T·σ), with or without sigmas=σ), "
               "shift = 1", c(scheduler, profile, n_rule="upto40", predictions=e,
                              custom="timesteps"), FLOW32, note),
        Family("custom timesteps (with or without sigmas), shift ∈ [1.5, 6], n ≥ 2",
               c(scheduler, profile, n_rule="2to40", predictions=e, custom="timesteps",
                 shift=shift), FLOW32, note),
    ]
