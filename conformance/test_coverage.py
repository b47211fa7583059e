"""The registry covers the spec: one record per name in `spec.__all__`, each in the records file
of its spec module, every spec module with its records file, and each runtime twin with the same
name in the runtime module of the same name.

Also checks the registry's own hygiene: every tolerance override and every skip carries its
reason (and a record whose float32/bfloat16 tolerance comes from its conditioning carries no
override there); every exemption is a type or a constant.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

import spec
from conformance.registry import (
    MISSING_RECORDS_FILES,
    RECORDS,
    REGISTRY,
    SPEC_MODULES,
    SPEC_OWNERS,
    records_file,
    spec_module_of,
)
from conformance.tolerances import TOLERANCES, Skip

HERE = Path(__file__).resolve().parent


def spec_names() -> list[str]:
    return list(spec.__all__)


def test_every_spec_module_has_its_records_file() -> None:
    assert SPEC_MODULES, "no spec module found"
    assert not MISSING_RECORDS_FILES, (
        "spec modules without a records file: "
        + ", ".join(f"spec.{m} needs {records_file(m)}" for m in MISSING_RECORDS_FILES))


def test_every_records_file_belongs_to_a_spec_module() -> None:
    orphans = [p.name for p in HERE.glob("records_*.py")
               if p.stem.removeprefix("records_") not in SPEC_MODULES]
    assert not orphans, f"records files with no spec module of that name: {orphans}"


def test_every_spec_name_is_listed_by_exactly_one_spec_module() -> None:
    wrong = {n: owners for n, owners in SPEC_OWNERS.items() if len(owners) != 1}
    assert not wrong, f"spec names not listed in exactly one spec module's __all__: {wrong}"


def test_every_spec_name_has_exactly_one_record() -> None:
    counts = {n: sum(r.name == n for r in RECORDS) for n in spec_names()}
    missing = [n for n, c in counts.items() if c == 0]
    twice = [n for n, c in counts.items() if c > 1]
    assert not missing, f"{len(missing)} spec name(s) without a conformance record: {missing}"
    assert not twice, f"spec name(s) with more than one record: {twice}"


def test_no_record_without_a_spec_name() -> None:
    extra = [n for n in REGISTRY if n not in spec_names()]
    assert not extra, f"records for names not in spec.__all__: {extra}"


def test_spec_all_is_declared() -> None:
    assert hasattr(spec, "__all__"), "spec/__init__.py must list every public name in __all__"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_twin_mirrors_module_and_name(name: str) -> None:
    record = REGISTRY[name]
    assert record.module == spec_module_of(name), (
        f"{name} lives in spec.{spec_module_of(name)}: its record belongs in "
        f"{records_file(spec_module_of(name))}, not {records_file(record.module)}")
    twin_module = importlib.import_module(f"runtime.{record.module}")
    assert hasattr(twin_module, name), f"runtime.{record.module} has no {name}"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_overrides_and_skips_carry_a_reason(name: str) -> None:
    record = REGISTRY[name]
    for dtype, tol in record.tolerances.items():
        assert dtype in TOLERANCES, f"{name}: override for unknown dtype {dtype}"
        assert tol.reason.strip(), f"{name}: the {dtype} tolerance override has no reason"
    if record.skip is not None:
        assert isinstance(record.skip, Skip), f"{name}: skip is not a Skip(predicate, reason)"
        assert record.skip.reason.strip(), f"{name}: skip without a reason"
    if set(record.dtypes) != set(TOLERANCES):
        assert record.dtypes_reason.strip(), f"{name}: dtypes {record.dtypes} without a reason"
    if record.conditioning is not None:  # float32/bfloat16 are derived: an override is dead
        dead = sorted(set(record.tolerances) - {"float64"})
        assert not dead, f"{name}: has a conditioning, so its {dead} override is never used"


@pytest.mark.parametrize("name", sorted(n for n, r in REGISTRY.items() if r.exempt))
def test_only_types_and_constants_are_exempt(name: str) -> None:
    obj = getattr(importlib.import_module(f"spec.{REGISTRY[name].module}"), name)
    assert inspect.isclass(obj) or not callable(obj), f"{name} is a function: it needs a record"


@pytest.mark.parametrize("name", sorted(n for n, r in REGISTRY.items() if not r.exempt))
def test_checked_records_are_complete(name: str) -> None:
    record = REGISTRY[name]
    assert record.plan is not None and record.build is not None, f"{name}: no plan or builder"


def test_a_skip_needs_its_reason_and_or_joins_two() -> None:
    with pytest.raises(ValueError):
        Skip(lambda plan, dtype: True, "  ")
    f32 = Skip(lambda plan, dtype: dtype == "float32", "float32 rounding")
    big = Skip(lambda plan, dtype: plan["T"] > 10, "long chains")
    either = f32 | big
    assert either.reason == "float32 rounding; long chains"
    assert either({"T": 1}, "float32") and either({"T": 11}, "float64")
    assert not either({"T": 1}, "float64")
