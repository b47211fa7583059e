"""Running one conformance case: argument markers, the two conversions, the comparison, and the
one-line reproduction printed on failure.

A record's builder returns a `Call`: positional and keyword arguments in which some values are
*markers* saying how each side receives them:

    Batched(a, axis)   an array with a batch axis: the runtime gets the whole tensor, the spec
                       is called once per sample with a.take(i, axis);
    PerSample(ts)      a time index per sample: runtime LongTensor (B,), spec int ts[i];
    Times(ts)          a continuous time per sample: runtime float tensor (B,), spec float ts[i];
    Arr(a)             an array both sides get whole (a tensor for the runtime);
    Seq(a)             a sequence of arrays: a list for the spec, a stacked tensor for the runtime;
    Sched(betas)       spec.schedule.VPSchedule(betas) / runtime.schedule.Schedule(betas, dtype);
    PFSched(b0, b1)    the continuous VP schedule of each side;
    Model(kind, …)     an ε-model: the spec network / runtime module built from ONE dict of
                       parameters, or the closed-form Gaussian denoiser of each side;
    Params(dict)       a parameter dict: NumPy arrays for the spec, tensors for the runtime;
    Cfg(name, fields)  a config dataclass of each side (spec.model.X / runtime.model.X);
    Fn(np_fn, torch_fn) a function written once per side.

Every floating input is rounded to the runtime's dtype before the spec sees it, so a low-precision
result is judged against float64 arithmetic on the very same inputs.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import runtime.model as runtime_model
import runtime.pf_ode as runtime_pf_ode
import runtime.schedule as runtime_schedule
import spec.model as spec_model
import spec.pf_ode as spec_pf_ode
import spec.prediction as spec_prediction
import spec.schedule as spec_schedule
from conformance.gaussian import GaussianData, GaussianDenoiserNumpy, GaussianDenoiserTorch
from conformance.tolerances import DTYPES, TOLERANCES, Tol

# ---------------------------------------------------------------------------------------------
# Markers


@dataclass(frozen=True)
class Batched:
    value: np.ndarray
    axis: int = 0


@dataclass(frozen=True)
class PerSample:
    values: list[int]


@dataclass(frozen=True)
class Times:
    values: list[float]


@dataclass(frozen=True)
class Arr:
    value: np.ndarray


@dataclass(frozen=True)
class Seq:
    """A sequence of arrays along axis 0: a Python list of arrays for the spec (its annotation
    is Sequence), one stacked tensor for the runtime."""

    value: np.ndarray


@dataclass(frozen=True)
class Sched:
    betas: np.ndarray


@dataclass(frozen=True)
class PFSched:
    beta0: float
    beta1: float


@dataclass(frozen=True)
class Model:
    kind: str  # "gauss", "conv", "residual" or "film"
    cfg: Any = None  # spec config (networks)
    params: dict[str, np.ndarray] | None = None  # spec parameters (networks)
    data: GaussianData | None = None  # Gaussian denoiser
    prediction: str = "eps"  # what a network predicts (the Gaussian denoiser: data.prediction)


@dataclass(frozen=True)
class Params:
    value: dict[str, np.ndarray]


@dataclass(frozen=True)
class Cfg:
    name: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class Fn:
    np_fn: Callable[..., Any]
    torch_fn: Callable[..., Any]
    label: str = "fn"


@dataclass
class Call:
    args: list[Any]
    kwargs: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Conversions


def round_to(a: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """a rounded to `dtype` and back to float64 (what the spec is given)."""
    a = np.asarray(a)
    if a.dtype.kind != "f":
        return a
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).to(dtype).double().numpy()


def _spec_model(m: Model, dtype: torch.dtype) -> Any:
    if m.kind == "gauss":
        return GaussianDenoiserNumpy(m.data)
    params = {k: round_to(v, dtype) for k, v in m.params.items()}
    if m.kind == "film":
        net = spec_model.eps_film_net(m.cfg, params)
    elif m.kind == "residual":
        net = spec_model.eps_residual_conv_net(params)
    else:
        net = spec_model.eps_conv_net(params)
    # An ε-network stays a plain EpsModel (TorchLean's interface); others declare what they predict.
    return net if m.prediction == "eps" else spec_prediction.PredictionModel(net, m.prediction)


def _runtime_model(m: Model, dtype: torch.dtype, device: str) -> Any:
    if m.kind == "gauss":
        return GaussianDenoiserTorch(m.data, device)
    module = runtime_model.from_spec_params(m.cfg, m.params, dtype=dtype, device=device).eval()
    module.prediction = m.prediction
    return module


def spec_static(a: Any, dtype: torch.dtype) -> Any:
    """Convert the markers that do not depend on the sample index."""
    if isinstance(a, Sched):
        return spec_schedule.VPSchedule(np.asarray(a.betas, dtype=np.float64))
    if isinstance(a, PFSched):
        return spec_pf_ode.VPLinearSchedule(a.beta0, a.beta1)
    if isinstance(a, Model):
        return _spec_model(a, dtype)
    if isinstance(a, Params):
        return {k: round_to(v, dtype) for k, v in a.value.items()}
    if isinstance(a, Cfg):
        return getattr(spec_model, a.name)(**a.fields)
    if isinstance(a, Fn):
        return a.np_fn
    if isinstance(a, Arr):
        return round_to(a.value, dtype)
    if isinstance(a, Seq):
        return list(round_to(a.value, dtype))
    if isinstance(a, Batched):
        return Batched(round_to(a.value, dtype), a.axis)
    if isinstance(a, Times):
        return Times(list(round_to(np.asarray(a.values, dtype=np.float64), dtype)))
    return a


def spec_sample(a: Any, i: int | None) -> Any:
    """Select sample i of a (static-converted) argument (i None: unbatched call)."""
    if isinstance(a, Batched):
        return a.value if i is None else np.take(a.value, i, axis=a.axis)
    if isinstance(a, PerSample):
        return [int(v) for v in a.values] if i is None else int(a.values[i])
    if isinstance(a, Times):
        return [float(v) for v in a.values] if i is None else float(a.values[i])
    return a


def to_runtime(a: Any, dtype: torch.dtype, device: str) -> Any:
    """The runtime's version of an argument."""
    if isinstance(a, (Batched, Arr, Seq)):
        value = np.asarray(a.value)
        if value.dtype.kind == "f":
            return torch.tensor(value, dtype=torch.float64).to(dtype=dtype, device=device)
        return torch.tensor(value, device=device)
    if isinstance(a, PerSample):
        return torch.tensor(a.values, dtype=torch.long, device=device)
    if isinstance(a, Times):
        return torch.tensor(a.values, dtype=torch.float64).to(dtype=dtype, device=device)
    if isinstance(a, Sched):
        return runtime_schedule.Schedule(torch.from_numpy(np.asarray(a.betas)), dtype, device)
    if isinstance(a, PFSched):
        return runtime_pf_ode.VPLinearSchedule(a.beta0, a.beta1)
    if isinstance(a, Model):
        return _runtime_model(a, dtype, device)
    if isinstance(a, Params):
        return {
            k: torch.tensor(v, dtype=torch.float64).to(dtype=dtype, device=device)
            for k, v in a.value.items()
        }
    if isinstance(a, Cfg):
        return getattr(runtime_model, a.name)(**a.fields)
    if isinstance(a, Fn):
        return a.torch_fn
    return a


