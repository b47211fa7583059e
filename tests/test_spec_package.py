"""The spec as a package: its public names, its independence, its documentation."""

import ast
import inspect
import re
from pathlib import Path

import pytest

import spec

ROOT = Path(__file__).resolve().parents[1]
SPEC_DIR = ROOT / "spec"
API_MD = ROOT / "docs" / "api.md"  # the table of public names, in the checkout


def api_table() -> dict[str, set[str]]:
    """module → names, parsed from the table in docs/api.md."""
    table: dict[str, set[str]] = {}
    for line in API_MD.read_text().splitlines():
        m = re.match(r"\|\s*`(spec\.\w+)`\s*\|(.*)\|\s*$", line)
        if m:
            table[m.group(1)] = set(re.findall(r"`([A-Za-z_]\w*)`", m.group(2)))
    return table


SPEC_MODULES = sorted(api_table())


def test_api_table_lists_every_spec_module():
    modules = {f"spec.{p.stem}" for p in SPEC_DIR.glob("*.py") if p.stem != "__init__"}
    assert set(api_table()) == modules


@pytest.mark.parametrize("module", SPEC_MODULES)
def test_every_api_name_is_in_its_module_and_in_spec_all(module):
    mod = __import__(module, fromlist=["_"])
    for name in api_table()[module]:
        assert hasattr(mod, name), f"{module} lacks {name}"
        assert name in mod.__all__, f"{name} missing from {module}.__all__"
        assert name in spec.__all__, f"{name} missing from spec.__all__"
        assert getattr(spec, name) is getattr(mod, name)


def test_spec_all_is_exactly_the_documented_names():
    expected = set().union(*api_table().values())
    assert set(spec.__all__) == expected
    assert len(spec.__all__) == len(set(spec.__all__))


def test_module_all_lists_add_up_to_spec_all():
    names = []
    for module in SPEC_MODULES:
        names += __import__(module, fromlist=["_"]).__all__
    assert sorted(names) == sorted(spec.__all__)


def test_torchlean_names_map_to_public_names():
    for lean, py in spec.TORCHLEAN_NAMES.items():
        assert py in spec.__all__, (lean, py)


@pytest.mark.parametrize("path", sorted(SPEC_DIR.glob("*.py")), ids=lambda p: p.name)
def test_spec_imports_neither_torch_nor_runtime(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            roots = [(node.module or "").split(".")[0]]
        else:
            continue
        assert not {"torch", "runtime", "conformance"} & set(roots), (
            f"{path.name}: {ast.unparse(node)}"
        )


@pytest.mark.parametrize("name", sorted(spec.__all__))
def test_public_functions_document_formula_and_shapes(name):
    obj = getattr(spec, name)
    if not callable(obj) or name == "EpsModel":
        return
    doc = inspect.getdoc(obj) or ""
    assert "Shapes:" in doc, f"{name}: no Shapes: line"
    assert len(doc.splitlines()) >= 2, f"{name}: docstring too short"


def test_torchlean_module_records_both_torchlean_divergences():
    doc = spec.torchlean.__doc__
    assert "pfOdeRhs" in doc and "doubles the score term" in doc
    assert "pfOdeSampleEuler" in doc and "t = 1/n" in doc


def test_torchlean_aliases_are_importable_from_spec():
    for lean, py in spec.TORCHLEAN_NAMES.items():
        alias = getattr(spec, lean)
        assert alias is getattr(spec.torchlean, lean)
        if lean not in {"ddpmStep", "ddimStep", "ddimStepSystem",  # the step-index-k three
                        "ddpmSample", "pfOdeSampleEuler"}:  # and the two without a grid
            assert alias is getattr(spec, py), (lean, py)
