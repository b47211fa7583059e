"""Argument markers: how one argument of a record's `Call` reaches each side.

A record's builder returns a `Call` whose values are plain Python values (given to both sides
as they are) or *markers*. Each marker carries its own conversions:

    for_spec(dtype)            the spec's value, its floating inputs rounded to `dtype` (so a
                               low-precision result is judged against float64 arithmetic on the
                               very same inputs);
    for_runtime(dtype, device) the runtime's value (tensors of `dtype` on `device`);
    describe()                 a few characters for the REPRO line.

Markers with a batch axis (`BatchMarker`) also give the spec one sample at a time
(`sample(i)`), their batch size (`size()`) and a sub-batch (`take(index)`).

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
    Velocity(model)    a flow velocity model (spec.flow): a network Model read as v̂(x, σ), fed
                       σ as its time (spec `.velocity`, runtime the module itself);
    Params(dict)       a parameter dict: NumPy arrays for the spec, tensors for the runtime;
    Cfg(name, fields)  a config dataclass of each side (spec.model.X / runtime.model.X);
    Fn(np_fn, torch_fn) a function written once per side.

A new kind of argument is one more subclass here, with its three (or, batched, six) methods;
nothing else in the harness changes.
"""

from __future__ import annotations

import dataclasses
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


def round_to(a: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """a rounded to `dtype` and back to float64 (what the spec is given)."""
    a = np.asarray(a)
    if a.dtype.kind != "f":
        return a
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).to(dtype).double().numpy()


def _tensor(value: Any, dtype: torch.dtype, device: str) -> torch.Tensor:
    """A float array as a `dtype` tensor (via float64); any other array keeps its dtype."""
    value = np.asarray(value)
    if value.dtype.kind == "f":
        return torch.tensor(value, dtype=torch.float64).to(dtype=dtype, device=device)
    return torch.tensor(value, device=device)


