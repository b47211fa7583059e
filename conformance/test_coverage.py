"""The registry covers the spec: one record per name in `spec.__all__`, and each runtime twin
exists with the same name in the runtime module of the same name.

Also checks the registry's own hygiene: every tolerance override and every skip carries its
reason; every exemption is a type or a constant.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

import spec
from conformance.registry import REGISTRY
from conformance.tolerances import TOLERANCES

SPEC_MODULES = ["core", "schedule", "forward", "loss", "ddpm", "ddim", "pf_ode", "dynamics",
                "model", "data", "likelihood", "edm", "dpm_solver", "train", "prediction",
                "guidance", "torchlean"]


def spec_names() -> list[str]:
    """`spec.__all__`; until the package lists its names, the union of its modules' __all__."""
    names = getattr(spec, "__all__", None)
    if names is None:
        names = [n for m in SPEC_MODULES for n in importlib.import_module(f"spec.{m}").__all__]
    return list(names)


def spec_module_of(name: str) -> str:
    for m in SPEC_MODULES:
        if name in importlib.import_module(f"spec.{m}").__all__:
            return m
    raise LookupError(name)


def test_every_spec_name_has_a_record() -> None:
    missing = [n for n in spec_names() if n not in REGISTRY]
    assert not missing, f"{len(missing)} spec name(s) without a conformance record: {missing}"


def test_no_record_without_a_spec_name() -> None:
    extra = [n for n in REGISTRY if n not in spec_names()]
    assert not extra, f"records for names not in spec.__all__: {extra}"


def test_spec_all_is_declared() -> None:
    assert hasattr(spec, "__all__"), "spec/__init__.py must list every public name in __all__"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_twin_mirrors_module_and_name(name: str) -> None:
    record = REGISTRY[name]
    assert record.module == spec_module_of(name), (
        f"{name} lives in spec.{spec_module_of(name)}, the record says {record.module}")
    twin_module = importlib.import_module(f"runtime.{record.module}")
    assert hasattr(twin_module, name), f"runtime.{record.module} has no {name}"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_overrides_and_skips_carry_a_reason(name: str) -> None:
    record = REGISTRY[name]
    for dtype, tol in record.tolerances.items():
        assert dtype in TOLERANCES, f"{name}: override for unknown dtype {dtype}"
        assert tol.reason.strip(), f"{name}: the {dtype} tolerance override has no reason"
    if record.skip is not None:
        assert getattr(record.skip, "reason", "").strip(), f"{name}: skip without a reason"
    if set(record.dtypes) != set(TOLERANCES):
        assert record.dtypes_reason.strip(), f"{name}: dtypes {record.dtypes} without a reason"


@pytest.mark.parametrize("name", sorted(n for n, r in REGISTRY.items() if r.exempt))
def test_only_types_and_constants_are_exempt(name: str) -> None:
    obj = getattr(importlib.import_module(f"spec.{REGISTRY[name].module}"), name)
    assert inspect.isclass(obj) or not callable(obj), f"{name} is a function: it needs a record"


@pytest.mark.parametrize("name", sorted(n for n, r in REGISTRY.items() if not r.exempt))
def test_checked_records_are_complete(name: str) -> None:
    record = REGISTRY[name]
    assert record.plan is not None and record.build is not None, f"{name}: no plan or builder"
