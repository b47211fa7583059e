"""Running one conformance case: the two conversions, the comparison, and the one-line
reproduction printed on failure.

A record's builder returns a `Call` of plain values and *markers* (`conformance.markers`); each
marker converts itself for either side (`for_spec`, `for_runtime`) and, when it has a batch
axis, gives the spec one sample at a time. Every floating input is rounded to the runtime's
dtype before the spec sees it, so a low-precision result is judged against float64 arithmetic on
the very same inputs.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from conformance.markers import BatchMarker, Call, Marker, batch_size, sub_batch
from conformance.tolerances import DTYPES, TOLERANCES, Tol, conditioned

# ---------------------------------------------------------------------------------------------
# Conversions


def spec_static(a: Any, dtype: torch.dtype) -> Any:
    """The spec's version of an argument, before a sample is chosen (plain values as they are)."""
    return a.for_spec(dtype) if isinstance(a, Marker) else a


def spec_sample(a: Any, i: int | None) -> Any:
    """Select sample i of a (static-converted) argument (i None: unbatched call)."""
    return a.sample(i) if isinstance(a, BatchMarker) else a


def to_runtime(a: Any, dtype: torch.dtype, device: str) -> Any:
    """The runtime's version of an argument (plain values as they are)."""
    return a.for_runtime(dtype, device) if isinstance(a, Marker) else a


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


# ---------------------------------------------------------------------------------------------
# Comparison


class Mismatch(AssertionError):
    pass


def compare(expected: Any, actual: Any, tol: Any, where: str = "out") -> None:
    """Raise Mismatch unless actual matches expected elementwise within tol (recursively).
    `tol` is one Tol for every output, or a structure of Tols shaped like `expected`."""
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            raise Mismatch(f"{where}: expected a sequence of {len(expected)}, got {type(actual).__name__}"
                           f" of {len(actual) if isinstance(actual, (list, tuple)) else '-'}")
        for j, (e, a) in enumerate(zip(expected, actual, strict=True)):
            compare(e, a, tol[j] if isinstance(tol, (list, tuple)) else tol, f"{where}[{j}]")
        return
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or list(actual) != list(expected):
            raise Mismatch(f"{where}: keys differ: expected {list(expected)}, got "
                           f"{list(actual) if isinstance(actual, dict) else type(actual).__name__}")
        for k in expected:
            compare(expected[k], actual[k], tol[k] if isinstance(tol, dict) else tol,
                    f"{where}[{k!r}]")
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
    with np.errstate(invalid="ignore"):  # inf − inf where both are the same infinity
        err = np.abs(a - e)
    atol = np.broadcast_to(np.asarray(tol.atol, dtype=np.float64), e.shape)  # one, or per element
    bad = ~((err <= atol + tol.rtol * np.abs(e)) | both_nan | (e == a))
    if bad.any():
        ratio = np.where(bad, err / (atol + tol.rtol * np.abs(e)), 0.0)
        ratio = np.nan_to_num(ratio, nan=np.inf)
        idx = np.unravel_index(int(np.argmax(ratio)), e.shape) if e.ndim else ()
        raise Mismatch(
            f"{where}: {int(bad.sum())}/{e.size} elements outside |a-e| <= atol + "
            f"{tol.rtol:g}*|e|; worst at {tuple(int(i) for i in idx)}: runtime {a[idx]!r}, "
            f"spec {e[idx]!r}, |a-e| = {err[idx]!r}, atol there {atol[idx]:g}"
        )


# ---------------------------------------------------------------------------------------------
# Description and reproduction


def describe_arg(a: Any) -> str:
    if isinstance(a, Marker):
        return a.describe()
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
    """The record's flat tolerance for the dtype: its override, else the dtype's row."""
    return record.tolerances.get(dtype, TOLERANCES[dtype])


def _conditioned(scale: Any, dtype: str) -> Any:
    if isinstance(scale, (list, tuple)):
        return type(scale)(_conditioned(s, dtype) for s in scale)
    return conditioned(dtype, scale)


def case_tolerance(record: Any, call: Call, dtype: str) -> Any:
    """The tolerance of one case: for a record with a `conditioning` in float32 or bfloat16,
    conditioned(dtype, scale) with the scale its conditioning gives on the spec's inputs (one
    Tol per output, per element); else the flat `tolerance(record, dtype)`."""
    if record.conditioning is None or dtype == "float64":
        return tolerance(record, dtype)
    return _conditioned(spec_result(record, call, dtype, record.conditioning), dtype)


# ---------------------------------------------------------------------------------------------
# Running a case


def spec_result(record: Any, call: Call, dtype_name: str,
                fn: Callable[..., Any] | None = None) -> Any:
    """The spec's float64 answer on the inputs rounded to `dtype_name`: per sample (stacked, or
    averaged for reduce="mean") when the record is batched, else one call. `fn` in place of the
    spec function (its conditioning) is called the same way."""
    dtype = DTYPES[dtype_name]
    args = [spec_static(a, dtype) for a in call.args]
    kwargs = {k: spec_static(v, dtype) for k, v in call.kwargs.items()}
    fn = fn or record.spec_callable()
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
        compare(expected, actual, case_tolerance(record, call, dtype))
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
    "Mismatch",
    "batch_size",
    "case_tolerance",
    "compare",
    "describe",
    "describe_arg",
    "repro_line",
    "run_batch_independence",
    "run_case",
    "runtime_result",
    "spec_result",
    "spec_sample",
    "spec_static",
    "stack",
    "sub_batch",
    "to_numpy",
    "to_runtime",
    "tolerance",
]