class Marker:
    """How one argument reaches each side (see the module docstring)."""

    def for_spec(self, dtype: torch.dtype) -> Any:
        raise NotImplementedError

    def for_runtime(self, dtype: torch.dtype, device: str) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class BatchMarker(Marker):
    """A marker with a batch axis: `for_spec` returns the same kind of marker (rounded), from
    which the spec takes one sample at a time."""

    def size(self) -> int:
        raise NotImplementedError

    def take(self, index: list[int]) -> BatchMarker:
        """The samples `index` only (the batch-size independence test)."""
        raise NotImplementedError

    def sample(self, i: int | None) -> Any:
        """The spec's argument for sample i (None: the whole batch, for an unbatched record)."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Arrays


@dataclass(frozen=True)
class Batched(BatchMarker):
    value: np.ndarray
    axis: int = 0

    def for_spec(self, dtype: torch.dtype) -> Batched:
        return Batched(round_to(self.value, dtype), self.axis)

    def for_runtime(self, dtype: torch.dtype, device: str) -> torch.Tensor:
        return _tensor(self.value, dtype, device)

    def describe(self) -> str:
        return "x".join(str(s) for s in np.shape(self.value)) or "()"

    def size(self) -> int:
        return int(np.asarray(self.value).shape[self.axis])

    def take(self, index: list[int]) -> Batched:
        return Batched(np.take(self.value, index, axis=self.axis), self.axis)

    def sample(self, i: int | None) -> Any:
        return self.value if i is None else np.take(self.value, i, axis=self.axis)


@dataclass(frozen=True)
class Arr(Marker):
    value: np.ndarray

    def for_spec(self, dtype: torch.dtype) -> np.ndarray:
        return round_to(self.value, dtype)

    def for_runtime(self, dtype: torch.dtype, device: str) -> torch.Tensor:
        return _tensor(self.value, dtype, device)

    def describe(self) -> str:
        return "x".join(str(s) for s in np.shape(self.value)) or "()"


@dataclass(frozen=True)
class Seq(Arr):
    """A sequence of arrays along axis 0: a Python list of arrays for the spec (its annotation
    is Sequence), one stacked tensor for the runtime."""

    def for_spec(self, dtype: torch.dtype) -> list[np.ndarray]:
        return list(round_to(self.value, dtype))


@dataclass(frozen=True)
class Params(Marker):
    value: dict[str, np.ndarray]

    def for_spec(self, dtype: torch.dtype) -> dict[str, np.ndarray]:
        return {k: round_to(v, dtype) for k, v in self.value.items()}

    def for_runtime(self, dtype: torch.dtype, device: str) -> dict[str, torch.Tensor]:
        return {
            k: torch.tensor(v, dtype=torch.float64).to(dtype=dtype, device=device)
            for k, v in self.value.items()
        }

    def describe(self) -> str:
        return f"params[{len(self.value)}]"


# ---------------------------------------------------------------------------------------------
# Times


@dataclass(frozen=True)
class PerSample(BatchMarker):
    values: list[int]

    def for_spec(self, dtype: torch.dtype) -> PerSample:
        return self  # integers: nothing to round

    def for_runtime(self, dtype: torch.dtype, device: str) -> torch.Tensor:
        return torch.tensor(self.values, dtype=torch.long, device=device)

    def describe(self) -> str:
        return f"per-sample{list(self.values)}"

    def size(self) -> int:
        return len(self.values)

    def take(self, index: list[int]) -> PerSample:
        return PerSample([self.values[i] for i in index])

    def sample(self, i: int | None) -> Any:
        return [int(v) for v in self.values] if i is None else int(self.values[i])


@dataclass(frozen=True)
class Times(BatchMarker):
    values: list[float]

    def for_spec(self, dtype: torch.dtype) -> Times:
        return Times(list(round_to(np.asarray(self.values, dtype=np.float64), dtype)))

    def for_runtime(self, dtype: torch.dtype, device: str) -> torch.Tensor:
        return torch.tensor(self.values, dtype=torch.float64).to(dtype=dtype, device=device)

    def describe(self) -> str:
        return f"per-sample{[round(float(v), 6) for v in self.values]}"

    def size(self) -> int:
        return len(self.values)

    def take(self, index: list[int]) -> Times:
        return Times([self.values[i] for i in index])

    def sample(self, i: int | None) -> Any:
        return [float(v) for v in self.values] if i is None else float(self.values[i])


# ---------------------------------------------------------------------------------------------
# Schedules, models, configs, functions


@dataclass(frozen=True)
class Sched(Marker):
    betas: np.ndarray

    def for_spec(self, dtype: torch.dtype) -> Any:
        return spec_schedule.VPSchedule(np.asarray(self.betas, dtype=np.float64))

    def for_runtime(self, dtype: torch.dtype, device: str) -> Any:
        return runtime_schedule.Schedule(torch.from_numpy(np.asarray(self.betas)), dtype, device)

    def describe(self) -> str:
        return f"T={len(self.betas)}"


@dataclass(frozen=True)
class PFSched(Marker):
    beta0: float
    beta1: float

    def for_spec(self, dtype: torch.dtype) -> Any:
        return spec_pf_ode.VPLinearSchedule(self.beta0, self.beta1)

    def for_runtime(self, dtype: torch.dtype, device: str) -> Any:
        return runtime_pf_ode.VPLinearSchedule(self.beta0, self.beta1)

    def describe(self) -> str:
        return f"VPLinear({self.beta0:g},{self.beta1:g})"


@dataclass(frozen=True)
class Model(Marker):
    kind: str  # "gauss", "conv", "residual" or "film"
    cfg: Any = None  # spec config (networks)
    params: dict[str, np.ndarray] | None = None  # spec parameters (networks)
    data: GaussianData | None = None  # Gaussian denoiser
    prediction: str = "eps"  # what a network predicts (the Gaussian denoiser: data.prediction)

    def for_spec(self, dtype: torch.dtype) -> Any:
        if self.kind == "gauss":
            return GaussianDenoiserNumpy(self.data)
        params = {k: round_to(v, dtype) for k, v in self.params.items()}
        if self.kind == "film":
            net = spec_model.eps_film_net(self.cfg, params)
        elif self.kind == "residual":
            net = spec_model.eps_residual_conv_net(params)
        else:
            net = spec_model.eps_conv_net(params)
        # An ε-network stays a plain EpsModel (TorchLean's interface); others declare what
        # they predict.
        if self.prediction == "eps":
            return net
        return spec_prediction.PredictionModel(net, self.prediction)

    def for_runtime(self, dtype: torch.dtype, device: str) -> Any:
        if self.kind == "gauss":
            return GaussianDenoiserTorch(self.data, device)
        module = runtime_model.from_spec_params(self.cfg, self.params, dtype=dtype,
                                                device=device).eval()
        module.prediction = self.prediction
        return module

    def describe(self) -> str:
        kind = self.kind if self.cfg is None else f"{self.kind}{dataclasses.astuple(self.cfg)}"
        prediction = self.data.prediction if self.data is not None else self.prediction
        return kind if prediction == "eps" else f"{kind}[{prediction}]"


@dataclass(frozen=True)
class _NetVelocity:
    """A spec network with an `.eps(x, t)` forward, read as a velocity v̂(x, σ)."""

    net: Any

    def velocity(self, x: np.ndarray, sigma: float) -> np.ndarray:
        return self.net.eps(x, sigma)


@dataclass(frozen=True)
class Velocity(Marker):
    """A velocity model of `spec.flow` from a network `Model` (declared "eps": its forward is
    taken as v̂ whatever it was initialised for; the model's time input is σ)."""

    model: Model

    def for_spec(self, dtype: torch.dtype) -> Any:
        return _NetVelocity(self.model.for_spec(dtype))

    def for_runtime(self, dtype: torch.dtype, device: str) -> Any:
        return self.model.for_runtime(dtype, device)

    def describe(self) -> str:
        return f"velocity[{self.model.describe()}]"


@dataclass(frozen=True)
class Cfg(Marker):
    name: str
    fields: dict[str, Any]

    def for_spec(self, dtype: torch.dtype) -> Any:
        return getattr(spec_model, self.name)(**self.fields)

    def for_runtime(self, dtype: torch.dtype, device: str) -> Any:
        return getattr(runtime_model, self.name)(**self.fields)

    def describe(self) -> str:
        return f"{self.name}{tuple(self.fields.values())}"


@dataclass(frozen=True)
class Fn(Marker):
    np_fn: Callable[..., Any]
    torch_fn: Callable[..., Any]
    label: str = "fn"

    def for_spec(self, dtype: torch.dtype) -> Callable[..., Any]:
        return self.np_fn

    def for_runtime(self, dtype: torch.dtype, device: str) -> Callable[..., Any]:
        return self.torch_fn

    def describe(self) -> str:
        return self.label


# ---------------------------------------------------------------------------------------------
# A call: the arguments of one case


@dataclass
class Call:
    args: list[Any]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def values(self) -> list[Any]:
        return [*self.args, *self.kwargs.values()]


def batch_size(call: Call) -> int:
    """The batch size of a call: that of its first batch marker."""
    for a in call.values():
        if isinstance(a, BatchMarker):
            return a.size()
    raise ValueError("a batched record's call has no batched argument")


def sub_batch(call: Call, index: list[int]) -> Call:
    """The call restricted to the samples `index` (for the batch-size independence test)."""

    def take(a: Any) -> Any:
        return a.take(index) if isinstance(a, BatchMarker) else a

    return Call([take(a) for a in call.args], {k: take(v) for k, v in call.kwargs.items()})


__all__ = [
    "Arr",
    "BatchMarker",
    "Batched",
    "Call",
    "Cfg",
    "Fn",
    "Marker",
    "Model",
    "PFSched",
    "Params",
    "PerSample",
    "Sched",
    "Seq",
    "Times",
    "Velocity",
    "batch_size",
    "round_to",
    "sub_batch",
]
