"""The registry: one record per name in `spec.__all__`, gathered from one records file per spec
module.

    spec/<module>.py  →  conformance/records_<module>.py  (its `RECORDS`, a `Records` list)

Nothing here lists the spec modules by hand: `SPEC_MODULES` is read from the `spec` package
(each name of `spec.__all__` belongs to the spec module whose `__all__` lists it; constants
such as EPS have no `__module__`, so that is the one rule for every name), and each record's
`module` is set from the records file it is written in. `test_coverage.py` checks that every
spec module has its records file, that every spec name has exactly one record, and that each
record is in the file of its spec module. The generic tests in `test_conformance.py` iterate
`RECORDS`.

The record type is in `record.py`, the argument markers in `markers.py`, the plans and
tolerances several records share in `plans.py`.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections import Counter

import spec
from conformance.record import ALL_DTYPES, Plan, Record, Records


def _owners() -> dict[str, list[str]]:
    """Each name of `spec.__all__` → the spec modules whose `__all__` list it (one, normally)."""
    owners: dict[str, list[str]] = {name: [] for name in spec.__all__}
    for info in pkgutil.iter_modules(spec.__path__):
        module = importlib.import_module(f"spec.{info.name}")
        for name in getattr(module, "__all__", ()):
            if name in owners:
                owners[name].append(info.name)
    return owners


SPEC_OWNERS = _owners()
SPEC_MODULES: list[str] = list(dict.fromkeys(m for n in spec.__all__ for m in SPEC_OWNERS[n]))
"""The spec modules that define a public name, read from the spec package, in the order
`spec.__all__` first names them (the spec's reading order: core, schedule, forward, …)."""


def spec_module_of(name: str) -> str:
    """The spec module whose `__all__` lists `name` (LookupError unless exactly one does)."""
    owners = SPEC_OWNERS.get(name, [])
    if len(owners) != 1:
        raise LookupError(f"{name} is listed in the __all__ of {len(owners)} spec modules: "
                          f"{owners}")
    return owners[0]


def records_file(module: str) -> str:
    """The records file of spec.<module>, as a module name."""
    return f"conformance.records_{module}"


def _gather() -> tuple[list[Record], list[str]]:
    """Every records file's records, each with its `module` set from the file; and the spec
    modules that have no records file (test_coverage names them)."""
    records: list[Record] = []
    missing: list[str] = []
    for module in SPEC_MODULES:
        try:
            found = importlib.import_module(records_file(module))
        except ModuleNotFoundError as exc:
            if exc.name != records_file(module):
                raise
            missing.append(module)
            continue
        records += [dataclasses.replace(r, module=module) for r in found.RECORDS]
    return records, missing


RECORDS, MISSING_RECORDS_FILES = _gather()
REGISTRY: dict[str, Record] = {r.name: r for r in RECORDS}
if len(REGISTRY) != len(RECORDS):
    twice = sorted(n for n, c in Counter(r.name for r in RECORDS).items() if c > 1)
    raise RuntimeError(f"two registry records share a name: {twice}")

__all__ = [
    "ALL_DTYPES",
    "MISSING_RECORDS_FILES",
    "Plan",
    "RECORDS",
    "REGISTRY",
    "Record",
    "Records",
    "SPEC_MODULES",
    "records_file",
    "spec_module_of",
]
