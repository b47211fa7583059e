"""Schedulers with diffusers' interface, written here from the papers (not from diffusers), for
the no-code `--scheduler ... --claims ...` path: correct ones and ones with a planted bug.

Each keeps ᾱ in float64 (`alphas_cumprod[τ]` = ᾱ after τ + 1 noising steps), builds a trailing
grid τ_i = ⌊T(n − i)/n⌋ − 1 and steps from each grid timestep to the next (the last one to
ᾱ = 1). Planted bugs: `StrideDDIM` steps by T // n (diffusers' DDIM rule) instead of to the
grid's next time; `NaNDDIM` writes √(1 − ᾱ_prev) as (1 − ᾱ_prev)/√(1 − ᾱ_prev), 0/0 on the
last step; `NoHistoryDPM` forgets the previous x̂_0 (every step first order); `ThirdOrderDPM`
is configured with solver_order 3, which the spec's 2M claim does not have. `PaperDPM3M` is
DPM-Solver++(3M), Eq. 9 integrated exactly; `HalvedDPM3M` halves its quadratic term.

For the table rows (`conformance.external.tables`): `PaperEuler` takes timestep_spacing and
builds Lin et al.'s grids exactly, with the VP σ's of its table; `StaleSigmaEuler` reads each σ
one table entry late. `PaperFlow` shifts its σ's as SD3 does; `TwiceShiftedFlow` shifts twice.
"""

from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

import torch


