"""Records of `spec.train`: the training step `runtime.train` runs, checked against the spec.

* train_loss: the batch loss and the gradient, for every network kind, every prediction target
  (ε, x0, v) and weighting (none, explicit per-sample weights, min-SNR-γ with the target's own
  weight). The runtime's autograd gradient g is compared along random unit directions d: ⟨g, d⟩
  against the central difference (L(θ + h·d) − L(θ − h·d)) / 2h of the spec loss, in float64.
* flow_train_loss: the flow-matching loss of `runtime.train --objective flow` and its gradient,
  the same way (a spec network read as a velocity model v̂(x, σ) = net.eps(x, σ); σ per sample
  in [0, 1], ends included).
* adam_step, ema_update: torch's fused Adam (the optimizer `runtime.train` builds) against
  Kingma & Ba's Algorithm 1, and the EMA update, on explicit tensors.
* ema_decay_at: the EMA decay with and without its warm-up, n given as the trainer holds it
  (Adam's step count, a 0-d float32 tensor), from the first updates to n = 2^24.
* train_step: `runtime.train.train_step` itself (the function the CLI's loop calls each
  iteration) on explicit batch, t, noise, parameters, Adam state and EMA of a small ε-, x0- or
  v-network (with or without min-SNR-γ, with or without the EMA warm-up); the
  spec side gets its gradient by central differences of `train_loss`, coordinate by coordinate.
  Compared: loss, parameters after the Adam step, Adam's moments and step count, EMA, and the
  finite flag. Plans with a NaN in the noise check the guard: nothing changes. Adam's state is
  never fresh here (step ≥ 1, v ≥ 1e-6): a first step moves each weight by lr·g/(|g| + ε),
  essentially lr·sign(g), which a central difference cannot resolve where |g| ≲ 1e-8 (seen:
  a FiLM stem weight with |g| ~ 1e-8); the first step is checked by `adam_step`, on explicit
  gradients.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

import runtime.model
import runtime.train
import spec.model
import spec.prediction
import spec.train
from conformance import strategies as S
from conformance.markers import Arr, Call, Cfg, Params, Sched
from conformance.plans import PREDICTION_NAMES
from conformance.record import Plan, Records
from conformance.tolerances import Tol

FD_STEP = 1e-7
"""Central-difference step along a unit direction (float64): truncation ~h²·|L'''| ≈ 1e-13,
rounding ~1e-16·|L|/h ≈ 1e-9."""

FD_TOL = Tol(
    rtol=1e-5, atol=1e-6,
    reason="the spec's side is a central difference of the float64 spec loss with step 1e-7: "
    "rounding of L (~1e-16·|L| per evaluation, summed over a conv net) divided by 2h gives "
    "~1e-8, and a ReLU kink within 1e-7 of a pre-activation (probability ~1e-4 per example) "
    "would bend one difference; the same tolerance holds the parameters Adam moves by up to lr",
)

ONLY_F64 = ("the gradient is checked against finite differences of the spec loss, which need "
            "float64; the step's float32 arithmetic is the model's and Adam's, checked by the "
            "eps_film_net/eps_pred_loss records and by adam_step in float32")


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def _spec_net(kind: str, cfg: Any, params: dict[str, np.ndarray], prediction: str = "eps") -> Any:
    if kind == "film":
        net = spec.model.eps_film_net(cfg, params)
    elif kind == "residual":
        net = spec.model.eps_residual_conv_net(params)
    else:
        net = spec.model.eps_conv_net(params)
    return spec.prediction.PredictionModel(net, prediction)


# the min-SNR-γ of a plan: none, the paper's 5, or any γ > 0
gammas = st.one_of(st.none(), st.just(5.0), st.floats(0.5, 20.0))


def _cfg_marker(kind: str, channels: int, hidden: int, blocks: int, groups: int) -> Cfg:
    if kind == "film":
        return Cfg("EpsFiLMNetConfig", {"data_channels": channels, "hidden_channels": hidden,
                                        "residual_blocks": blocks, "embed_dim": 4,
                                        "groups": groups})
    return Cfg("EpsConvNetConfig", {"data_channels": channels, "hidden_channels": hidden,
                                    "residual_blocks": 0 if kind == "conv" else blocks})


def _init(cfg: Cfg, seed: int) -> dict[str, np.ndarray]:
    spec_cfg = getattr(spec.model, cfg.name)(**cfg.fields)
    if cfg.name == "EpsFiLMNetConfig":
        return spec.model.init_film_params(spec_cfg, seed)
    return spec.model.init_params(spec_cfg, seed)


def _directions(seed: int, shapes: dict[str, tuple], n: int) -> list[dict[str, np.ndarray]]:
    """n random directions in parameter space, each of unit Euclidean norm."""
    rng = _rng(seed, 99)
    out = []
    for _ in range(n):
        d = {k: rng.standard_normal(s) for k, s in shapes.items()}
        norm = np.sqrt(sum(float((v * v).sum()) for v in d.values()))
        out.append({k: v / norm for k, v in d.items()})
    return out


def _runtime_model(cfg: Any, params: dict[str, torch.Tensor]) -> torch.nn.Module:
    first = next(iter(params.values()))
    return runtime.model.from_spec_params(cfg, params, dtype=first.dtype,
                                          device=first.device).train()


# --- train_loss ------------------------------------------------------------------------------


@st.composite
def _loss_plans(draw: Any) -> Plan:
    plan: Plan = {"B": draw(S.batch_sizes), "shape": draw(S.image_shapes),
                  "schedule": draw(S.beta_schedules(30)), "seed": draw(S.seeds),
                  "kind": draw(st.sampled_from(["conv", "residual", "film"])),
                  "blocks": draw(st.integers(0, 2)), "groups": draw(st.sampled_from([1, 2, 4]))}
    T = plan["schedule"]["T"]
    plan["t"] = draw(st.lists(st.integers(1, T), min_size=plan["B"], max_size=plan["B"]))
    plan["weighted"] = draw(st.booleans())
    plan["prediction"] = draw(st.sampled_from(PREDICTION_NAMES))
    plan["gamma"] = draw(gammas)
    return plan


def _batch(p: Plan) -> tuple[np.ndarray, np.ndarray]:
    rng = _rng(p["seed"], 1)
    x01 = rng.integers(0, 17, size=(p["B"], *p["shape"])) / 16.0  # data on the digits' grid
    return x01, rng.standard_normal((p["B"], *p["shape"]))


def _loss_call(p: Plan) -> Call:
    cfg = _cfg_marker(p["kind"], p["shape"][0], S.HIDDEN, p["blocks"], p["groups"])
    x01, noise = _batch(p)
    weights = _rng(p["seed"], 2).uniform(0.1, 2.0, p["B"]) if p["weighted"] else None
    return Call([Sched(S.betas_of(p["schedule"])), p["kind"], cfg, Params(_init(cfg, p["seed"])),
                 Arr(x01), list(p["t"]), Arr(noise),
                 None if weights is None else Arr(weights), p["seed"],
                 p.get("prediction", "eps"), p.get("gamma")])


def _spec_loss_and_slopes(sched, kind, cfg, params, x01, t, eps, weights, seed, prediction,
                          gamma) -> Any:
    """(L, [dL(θ + h·d)/dh at 0 by central differences, for 3 unit directions d])."""

    def loss(p: dict[str, np.ndarray]) -> float:
        return float(spec.train.train_loss(sched, _spec_net(kind, cfg, p, prediction), x01, t,
                                           eps, weights, gamma))

    slopes = []
    for d in _directions(seed, {k: v.shape for k, v in params.items()}, 3):
        plus = loss({k: v + FD_STEP * d[k] for k, v in params.items()})
        minus = loss({k: v - FD_STEP * d[k] for k, v in params.items()})
        slopes.append((plus - minus) / (2 * FD_STEP))
    return loss(params), np.array(slopes)


def _runtime_loss_and_slopes(sched, kind, cfg, params, x01, t, eps, weights, seed, prediction,
                             gamma) -> Any:
    """(L, [⟨∇L, d⟩ from autograd, for the same 3 directions])."""
    model = _runtime_model(cfg, params)
    t = torch.tensor(t, dtype=torch.long, device=x01.device)
    loss, _ = runtime.train.train_loss(sched, model, x01, t, eps, weights, prediction=prediction,
                                       min_snr_gamma=gamma)
    names = [n for n, _ in model.named_parameters()]
    params_list = [p for _, p in model.named_parameters()]
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(
        params_list, torch.autograd.grad(loss, params_list, allow_unused=True), strict=True)]
    shapes = {n: tuple(g.shape) for n, g in zip(names, grads, strict=True)}
    slopes = [sum(float((g.double().cpu() * torch.from_numpy(d[n])).sum())
                  for n, g in zip(names, grads, strict=True))
              for d in _directions(seed, shapes, 3)]
    return loss, np.array(slopes)


# --- flow_train_loss -------------------------------------------------------------------------


class _SpecVelocity:
    """A spec network (`_spec_net`: its raw output, `.output(x, t)`) read as a velocity v̂(x, σ),
    σ its time input."""

    def __init__(self, net: Any) -> None:
        self.net = net

    def velocity(self, x: np.ndarray, sigma: float) -> np.ndarray:
        return self.net.output(x, sigma)


@st.composite
def _flow_loss_plans(draw: Any) -> Plan:
    plan: Plan = {"B": draw(S.batch_sizes), "shape": draw(S.image_shapes), "seed": draw(S.seeds),
                  "kind": draw(st.sampled_from(["conv", "residual", "film"])),
                  "blocks": draw(st.integers(0, 2)), "groups": draw(st.sampled_from([1, 2, 4]))}
    unit = st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0))
    plan["sigma"] = draw(st.lists(unit, min_size=plan["B"], max_size=plan["B"]))
    return plan


def _flow_loss_call(p: Plan) -> Call:
    cfg = _cfg_marker(p["kind"], p["shape"][0], S.HIDDEN, p["blocks"], p["groups"])
    x01, noise = _batch(p)
    return Call([p["kind"], cfg, Params(_init(cfg, p["seed"])), Arr(x01), list(p["sigma"]),
                 Arr(noise), p["seed"]])


def _spec_flow_loss_and_slopes(kind, cfg, params, x01, sigma, eps, seed) -> Any:
    """(L, [dL(θ + h·d)/dh at 0 by central differences, for 3 unit directions d])."""

    def loss(p: dict[str, np.ndarray]) -> float:
        return float(spec.train.flow_train_loss(_SpecVelocity(_spec_net(kind, cfg, p)), x01,
                                                sigma, eps))

    slopes = []
    for d in _directions(seed, {k: v.shape for k, v in params.items()}, 3):
        plus = loss({k: v + FD_STEP * d[k] for k, v in params.items()})
        minus = loss({k: v - FD_STEP * d[k] for k, v in params.items()})
        slopes.append((plus - minus) / (2 * FD_STEP))
    return loss(params), np.array(slopes)


def _runtime_flow_loss_and_slopes(kind, cfg, params, x01, sigma, eps, seed) -> Any:
    """(L, [⟨∇L, d⟩ from autograd, for the same 3 directions])."""
    model = _runtime_model(cfg, params)
    sigma = torch.tensor(sigma, dtype=x01.dtype, device=x01.device)
    loss, _ = runtime.train.flow_train_loss(model, x01, sigma, eps)
    names = [n for n, _ in model.named_parameters()]
    params_list = [p for _, p in model.named_parameters()]
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(
        params_list, torch.autograd.grad(loss, params_list, allow_unused=True), strict=True)]
    shapes = {n: tuple(g.shape) for n, g in zip(names, grads, strict=True)}
    slopes = [sum(float((g.double().cpu() * torch.from_numpy(d[n])).sum())
                  for n, g in zip(names, grads, strict=True))
              for d in _directions(seed, shapes, 3)]
    return loss, np.array(slopes)


# --- adam_step, ema_update, ema_decay_at ------------------------------------------------------

_tensor_plans = st.fixed_dictionaries({
    "shapes": st.lists(S.array_shapes, min_size=1, max_size=3), "seed": S.seeds,
    "step": st.sampled_from([0, 1, 7, 1000]), "lr": st.sampled_from([1e-3, 2e-3, 0.1]),
    "beta1": st.sampled_from([0.9, 0.5]), "beta2": st.sampled_from([0.999, 0.99]),
    "eps": st.sampled_from([1e-8, 1e-3]), "decay": st.sampled_from([0.0, 0.5, 0.995, 0.9999])})

# n from the first updates (where the warm-up is below every decay but 0) to 2^24 (where it is
# above all of them, and float32 still counts exactly)
_decay_plans = st.fixed_dictionaries({
    "decay": st.sampled_from([0.0, 0.5, 0.9, 0.99, 0.995, 0.999, 0.9999]),
    "n": st.one_of(st.integers(1, 20), st.integers(1, 2**24)), "warmup": st.booleans()})


def _named(p: Plan, stream: int, scale: float = 1.0, positive: bool = False) -> dict:
    rng = _rng(p["seed"], stream)
    out = {}
    for i, shape in enumerate(p["shapes"]):
        a = scale * rng.standard_normal(tuple(shape))
        out[f"w{i}"] = a * a if positive else a
    return out


def _adam_call(p: Plan) -> Call:
    fresh = p["step"] == 0
    m = {k: 0 * v for k, v in _named(p, 3).items()} if fresh else _named(p, 3, 0.1)
    v = {k: 0 * x for k, x in _named(p, 4).items()} if fresh else _named(p, 4, 0.1, True)
    return Call([Params(_named(p, 1)), Params(_named(p, 2)), Params(m), Params(v), p["step"],
                 p["lr"], p["beta1"], p["beta2"], p["eps"]])


def _spec_adam(params, grads, m, v, step, lr, b1, b2, eps) -> Any:
    new, state = spec.train.adam_step(params, grads, {"step": step, "m": m, "v": v}, lr, b1, b2,
                                      eps)
    return new, state["m"], state["v"], state["step"]


def _runtime_adam(params, grads, m, v, step, lr, b1, b2, eps) -> Any:
    new, state = runtime.train.adam_step(params, grads, {"step": step, "m": m, "v": v}, lr, b1,
                                         b2, eps)
    return new, state["m"], state["v"], state["step"]


def _runtime_decay_at(decay, n, warmup) -> Any:
    """n as GuardedUpdate holds it: Adam's step count, a 0-d float32 tensor."""
    return runtime.train.ema_decay_at(decay, torch.tensor(float(n), dtype=torch.float32), warmup)


def _runtime_ema(ema, params, decay) -> Any:
    names = list(ema)
    out = runtime.train.ema_update([ema[n].clone() for n in names], [params[n] for n in names],
                                   decay)
    return dict(zip(names, out, strict=True))


# --- train_step ------------------------------------------------------------------------------


@st.composite
def _step_plans(draw: Any) -> Plan:
    plan: Plan = {"B": draw(st.integers(1, 2)), "shape": [1, 3, draw(st.integers(3, 4))],
                  "schedule": draw(S.beta_schedules(20)), "seed": draw(S.seeds),
                  "kind": draw(st.sampled_from(["conv", "residual", "film"])),
                  "blocks": draw(st.integers(1, 1)),
                  "step": draw(st.sampled_from([1, 3])), "lr": draw(st.sampled_from([1e-3, 0.05])),
                  "decay": draw(st.sampled_from([0.0, 0.9, 0.995])),
                  "sync_free": draw(st.booleans()), "nan": draw(st.booleans()),
                  "ema_warmup": draw(st.booleans()),
                  "prediction": draw(st.sampled_from(PREDICTION_NAMES)), "gamma": draw(gammas)}
    T = plan["schedule"]["T"]
    plan["t"] = draw(st.lists(st.integers(1, T), min_size=plan["B"], max_size=plan["B"]))
    return plan


def _step_call(p: Plan) -> Call:
    cfg = _cfg_marker(p["kind"], p["shape"][0], 1, p["blocks"], 1)
    params = _init(cfg, p["seed"])
    x01, noise = _batch(p)
    if p["nan"]:
        noise[0, 0, 0, 0] = np.nan  # loss and every gradient NaN: the guard must hold
    rng = _rng(p["seed"], 5)
    m = {k: 0.01 * rng.standard_normal(v.shape) for k, v in params.items()}
    v = {k: 1e-4 * rng.standard_normal(v.shape) ** 2 + 1e-6 for k, v in params.items()}
    ema = {k: v + 0.01 * rng.standard_normal(v.shape) for k, v in params.items()}
    return Call([Sched(S.betas_of(p["schedule"])), p["kind"], cfg, Params(params), Params(m),
                 Params(v), p["step"], Params(ema), Arr(x01), list(p["t"]), Arr(noise),
                 p["lr"], p["decay"], p["sync_free"], p.get("prediction", "eps"), p.get("gamma"),
                 p.get("ema_warmup", False)])


def _fd_gradient(loss, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """∂L/∂θ by central differences, one coordinate at a time (float64, step 1e-7)."""
    grads = {}
    for name, value in params.items():
        g = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            shifted = dict(params)
            for sign in (1.0, -1.0):
                moved = value.copy()
                moved[idx] += sign * FD_STEP
                shifted[name] = moved
                g[idx] += sign * loss(shifted) / (2 * FD_STEP)
        grads[name] = g
    return grads


def _spec_step(sched, kind, cfg, params, m, v, step, ema, x01, t, eps, lr, decay, sync_free,
               prediction, gamma, ema_warmup):
    def net(p: dict[str, np.ndarray]) -> Any:
        return _spec_net(kind, cfg, p, prediction)

    def loss(p: dict[str, np.ndarray]) -> float:
        return float(spec.train.train_loss(sched, net(p), x01, t, eps, min_snr_gamma=gamma))

    grads = _fd_gradient(loss, params) if np.isfinite(eps).all() else \
        {k: np.full_like(a, np.nan) for k, a in params.items()}
    out = spec.train.train_step(sched, net, params, grads, {"step": step, "m": m, "v": v},
                                ema if decay > 0 else None, x01, t, eps, lr, decay,
                                min_snr_gamma=gamma, ema_warmup=ema_warmup)
    loss_value, new_params, state, new_ema, finite = out
    return (loss_value, new_params, state["m"], state["v"], float(state["step"]),
            new_ema if new_ema is not None else {}, finite)


def _runtime_step(sched, kind, cfg, params, m, v, step, ema, x01, t, eps, lr, decay, sync_free,
                  prediction, gamma, ema_warmup):
    model = _runtime_model(cfg, params)
    update = runtime.train.GuardedUpdate(model, lr, decay, x01.device, sync_free=sync_free,
                                         ema_warmup=ema_warmup)
    named = dict(model.named_parameters())
    for name, p in named.items():
        update.optimizer.state[p]["step"].fill_(float(step))
        update.optimizer.state[p]["exp_avg"].copy_(m[name])
        update.optimizer.state[p]["exp_avg_sq"].copy_(v[name])
    if update.ema is not None:
        update.load_ema_state_dict(model, ema)
    t = torch.tensor(t, dtype=torch.long, device=x01.device)
    result = runtime.train.train_step(sched, model, update, x01, t, eps, prediction=prediction,
                                      min_snr_gamma=gamma)
    state = {n: update.optimizer.state[p] for n, p in named.items()}
    ema_after = update.ema_state_dict(model) if update.ema is not None else {}
    return (result.loss, {n: p.detach() for n, p in named.items()},
            {n: s["exp_avg"] for n, s in state.items()},
            {n: s["exp_avg_sq"] for n, s in state.items()},
            float(next(iter(state.values()))["step"]), ema_after, bool(result.finite))


RECORDS = Records()
record = RECORDS.add

record(
    name="train_loss", plan=_loss_plans(), build=_loss_call, batched=False,
    spec_fn=_spec_loss_and_slopes, runtime_fn=_runtime_loss_and_slopes,
    dtypes=("float64",), dtypes_reason=ONLY_F64, tolerances={"float64": FD_TOL},
    max_examples=12,
)
record(
    name="flow_train_loss", plan=_flow_loss_plans(), build=_flow_loss_call, batched=False,
    spec_fn=_spec_flow_loss_and_slopes, runtime_fn=_runtime_flow_loss_and_slopes,
    dtypes=("float64",), dtypes_reason=ONLY_F64, tolerances={"float64": FD_TOL},
    max_examples=12,
)
record(
    name="adam_step", plan=_tensor_plans, build=_adam_call, batched=False,
    spec_fn=_spec_adam, runtime_fn=_runtime_adam, dtypes=("float64", "float32"),
    dtypes_reason="the optimizer updates float32 (training) or float64 parameters; "
    "bfloat16 parameters are never trained here",
)
record(
    name="ema_update", plan=_tensor_plans, batched=False,
    build=lambda p: Call([Params(_named(p, 1)), Params(_named(p, 2)), p["decay"]]),
    runtime_fn=_runtime_ema, dtypes=("float64", "float32"),
    dtypes_reason="EMA weights are kept in float32 (float64 for a float64 model)",
)
record(
    name="ema_decay_at", plan=_decay_plans, batched=False,
    build=lambda p: Call([p["decay"], p["n"], p["warmup"]]), runtime_fn=_runtime_decay_at,
    dtypes=("float64",), dtypes_reason="the decay is computed in float64 whatever the EMA's "
    "dtype (ema_update rounds its weight 1 − d_n once, to the EMA's dtype)",
)
record(
    name="train_step", plan=_step_plans(), build=_step_call,
    batched=False, spec_fn=_spec_step, runtime_fn=_runtime_step, dtypes=("float64",),
    dtypes_reason=ONLY_F64, tolerances={"float64": FD_TOL}, max_examples=4,
)
