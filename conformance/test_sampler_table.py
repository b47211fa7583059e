"""The two sampler tables are one: `spec.samplers.SAMPLERS` (the math) and
`runtime.samplers.SAMPLERS` (the command) hold the same names in the same order, each runtime
function is the twin of its spec function (same name, in the runtime module of the same name),
and the facts both state agree: grid kind, model evaluations, whether the sampler takes noise.
The docs table is rendered from them (`conformance.sampler_table.samplers_markdown`)."""

from __future__ import annotations

from pathlib import Path

import pytest

import runtime.samplers
import spec.samplers
from conformance.sampler_table import samplers_markdown

DOCS = Path(__file__).resolve().parents[1] / "docs" / "samplers.md"


def test_same_names_in_the_same_order():
    assert tuple(spec.samplers.SAMPLERS) == tuple(runtime.samplers.SAMPLERS)


@pytest.mark.parametrize("name", list(spec.samplers.SAMPLERS))
def test_runtime_entry_is_the_twin_of_the_spec_entry(name):
    s, r = spec.samplers.SAMPLERS[name], runtime.samplers.SAMPLERS[name]
    assert s.name == name
    assert r.sample.__name__ == s.sample.__name__
    assert r.sample.__module__.replace("runtime.", "spec.", 1) == s.sample.__module__
    assert (r.kind, r.stochastic) == (s.grid, s.stochastic)
    assert s.grid in spec.samplers.GRID_KINDS
    for steps in (1, 2, 7, 50):
        for T in (steps, 1000):
            assert r.evaluations(steps, T) == s.evaluations(steps, T), (steps, T)


def test_every_sampler_flag_is_a_sampler_field_of_the_config():
    from runtime.plumbing.config import SampleConfig

    fields = set(SampleConfig.__dataclass_fields__)
    assert set(runtime.samplers.SAMPLER_FLAGS) <= fields


def test_cost_text():
    assert [str(spec.samplers.Cost(*a)) for a in ((1, 0), (2, -1), (1, 0, True), (3, 2))] == [
        "S", "2·S − 1", "T", "3·S + 2"]


def test_docs_table_is_rendered_from_the_tables():
    text = samplers_markdown()
    assert text.count("\n") == 2 + len(spec.samplers.SAMPLERS)
    for name, s in spec.samplers.SAMPLERS.items():
        assert f"| `{name}` | {s.paper} |" in text
    if DOCS.exists():  # docs/samplers.md carries the table verbatim
        assert text in DOCS.read_text(), "docs/samplers.md: paste samplers_markdown()'s output"
