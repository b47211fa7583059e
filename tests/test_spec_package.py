"""The spec as a package: its public names, its independence, its documentation."""

import ast
import importlib
import importlib.util
import inspect
from pathlib import Path

import pytest

import spec

ROOT = Path(__file__).resolve().parents[1]
SPEC_DIR = ROOT / "spec"


def load_api_doc():
    """scripts/api_doc.py, the generator of docs/api.md's table, as a module."""
    loader = importlib.util.spec_from_file_location("api_doc", ROOT / "scripts" / "api_doc.py")
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


def test_modules_lists_every_spec_module():
    modules = {p.stem for p in SPEC_DIR.glob("*.py") if p.stem != "__init__"}
    assert set(spec.MODULES) == modules
    assert len(spec.MODULES) == len(modules)


@pytest.mark.parametrize("module", spec.MODULES)
def test_every_module_name_is_public_from_spec(module):
    mod = importlib.import_module(f"spec.{module}")
    for name in mod.__all__:
        assert hasattr(mod, name), f"spec.{module}.__all__ names {name}, which it lacks"
        assert name in spec.__all__, f"{name} missing from spec.__all__"
        assert getattr(spec, name) is getattr(mod, name)


def test_spec_all_is_the_module_lists_without_repeats():
    names = [n for m in spec.MODULES for n in importlib.import_module(f"spec.{m}").__all__]
    assert spec.__all__ == names
    assert len(names) == len(set(names)), "a name is public in two spec modules"


def test_api_md_is_generated_from_the_spec():
    api_doc = load_api_doc()
    text = api_doc.API_MD.read_text()
    assert api_doc.rendered(text) == text, "docs/api.md is stale: run python scripts/api_doc.py"
    for module in spec.MODULES:  # the generator really lists every module and name
        for name in importlib.import_module(f"spec.{module}").__all__:
            assert f"`{name}`" in text


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


def test_shape_checking_is_on_in_the_test_suite():
    """conftest.py installs jaxtyping's import hook before `spec` is first imported, so every spec
    function runs under beartype here. A pytest plugin that imports spec earlier (the external
    harness's entry point once did, through its package's eager imports) would turn the checks
    off without a sound: beartype's wrapper is what carries `__wrapped__`."""
    import spec.forward

    assert getattr(spec.forward.q_sample, "__wrapped__", None) is not None
