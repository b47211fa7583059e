"""One training step, the twins of `spec.train`: the very function `runtime.train`'s loop runs.

`train_step(sched, model, update, x01, t, noise)` takes everything explicitly (a batch in
[0, 1], the times, the noise, the model and the optimizer/EMA holder `GuardedUpdate`), so the
conformance record of `spec.train.train_step` checks the step the CLI runs, not a copy:

    x0 = 2·x01 − 1                                   (to_diffusion_range, DDPM §4)
    loss, per-sample losses = train_loss(…)          (DDPM Eq. 14, batch mean; optional weights)
    zero grads; loss.backward()
    finite = loss and every gradient finite          (one device flag, no host sync)
    update.step(finite): fused Adam (Kingma & Ba Algorithm 1, as torch.optim.Adam computes it)
                         and ema ← ema + (1 − d_n)·(θ − ema), both skipped when not finite
                         (d_n = decay, or its warm-up ema_decay_at at the n-th update taken)

Drawing t ~ U{1..T}, the noise and the batch indices stays in the loop (`runtime.train`):
those are tested as distributions (tests/test_train_pipeline.py).

`train_loss` is the one place that turns the model's output into a loss: the prediction type
(ε, x0 or v) chooses its target, and min-SNR-γ or explicit per-sample `weights` its weighting.

`OBJECTIVES` is the table of what a run trains (`--objective`): "vp", the diffusion loss above
with t ~ U{1..T}, and "flow", rectified-flow matching (`flow_train_loss`, the twin of
spec.train.flow_train_loss: σ from `--flow-sigma`'s density, x_σ = (1 − σ)·x0 + σ·ε, the
network fed σ as its time, target ε − x0, plain MSE). Each row says how a step draws the
per-sample time, which loss it takes, how the loss curve bins the time into quartiles, and which
TrainConfig fields only it reads (given to the other objective, they are an error).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor

from runtime.core import work_dtype
from runtime.data.transforms import to_diffusion_range
from runtime.flow import flow_interpolation, flow_velocity_target, logit_normal_sigma, uniform_sigma
from runtime.loss import prediction_loss
from runtime.prediction import PREDICTION_TABLE, min_snr_weight
from runtime.schedule import Schedule, TimeIndex

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def make_adam(params: Sequence[Tensor], lr: float) -> torch.optim.Adam:
    """The optimizer of every training run: torch's fused Adam (one kernel for the update, and a
    device-side `found_inf` flag that skips it exactly), betas (0.9, 0.999), eps 1e-8."""
    return torch.optim.Adam(params, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS, fused=True)


def adam_step(params: dict[str, Tensor], grads: dict[str, Tensor], state: dict[str, Any],
              lr: float, beta1: float = 0.9, beta2: float = 0.999,
              eps: float = 1e-8) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """One step of the training optimizer on explicit tensors (functional; inputs untouched).

    The twin of spec.train.adam_step: the same fused torch.optim.Adam `make_adam` builds (with
    the given betas and eps), loaded with state {"step": k, "m": {...}, "v": {...}}.
    Shapes: dicts of equally shaped tensors -> (params, state).
    """
    names = list(params)
    leaves = [params[n].detach().clone().requires_grad_(True) for n in names]
    opt = torch.optim.Adam(leaves, lr=lr, betas=(beta1, beta2), eps=eps, fused=True)
    for n, p in zip(names, leaves, strict=True):
        p.grad = grads[n].detach().clone()
        opt.state[p] = {"step": torch.tensor(float(state["step"]), dtype=torch.float32,
                                             device=p.device),
                        "exp_avg": state["m"][n].detach().clone(),
                        "exp_avg_sq": state["v"][n].detach().clone()}
    with torch.no_grad():
        opt.step()
    return ({n: p.detach() for n, p in zip(names, leaves, strict=True)},
            {"step": int(opt.state[leaves[0]]["step"]) if leaves else int(state["step"]) + 1,
             "m": {n: opt.state[p]["exp_avg"] for n, p in zip(names, leaves, strict=True)},
             "v": {n: opt.state[p]["exp_avg_sq"] for n, p in zip(names, leaves, strict=True)}})


def ema_update(ema: list[Tensor], params: Sequence[Tensor], decay: float | Tensor,
               finite: Tensor | None = None) -> list[Tensor]:
    """ema ← ema + w·(θ − ema), w = (1 − decay)·finite, in place (a skipped step: w = 0).

    The twin of spec.train.ema_update (lists of tensors for dicts; `decay` a float, or a 0-d
    tensor on the device from `ema_decay_at`; `finite` a 0-d bool tensor). w is rounded once to
    the EMA's dtype.
    Shapes: lists of equally shaped tensors -> ema (the same list).
    """
    dtype = ema[0].dtype if ema else torch.float32
    weight = 1.0 - decay
    if finite is not None:
        weight = finite.to(dtype) * weight
    if isinstance(weight, Tensor):
        weight = weight.to(dtype)
    diffs = torch._foreach_sub([p.detach().to(e.dtype) for p, e in zip(params, ema, strict=True)],
                               ema)
    torch._foreach_mul_(diffs, weight)
    torch._foreach_add_(ema, diffs)
    return ema


def ema_decay_at(decay: float, n: Tensor, warmup: bool) -> float | Tensor:
    """d_n = min(d, (1 + n)/(10 + n)) with the warm-up, d without (TensorFlow's
    ExponentialMovingAverage with num_updates = n).

    The twin of spec.train.ema_decay_at: `n` is a 0-d tensor on the device (the updates taken,
    `GuardedUpdate.taken_updates`), so the warmed-up decay is computed there, in float64, and
    never read on the host.
    Shapes: n () -> () float64 tensor (the float d without the warm-up).
    """
    if not warmup:
        return decay
    n = n.to(torch.float64)
    return torch.clamp((1 + n) / (10 + n), max=decay)


class GuardedUpdate:
    """Adam step + EMA update that leave everything untouched when `finite` is False.

    sync_free (the default on CUDA): `finite` is never read on the host; fused Adam gets
    `found_inf = 1 − finite` and skips its update on the device, and the EMA weight is multiplied
    by `finite`. Otherwise (CPU, where reading a flag costs nothing) the step is simply not
    taken. Both give bit-identical results. With `ema_warmup` the EMA decay of the n-th update
    taken is `ema_decay_at(ema_decay, n, True)`, n read from Adam's step count on the device.
    """

    def __init__(self, model: torch.nn.Module, lr: float, ema_decay: float,
                 device: torch.device, sync_free: bool | None = None,
                 ema_warmup: bool = False) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.sync_free = device.type == "cuda" if sync_free is None else sync_free
        # Both paths use fused Adam, so they stay bit-identical.
        self.optimizer = make_adam(self.params, lr)
        self.ema_decay, self.ema_warmup = ema_decay, ema_warmup
        # EMA weights, one per parameter, in float32 (float64 for a float64 model; None when
        # EMA is off).
        self.ema = ([p.detach().clone().to(torch.promote_types(p.dtype, torch.float32))
                     for p in self.params] if ema_decay > 0 else None)
        self._init_adam_state()

    def _init_adam_state(self) -> None:
        """Create Adam's state now (as fused Adam would on its first step)."""
        for p in self.params:
            state = self.optimizer.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def step(self, finite: Tensor) -> None:
        """finite: 0-d bool tensor on the device."""
        if not self.sync_free:
            if not bool(finite):
                return
            with torch.no_grad():
                self.optimizer.step()
                self._ema_update(finite)
            return
        # found_inf = 1 makes fused Adam leave parameters, moments and step count as they were.
        self.optimizer.found_inf = (~finite).to(torch.float32)
        with torch.no_grad():
            self.optimizer.step()
            self._ema_update(finite)
        del self.optimizer.found_inf

    def taken_updates(self) -> Tensor:
        """n, the updates taken so far: fused Adam's step count (0-d float32 on the device, exact
        up to 2^24), which a skipped step leaves as it was (fused Adam subtracts found_inf) and
        the checkpoint keeps with Adam's state. Read after the step, it counts that step."""
        return self.optimizer.state[self.params[0]]["step"]

    def _ema_update(self, finite: Tensor) -> None:
        if self.ema is not None:
            decay = ema_decay_at(self.ema_decay, self.taken_updates(), self.ema_warmup)
            ema_update(self.ema, self.params, decay, finite)

    def ema_state_dict(self, model: torch.nn.Module) -> dict[str, Tensor] | None:
        """The model's state_dict with every parameter replaced by its EMA weight."""
        if self.ema is None:
            return None
        by_id = {id(p): e for p, e in zip(self.params, self.ema, strict=True)}
        state = {}
        for name, tensor in model.state_dict(keep_vars=True).items():
            state[name] = by_id.get(id(tensor), tensor).detach().clone()
        return state

    def load_ema_state_dict(self, model: torch.nn.Module, state: dict[str, Tensor]) -> None:
        assert self.ema is not None
        own = dict(model.named_parameters())
        index = {id(p): i for i, p in enumerate(self.params)}
        for name, param in own.items():
            self.ema[index[id(param)]].copy_(state[name])