class PaperDDIM:
    """DDIM (Song et al. 2021, Eq. 12, σ of Eq. 16) with diffusers' scheduler interface."""

    init_noise_sigma = 1.0

    def __init__(self, num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02):
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
        self.alphas_cumprod = torch.cumprod(1.0 - betas, 0)
        self.T = num_train_timesteps

    def set_timesteps(self, n):
        self.n = n
        self.timesteps = torch.tensor([self.T * (n - i) // n - 1 for i in range(n)])
        self.sigmas = ((1 - self.alphas_cumprod[self.timesteps]) / self.alphas_cumprod[self.timesteps]).sqrt()

    def scale_model_input(self, sample, timestep):
        return sample

    def previous(self, tau):
        grid = self.timesteps.tolist()
        k = grid.index(tau)
        return grid[k + 1] if k + 1 < len(grid) else -1

    def alpha_bar(self, tau):
        return self.alphas_cumprod[tau] if tau >= 0 else torch.tensor(1.0, dtype=torch.float64)

    def direction(self, a_prev, sigma):
        return (1 - a_prev - sigma**2).clamp(min=0).sqrt()

    def step(self, model_output, timestep, sample, eta=0.0, variance_noise=None):
        tau = int(timestep)
        a, a_prev = self.alpha_bar(tau), self.alpha_bar(self.previous(tau))
        eps = model_output
        x0 = (sample - (1 - a).sqrt() * eps) / a.sqrt()  # Eq. 9
        sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()  # Eq. 16
        x = a_prev.sqrt() * x0 + self.direction(a_prev, sigma) * eps  # Eq. 12
        if eta > 0:
            x = x + sigma * variance_noise
        return SimpleNamespace(prev_sample=x)


class StrideDDIM(PaperDDIM):
    """Steps from τ to τ − T // n, not to the grid's next timestep."""

    def previous(self, tau):
        return tau - self.T // self.n


class NaNDDIM(PaperDDIM):
    """√(1 − ᾱ_prev) written as (1 − ᾱ_prev)/√(1 − ᾱ_prev): 0/0 = NaN where ᾱ_prev = 1."""

    def direction(self, a_prev, sigma):
        return (1 - a_prev - sigma**2) / (1 - a_prev - sigma**2).sqrt()


class PaperDPM(PaperDDIM):
    """DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2) with diffusers' scheduler interface: a
    multistep method, which keeps the previous step's x̂_0 and λ."""

    solver_order = 2

    def __init__(self, num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02):
        super().__init__(num_train_timesteps, beta_start, beta_end)
        self.config = {"solver_order": self.solver_order, "lower_order_final": False}

    def set_timesteps(self, n):
        super().set_timesteps(n)
        self.history = []

    def step(self, model_output, timestep, sample):
        tau = int(timestep)
        a, a_prev = self.alpha_bar(tau), self.alpha_bar(self.previous(tau))
        x0 = (sample - (1 - a).sqrt() * model_output) / a.sqrt()
        if a_prev == 1:  # into σ = 0: the first-order step is x̂_0 itself
            return SimpleNamespace(prev_sample=x0)
        lam, lam_prev = 0.5 * torch.log(a / (1 - a)), 0.5 * torch.log(a_prev / (1 - a_prev))
        h = lam_prev - lam
        D = x0  # line 3: first order without history
        if self.history:
            x0_last, lam_last = self.history[-1]
            r = (lam - lam_last) / h  # r_i = h_{i−1}/h_i
            D = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_last  # line 7
        self.remember(x0, lam)
        x = ((1 - a_prev) / (1 - a)).sqrt() * sample - a_prev.sqrt() * torch.expm1(-h) * D
        return SimpleNamespace(prev_sample=x)

    def remember(self, x0, lam):
        self.history.append((x0, lam))


class NoHistoryDPM(PaperDPM):
    """Forgets the previous x̂_0: every step first order (DPM-Solver++(1)), sold as 2M."""

    def remember(self, x0, lam):
        pass


class ThirdOrderDPM(PaperDPM):
    """Configured with solver_order 3: a method the spec does not have."""

    solver_order = 3


class PaperDPM3M(PaperDPM):
    """DPM-Solver++(3M): its first two steps are (2M)'s (Algorithm 2, lines 3 and 7); from the
    third, Lu et al. 2022b's Eq. 9, x_s = (σ_s/σ_t)·x_t + σ_s·∫ e^λ·x̂_0(λ) dλ over [λ_t, λ_s],
    with x̂_0 the quadratic in λ through the last three x̂_0, integrated exactly; into σ = 0, x̂_0."""

    solver_order = 3
    halve_quadratic = False

    def step(self, model_output, timestep, sample):
        tau = int(timestep)
        a, a_prev = self.alpha_bar(tau), self.alpha_bar(self.previous(tau))
        if len(self.history) < 2 or a_prev == 1:
            return super().step(model_output, timestep, sample)
        x0 = (sample - (1 - a).sqrt() * model_output) / a.sqrt()
        lam, lam_prev = 0.5 * torch.log(a / (1 - a)), 0.5 * torch.log(a_prev / (1 - a_prev))
        h = lam_prev - lam
        # x̂_0(λ_t + u) = x0 + d1·u + d2·u², Newton's divided differences through the last three
        (x2, l2), (x1, l1) = self.history[-2:]
        f01, f12 = (x0 - x1) / (lam - l1), (x1 - x2) / (l1 - l2)
        d2 = (f01 - f12) / (lam - l2)
        d1 = f01 + (lam - l1) * d2
        self.remember(x0, lam)
        # e^{−h}·∫_0^h e^u·u^k du for k = 0, 1, 2
        e = torch.exp(-h)
        i0, i1, i2 = 1 - e, h - 1 + e, h**2 - 2 * h + 2 - 2 * e
        if self.halve_quadratic:
            i2 = i2 / 2
        x = ((1 - a_prev) / (1 - a)).sqrt() * sample + a_prev.sqrt() * (i0 * x0 + i1 * d1 + i2 * d2)
        return SimpleNamespace(prev_sample=x)


class HalvedDPM3M(PaperDPM3M):
    """The quadratic term halved, as the reference codes write it (docs/errata.md §4)."""

    halve_quadratic = True


def targets():
    """A factory of targets, for `python -m conformance.external external_schedulers:targets`:
    a correct DDIM and a scheduler configured outside the spec."""
    from conformance.external import SchedulerTarget

    return [SchedulerTarget(PaperDDIM, "ddim", name="paper_ddim"),
            SchedulerTarget(ThirdOrderDPM, "dpmsolver++2m", name="third_order_dpm")]


def plugin_targets():
    """For the pytest plugin's test: a DDIM that steps by T // n and a correct one."""
    from conformance.external import SchedulerTarget

    return [SchedulerTarget(StrideDDIM, "ddim"), SchedulerTarget(PaperDDIM, "ddim")]


class DictConfigs:
    """A target whose families draw dicts: the harness stops with one line saying what it needs."""

    name = "dict_configs"

    def families(self, profile):
        from hypothesis import strategies as st

        from conformance.external import FLOAT64, Family

        return [Family("dicts", st.fixed_dictionaries({"seed": st.just(0)}), FLOAT64)]

    def prepare(self, config):
        raise AssertionError("never reached")


# ---------------------------------------------------------------------------------------------
# Tables: grids and σ's (conformance.external.tables)


class PaperEuler:
    """EDM Euler (Karras et al. 2022, Algorithm 1 without its correction) on the VP σ's of its
    table, with diffusers' scheduler interface: the grids of Lin et al. 2023, Table 2 in exact
    integer arithmetic (t = τ + 1), σ_t = √((1 − ᾱ_t)/ᾱ_t) at each grid time, then σ = 0."""

    init_noise_sigma = 1.0

    def __init__(self, num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                 beta_schedule="linear", timestep_spacing="leading"):
        if beta_schedule != "linear":
            raise ValueError(f"beta_schedule {beta_schedule!r}: only linear")
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
        self.alphas_cumprod = torch.cumprod(1.0 - betas, 0)
        self.config = dict(num_train_timesteps=num_train_timesteps, beta_start=beta_start,
                           beta_end=beta_end, beta_schedule=beta_schedule,
                           timestep_spacing=timestep_spacing)

    def grid(self, n):
        """Lin et al. 2023, Table 2: the spec times t_0 > … > t_{n−1}, rounded half to even."""
        T, spacing = self.config["num_train_timesteps"], self.config["timestep_spacing"]
        if spacing == "leading":
            return [1 + (n - 1 - i) * (T // n) for i in range(n)]
        if spacing == "trailing":
            return [round(Fraction(T * (n - i), n)) for i in range(n)]
        return [1] if n == 1 else [round(Fraction(n - 1 + (n - 1 - i) * (T - 1), n - 1)) for i in range(n)]

    def sigma(self, t):
        a = self.alphas_cumprod[t - 1]  # alphas_cumprod[τ] = ᾱ_{τ+1}
        return ((1 - a) / a).sqrt()

    def set_timesteps(self, n):
        ts = self.grid(n)
        self.timesteps = torch.tensor([t - 1 for t in ts])
        self.sigmas = torch.stack([*(self.sigma(t) for t in ts), torch.zeros((), dtype=torch.float64)])

    def index(self, timestep):
        return self.timesteps.tolist().index(int(timestep))

    def scale_model_input(self, sample, timestep):
        return sample / (1 + self.sigmas[self.index(timestep)] ** 2).sqrt()  # x̃ → x_t

    def step(self, model_output, timestep, sample):
        i = self.index(timestep)  # x̃' = x̃ + (σ_next − σ)·ε̂: the slope (x̃ − D)/σ is ε̂
        return SimpleNamespace(prev_sample=sample + (self.sigmas[i + 1] - self.sigmas[i]) * model_output)


class StaleSigmaEuler(PaperEuler):
    """Reads σ at alphas_cumprod[t] (ᾱ_{t+1}) instead of alphas_cumprod[τ] = alphas_cumprod[t − 1]:
    the spec's t taken for diffusers' τ, one table entry late (clamped at the table's end)."""

    def sigma(self, t):
        a = self.alphas_cumprod[min(t, len(self.alphas_cumprod) - 1)]
        return ((1 - a) / a).sqrt()


class PaperFlow:
    """Flow-matching Euler on SD3's shifted σ's (Esser et al. 2024, Eq. 23): σ = s·u/(1 + (s − 1)u)
    of u evenly spaced from 1 to 1/T, then 0; the model called at timestep σ·T."""

    def __init__(self, num_train_timesteps=1000, shift=1.0):
        self.config = dict(num_train_timesteps=num_train_timesteps, shift=shift)

    def shifted(self, u):
        s = self.config["shift"]
        return s * u / (1 + (s - 1) * u)

    def set_timesteps(self, n):
        u = torch.linspace(1.0, 1.0 / self.config["num_train_timesteps"], n, dtype=torch.float64)
        self.sigmas = torch.cat([self.shifted(u), torch.zeros(1, dtype=torch.float64)])
        self.timesteps = self.sigmas[:-1] * self.config["num_train_timesteps"]

    def step(self, model_output, timestep, sample):
        i = int(torch.argmin((self.timesteps - timestep).abs()))
        return SimpleNamespace(prev_sample=sample + (self.sigmas[i + 1] - self.sigmas[i]) * model_output)


class TwiceShiftedFlow(PaperFlow):
    """Applies the shift twice: σ = shift(shift(u)), SD3's Eq. 23 with s² instead of s."""

    def shifted(self, u):
        return super().shifted(super().shifted(u))
