"""Rerun one conformance case: the command printed after `REPRO` in a failure.

    python -m conformance NAME --dtype float32 --device cpu --plan '{"B": 2, ...}'
    python -m conformance NAME ... --check batch      (the batch-size independence check)

Prints the spec's and the runtime's results side by side (max |a − e| and the tolerance) and
exits 1 when they disagree.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
from jaxtyping import install_import_hook

with install_import_hook("spec", "beartype.beartype"):
    import spec  # noqa: F401  (the same shape checks as under pytest)

from conformance.harness import (  # noqa: E402
    Mismatch,
    case_tolerance,
    describe,
    run_batch_independence,
    run_case,
    runtime_result,
    spec_result,
)
from conformance.registry import REGISTRY  # noqa: E402
from conformance.tolerances import Tol  # noqa: E402

EXIT_STATUS = """\
exit status:
  0    the runtime agrees with the spec on this case
  1    they disagree (FAIL and the mismatch are printed), or a failure of the program itself
  2    bad usage (argparse: an unknown name, a bad flag)
  130  interrupted by Ctrl-C"""


def _flat(x: object) -> np.ndarray:
    if isinstance(x, (list, tuple)):
        return np.concatenate([_flat(v) for v in x]) if x else np.zeros(0)
    if isinstance(x, dict):
        return _flat(list(x.values()))
    return np.asarray(x, dtype=np.float64).ravel()


def _first(tol: object) -> Tol:
    return _first(tol[0]) if isinstance(tol, (list, tuple)) else tol  # type: ignore[return-value]


def _flat_tolerance(expected: object, tol: object) -> tuple[np.ndarray, np.ndarray]:
    """(atol, rtol) per element of `_flat(expected)`: one Tol, or a structure of them."""
    if isinstance(expected, dict):
        return _flat_tolerance(list(expected.values()),
                               list(tol.values()) if isinstance(tol, dict) else tol)
    if isinstance(expected, (list, tuple)):
        parts = [_flat_tolerance(e, tol[j] if isinstance(tol, (list, tuple)) else tol)
                 for j, e in enumerate(expected)]
        if not parts:
            return np.zeros(0), np.zeros(0)
        return np.concatenate([a for a, _ in parts]), np.concatenate([r for _, r in parts])
    shape = np.shape(expected)
    return (np.broadcast_to(np.asarray(tol.atol, dtype=np.float64), shape).ravel(),
            np.broadcast_to(np.asarray(tol.rtol, dtype=np.float64), shape).ravel())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance", description=__doc__,
                                     epilog=EXIT_STATUS,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(REGISTRY))
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32", "bfloat16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--plan", required=True, help="the JSON plan printed after REPRO")
    parser.add_argument("--check", default="spec", choices=["spec", "batch"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    record = REGISTRY[args.name]
    plan = json.loads(args.plan)
    call = record.build(plan)
    print(f"{record.name} dtype={args.dtype} device={args.device}: {describe(call, record.spec_callable())}")
    if record.skip is not None and record.skip(plan, args.dtype):
        print(f"note: pytest skips this plan for {args.dtype}: {record.skip.reason}")
    try:
        if args.check == "batch":
            run_batch_independence(record, plan, args.dtype, args.device)
        else:
            expected_parts = spec_result(record, call, args.dtype)
            expected = _flat(expected_parts)
            actual = _flat(runtime_result(record, call, args.dtype, args.device))
            tol = case_tolerance(record, call, args.dtype)
            atol, rtol = _flat_tolerance(expected_parts, tol)
            if expected.shape == actual.shape == atol.shape and expected.size:
                err = np.abs(actual - expected)
                i = int(np.nanargmax(err / (atol + rtol * np.abs(expected))))
                reason = _first(tol).reason
                print(f"max |a-e| = {np.nanmax(err):.3e}; worst element {i}: runtime {actual[i]!r}, "
                      f"spec {expected[i]!r}; tolerance there atol={atol[i]:g} rtol={rtol[i]:g}"
                      + (f" ({reason})" if reason else ""))
            run_case(record, plan, args.dtype, args.device)
    except Mismatch as exc:
        print(f"FAIL\n{exc}")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