def all_finite(loss: Tensor, params: Sequence[Tensor]) -> Tensor:
    """0-d bool: the loss and every gradient are finite (no host sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    flag = torch.isfinite(loss)
    if grads:
        norms = torch._foreach_norm(grads)
        flag = flag & torch.isfinite(torch.stack(norms)).all()
    return flag


def train_loss(sched: Schedule, model: Callable[..., Tensor], x01: Tensor, t: TimeIndex,
               eps: Tensor, weights: Tensor | None = None, *, prediction: str = "eps",
               min_snr_gamma: float | None = None) -> tuple[Tensor, Tensor]:
    """The batch loss of one step and its per-sample values (twin of spec.train.train_loss).

    loss = mean_i w_i·ℓ_i, ℓ_i = ‖y_i − out(√ᾱ_{t_i}·x0_i + √(1 − ᾱ_{t_i})·ε_i, t_i/T)‖²/n,
    x0 = 2·x01 − 1, y the target of the model's `prediction` (ε, x0 or v;
    runtime.prediction.prediction_target); the ℓ_i are runtime.loss.prediction_loss with
    reduction="none". w is the explicit per-sample `weights`, else the min-SNR-γ weight when
    `min_snr_gamma` is given, else 1. The per-sample values returned (float32, detached,
    unweighted: the ℓ_i) are for the loss curve. Unweighted, the loss is the mean of the ℓ_i
    as in the spec; its gradient equals that of the mean over all B·n elements bit for bit
    when B or n = C·H·W is a power of two (otherwise the scale 1/(B·n) may differ by one
    rounding).
    Shapes: x01, eps (B, C, H, W); t int or (B,) LongTensor; weights (B,) -> ((), (B,)).
    """
    x0 = to_diffusion_range(x01)
    per = prediction_loss(sched, model, x0, t, eps, None, prediction, reduction="none")  # (B,)
    if weights is None and min_snr_gamma is not None:
        weights = min_snr_weight(sched, t, min_snr_gamma, prediction).to(per.device)
    loss = per.mean() if weights is None else (weights.to(per.dtype) * per).mean()
    return loss, per.detach().float()


def flow_train_loss(model: Callable[..., Tensor], x01: Tensor, sigma: Tensor,
                    eps: Tensor) -> tuple[Tensor, Tensor]:
    """The batch loss of one flow-matching step and its per-sample values (twin of
    spec.train.flow_train_loss; Esser et al. 2024 §2–3.1).

    loss = mean_i ℓ_i, ℓ_i = ‖(ε_i − x0_i) − out((1 − σ_i)·x0_i + σ_i·ε_i, σ_i)‖²/n,
    x0 = 2·x01 − 1; the network is fed σ itself as its time input. The per-sample values
    returned (float32, detached) are for the loss curve.
    Shapes: x01, eps (B, C, H, W); sigma (B,) float in [0, 1] -> ((), (B,)).
    """
    x0 = to_diffusion_range(x01)
    wd = work_dtype(x0.dtype)
    x_sigma = flow_interpolation(x0, sigma, eps)
    out = model(x_sigma, sigma.to(wd))
    target = flow_velocity_target(x0, eps)
    per = torch.square(out.to(wd) - target.to(wd)).flatten(1).mean(1)  # (B,)
    return per.mean(), per.detach().float()


def _flow_loss(sched: Schedule, model: Callable[..., Tensor], x01: Tensor, sigma: Tensor,
               eps: Tensor, weights: Tensor | None = None, *, prediction: str = "eps",
               min_snr_gamma: float | None = None) -> tuple[Tensor, Tensor]:
    """`flow_train_loss` under train_loss's signature (the schedule and prediction are unused;
    the flow loss has no weighting)."""
    if weights is not None or min_snr_gamma is not None:
        raise ValueError("the flow loss is unweighted: weights and min_snr_gamma must be None")
    return flow_train_loss(model, x01, sigma, eps)


FLOW_SIGMAS: dict[str, Callable[[int, torch.Generator], Tensor]] = {
    "uniform": lambda B, gen: uniform_sigma(torch.rand(B, generator=gen)),
    "logit-normal": lambda B, gen: logit_normal_sigma(torch.randn(B, generator=gen)),
}
"""`--flow-sigma` → B training σ's from a generator (SD3 §3.1): uniform, σ = u ~ U[0, 1); or
logit-normal with m = 0, s = 1 (SD3's best in its Table 1), σ = sigmoid(z), z ~ N(0, 1).
Shapes: -> (B,) float32 on the CPU."""


@dataclass(frozen=True)
class Objective:
    """One `--objective` of runtime.train: `draw(cfg, B, generator)` the B per-sample times of a
    step ((B,) int64 t ∈ 1..T, or float32 σ ∈ [0, 1]); `loss` with train_loss's signature;
    `quartile(time, T)` the loss curve's quartile of each time ((B,) int64 in 0..3);
    `symbol(cfg)` the target named on the loss plot; `reads` the TrainConfig fields only this objective reads;
    `fixed` the values a run of it records for the other objectives' fields it does not read;
    `help` for --objective's help."""

    draw: Callable[[Any, int, torch.Generator], Tensor]
    loss: Callable[..., tuple[Tensor, Tensor]]
    quartile: Callable[[Tensor, int], Tensor]
    symbol: Callable[[Any], str]
    reads: tuple[str, ...]
    help: str
    fixed: dict[str, Any] = field(default_factory=dict)


OBJECTIVES: dict[str, Objective] = {
    "vp": Objective(
        draw=lambda cfg, B, gen: torch.randint(1, cfg.T + 1, (B,), generator=gen),
        loss=train_loss,
        quartile=lambda t, T: torch.clamp((t - 1) * 4 // T, 0, 3),
        symbol=lambda cfg: PREDICTION_TABLE[cfg.prediction].symbol, reads=("T", "schedule", "beta_start", "beta_end", "prediction",
                          "zero_terminal_snr", "min_snr_gamma", "eta", "reconstruct_step"),
        help="the VP diffusion loss of --prediction, t ~ U{1..T} (DDPM Algorithm 1)"),
    "flow": Objective(
        draw=lambda cfg, B, gen: FLOW_SIGMAS[cfg.flow_sigma](B, gen),
        loss=_flow_loss,
        quartile=lambda sigma, T: torch.clamp((sigma * 4).long(), 0, 3),
        symbol=lambda cfg: "ε − x₀", reads=("flow_sigma",),
        help="rectified-flow matching (SD3 §2–3.1): x_σ = (1 − σ)·x0 + σ·ε, σ from "
             "--flow-sigma, the network fed σ, target ε − x0, plain MSE",
        fixed={"prediction": "eps", "min_snr_gamma": None}),
}
"""`--objective` → its row (the order of --help). A flow run records prediction "eps" (the
network's output is read as is: the velocity) and no min-SNR weight."""

OBJECTIVE_NAMES = tuple(OBJECTIVES)


class StepResult(NamedTuple):
    loss: Tensor  # () detached
    per_sample: Tensor  # (B,) float32, detached
    finite: Tensor  # () bool: the update was applied


def train_step(sched: Schedule, model: Callable[[Tensor, Tensor], Tensor],
               update: GuardedUpdate, x01: Tensor, t: Tensor, noise: Tensor, *,
               autocast: Any = None, channels_last: bool = False,
               reduce_finite: Callable[[Tensor], Tensor] | None = None,
               weights: Tensor | None = None, prediction: str = "eps",
               min_snr_gamma: float | None = None,
               model_args: tuple[Tensor, ...] = (), objective: str = "vp") -> StepResult:
    """One training step on explicit inputs (the twin of spec.train.train_step).

    `model` is what the loss calls (the module, or its DDP / compiled wrapper); `update` holds
    the parameters, fused Adam and the EMA. `autocast` (a context manager) and `channels_last`
    are the fast-kernel settings; `reduce_finite` makes every rank agree on the finite flag;
    `prediction` and `min_snr_gamma` choose the loss (`train_loss`); `model_args` are passed to
    the model after (x, t/T) (a class-conditional model's labels). `objective` picks the loss
    of OBJECTIVES: for "flow", `t` holds the σ's ((B,) float) and the loss is flow_train_loss.
    Shapes: x01, noise (B, C, H, W) on the device; t (B,) LongTensor (σ: float) -> StepResult.
    """
    def call_model(x: Tensor, t_norm: Tensor) -> Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return model(x, t_norm, *model_args)

    with autocast if autocast is not None else contextlib.nullcontext():
        loss, per_sample = OBJECTIVES[objective].loss(
            sched, call_model, x01, t, noise, weights, prediction=prediction,
            min_snr_gamma=min_snr_gamma)
    update.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    finite = all_finite(loss.detach(), update.params)
    if reduce_finite is not None:
        finite = reduce_finite(finite)
    update.step(finite)
    return StepResult(loss.detach(), per_sample, finite)


__all__ = ["ADAM_BETAS", "ADAM_EPS", "FLOW_SIGMAS", "OBJECTIVES", "OBJECTIVE_NAMES",
           "GuardedUpdate", "Objective", "StepResult", "adam_step", "all_finite", "ema_decay_at",
           "ema_update", "flow_train_loss", "make_adam", "train_loss", "train_step"]
