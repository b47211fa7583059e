"""The sampler table (`runtime.samplers.SAMPLERS`) and the spec agree: every entry's spec path
names a public spec function (in `spec.__all__`, in the module the path gives), its runtime
function is that function's twin (same `__name__`, in the runtime module of the same name), and
every spec sampler has an entry. A spec sampler is a public spec function whose parameters after
the first are (model, x_T, grid, noise) (`conformance.sampler_table.is_sampler`), so a sampler on
one side and not the other fails here. The docs table is rendered from the same entries by
scripts/docs_tables.py (tests/test_spec_package.py checks docs/samplers.md)."""

from __future__ import annotations

import pytest

import runtime.samplers
import spec
from conformance.sampler_table import spec_function, spec_samplers, table_entry
from runtime.samplers import GRID_KINDS, PROCESSES, SAMPLERS, Cost


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_spec_path_names_a_public_spec_sampler(name):
    entry = SAMPLERS[name]
    module, _, function = entry.spec.rpartition(".")
    assert module.startswith("spec."), entry.spec
    fn = spec_function(entry)
    assert function in spec.__all__, f"{entry.spec} is not a public spec name"
    assert getattr(spec, function) is fn
    assert function in spec_samplers(), f"{entry.spec} does not take (sched, model, x_T, grid, noise)"


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_runtime_function_is_the_twin_of_the_spec_function(name):
    entry = SAMPLERS[name]
    fn = spec_function(entry)
    assert entry.sample.__name__ == fn.__name__
    assert entry.sample.__module__.replace("runtime.", "spec.", 1) == entry.spec.rpartition(".")[0]
    assert entry.kind in GRID_KINDS


def test_every_spec_sampler_has_one_entry():
    missing = [n for n in spec_samplers() if table_entry(n) is None]
    assert not missing, f"spec samplers without an entry in runtime.samplers.SAMPLERS: {missing}"
    paths = [e.spec for e in SAMPLERS.values()]
    assert len(paths) == len(set(paths)), "two entries name the same spec function"


def test_every_grid_kind_has_its_view_of_a_checkpoint():
    """A VP checkpoint is read by every grid kind; another objective's kinds are grid kinds."""
    assert set(GRID_KINDS) == set(PROCESSES["vp"])
    assert all(set(kinds) <= set(GRID_KINDS) for kinds in PROCESSES.values())


def test_every_sampler_flag_is_a_sampler_field_of_the_config():
    from runtime.plumbing.config import SampleConfig

    fields = set(SampleConfig.__dataclass_fields__)
    assert set(runtime.samplers.SAMPLER_FLAGS) <= fields


def test_cost_text():
    assert [str(Cost(*a)) for a in ((1, 0), (2, -1), (1, 0, True), (3, 2))] == [
        "S", "2·S − 1", "T", "3·S + 2"]