def to_numpy(x: Any) -> Any:
    """Runtime output -> NumPy (float tensors as float64), recursively through containers."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return x.double().numpy() if x.is_floating_point() else x.numpy()
    if isinstance(x, (list, tuple)):
        return type(x)(to_numpy(v) for v in x)
    if isinstance(x, dict):
        return {k: to_numpy(v) for k, v in x.items()}
    return x


def stack(outs: list[Any]) -> Any:
    """Per-sample spec outputs -> one batched value (tuples/lists elementwise)."""
    first = outs[0]
    if isinstance(first, (list, tuple)):
        return type(first)(stack([o[j] for o in outs]) for j in range(len(first)))
    return np.stack([np.asarray(o) for o in outs])


def batch_size(call: Call) -> int:
    for a in [*call.args, *call.kwargs.values()]:
        if isinstance(a, Batched):
            return int(np.asarray(a.value).shape[a.axis])
        if isinstance(a, (PerSample, Times)):
            return len(a.values)
    raise ValueError("a batched record's call has no batched argument")


def sub_batch(call: Call, index: list[int]) -> Call:
    """The call restricted to the samples `index` (for the batch-size independence test)."""

    def take(a: Any) -> Any:
        if isinstance(a, Batched):
            return Batched(np.take(a.value, index, axis=a.axis), a.axis)
        if isinstance(a, PerSample):
            return PerSample([a.values[i] for i in index])
        if isinstance(a, Times):
            return Times([a.values[i] for i in index])
        return a

    return Call([take(a) for a in call.args], {k: take(v) for k, v in call.kwargs.items()})


# ---------------------------------------------------------------------------------------------
# Comparison


class Mismatch(AssertionError):
    pass


def compare(expected: Any, actual: Any, tol: Tol, where: str = "out") -> None:
    """Raise Mismatch unless actual matches expected elementwise within tol (recursively)."""
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            raise Mismatch(f"{where}: expected a sequence of {len(expected)}, got {type(actual).__name__}"
                           f" of {len(actual) if isinstance(actual, (list, tuple)) else '-'}")
        for j, (e, a) in enumerate(zip(expected, actual, strict=True)):
            compare(e, a, tol, f"{where}[{j}]")
        return
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or list(actual) != list(expected):
            raise Mismatch(f"{where}: keys differ: expected {list(expected)}, got "
                           f"{list(actual) if isinstance(actual, dict) else type(actual).__name__}")
        for k in expected:
            compare(expected[k], actual[k], tol, f"{where}[{k!r}]")
        return
    e, a = np.asarray(expected), np.asarray(actual)
    if e.dtype.kind not in "fc":
        if e.shape != a.shape or not np.array_equal(e, a):
            raise Mismatch(f"{where}: expected exactly {expected!r}, got {actual!r}")
        return
    if e.shape != a.shape:
        raise Mismatch(f"{where}: shape: expected {e.shape}, got {a.shape}")
    e, a = e.astype(np.float64), a.astype(np.float64)
    both_nan = np.isnan(e) & np.isnan(a)
    err = np.abs(a - e)
    bad = ~((err <= tol.atol + tol.rtol * np.abs(e)) | both_nan | (e == a))
    if bad.any():
        ratio = np.where(bad, err / (tol.atol + tol.rtol * np.abs(e)), 0.0)
        ratio = np.nan_to_num(ratio, nan=np.inf)
        idx = np.unravel_index(int(np.argmax(ratio)), e.shape) if e.ndim else ()
        raise Mismatch(
            f"{where}: {int(bad.sum())}/{e.size} elements outside |a-e| <= {tol.atol:g} + "
            f"{tol.rtol:g}*|e|; worst at {tuple(int(i) for i in idx)}: runtime {a[idx]!r}, "
            f"spec {e[idx]!r}, |a-e| = {err[idx]!r}"
        )


# ---------------------------------------------------------------------------------------------
# Description and reproduction


def describe_arg(a: Any) -> str:
    if isinstance(a, (Batched, Arr, Seq)):
        return "x".join(str(s) for s in np.shape(a.value)) or "()"
    if isinstance(a, PerSample):
        return f"per-sample{list(a.values)}"
    if isinstance(a, Times):
        return f"per-sample{[round(float(v), 6) for v in a.values]}"
    if isinstance(a, Sched):
        return f"T={len(a.betas)}"
    if isinstance(a, PFSched):
        return f"VPLinear({a.beta0:g},{a.beta1:g})"
    if isinstance(a, Model):
        kind = a.kind if a.cfg is None else f"{a.kind}{dataclasses.astuple(a.cfg)}"
        prediction = a.data.prediction if a.data is not None else a.prediction
        return kind if prediction == "eps" else f"{kind}[{prediction}]"
    if isinstance(a, Params):
        return f"params[{len(a.value)}]"
    if isinstance(a, Cfg):
        return f"{a.name}{tuple(a.fields.values())}"
    if isinstance(a, Fn):
        return a.label
    if isinstance(a, float):
        return f"{a:g}"
    return repr(a)


def describe(call: Call, fn: Callable[..., Any] | None) -> str:
    names: list[str] = []
    if fn is not None:
        try:
            names = list(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            names = []
    parts = []
    for j, a in enumerate(call.args):
        name = names[j] if j < len(names) else f"arg{j}"
        parts.append(f"{name}={describe_arg(a)}")
    parts += [f"{k}={describe_arg(v)}" for k, v in call.kwargs.items()]
    return " ".join(parts)


def repro_line(name: str, dtype: str, device: str, plan: Any, shapes: str, test: str = "spec") -> str:
    seed = plan.get("seed") if isinstance(plan, dict) else None
    plan_json = json.dumps(plan, separators=(",", ":"))
    check = "" if test == "spec" else f" --check {test}"
    return (
        f"REPRO {name} dtype={dtype} device={device} seed={seed} {shapes} | "
        f"python -m conformance {name} --dtype {dtype} --device {device}{check} --plan '{plan_json}'"
    )


def tolerance(record: Any, dtype: str) -> Tol:
    return record.tolerances.get(dtype, TOLERANCES[dtype])


# ---------------------------------------------------------------------------------------------
# Running a case


def spec_result(record: Any, call: Call, dtype_name: str) -> Any:
    """The spec's float64 answer on the inputs rounded to `dtype_name`: per sample (stacked, or
    averaged for reduce="mean") when the record is batched, else one call."""
    dtype = DTYPES[dtype_name]
    args = [spec_static(a, dtype) for a in call.args]
    kwargs = {k: spec_static(v, dtype) for k, v in call.kwargs.items()}
    fn = record.spec_callable()
    if not record.batched:
        return fn(*[spec_sample(a, None) for a in args],
                  **{k: spec_sample(v, None) for k, v in kwargs.items()})
    outs = [
        fn(*[spec_sample(a, i) for a in args], **{k: spec_sample(v, i) for k, v in kwargs.items()})
        for i in range(batch_size(call))
    ]
    if record.reduce == "mean":
        return np.mean(np.stack([np.asarray(o, dtype=np.float64) for o in outs]))
    return stack(outs)


def runtime_result(record: Any, call: Call, dtype: str, device: str) -> Any:
    """The runtime's answer, as NumPy (after the record's `post` reshaping, if any)."""
    tdtype = DTYPES[dtype]
    args = [to_runtime(a, tdtype, device) for a in call.args]
    kwargs = {k: to_runtime(v, tdtype, device) for k, v in call.kwargs.items()}
    out = to_numpy(record.runtime_callable()(*args, **kwargs))
    if record.post is not None:
        out = record.post(out, call)
    return out


def run_case(record: Any, plan: Any, dtype: str, device: str) -> None:
    """Build the call from plan, run both sides, compare; any failure is re-raised as a Mismatch
    whose first line is the one-line reproduction."""
    call = record.build(plan)
    shapes = describe(call, record.spec_callable())
    try:
        expected = spec_result(record, call, dtype)
        actual = runtime_result(record, call, dtype, device)
        compare(expected, actual, tolerance(record, dtype))
    except Exception as exc:  # noqa: BLE001 - every failure gets the reproduction line
        raise Mismatch(
            f"{repro_line(record.name, dtype, device, plan, shapes)}\n"
            f"{type(exc).__name__}: {exc}"
        ) from exc


def run_batch_independence(record: Any, plan: Any, dtype: str, device: str) -> None:
    """Sample i of a batched run equals the run on sample i alone (per-sample noise given)."""
    call = record.build(plan)
    shapes = describe(call, record.spec_callable())
    try:
        full = runtime_result(record, call, dtype, device)
        for i in range(batch_size(call)):
            alone = runtime_result(record, sub_batch(call, [i]), dtype, device)
            compare(np.asarray(full)[i : i + 1], alone, tolerance(record, dtype), f"sample {i}")
    except Exception as exc:  # noqa: BLE001
        raise Mismatch(
            f"{repro_line(record.name, dtype, device, plan, shapes, 'batch')}\n"
            f"{type(exc).__name__}: {exc}"
        ) from exc


__all__ = [
    "DTYPES",
    "run_batch_independence",
    "run_case",
    "Arr",
    "Batched",
    "Call",
    "Cfg",
    "Fn",
    "Mismatch",
    "Model",
    "PFSched",
    "Params",
    "PerSample",
    "Sched",
    "Seq",
    "Times",
    "batch_size",
    "compare",
    "describe",
    "repro_line",
    "spec_sample",
    "spec_static",
    "stack",
    "sub_batch",
    "to_numpy",
    "to_runtime",
    "tolerance",
]
