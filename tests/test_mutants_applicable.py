"""`make mutants` plants each bug by replacing one exact line of runtime/. This checks, in
seconds, that every such line still occurs exactly once, so a runtime edit that moves a line
fails here (in `make test`) rather than only when someone runs the 5-minute `make mutants`."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mutants_module():
    spec = importlib.util.spec_from_file_location("mutants", ROOT / "scripts" / "mutants.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_every_mutant_line_occurs_exactly_once():
    mutants = _mutants_module()
    assert len(mutants.MUTANTS) >= 10 and len(mutants.PIPELINE_MUTANTS) >= 12
    for m in mutants.MUTANTS + mutants.PIPELINE_MUTANTS:
        lines = (ROOT / "runtime" / m.file).read_text().splitlines()
        assert lines.count(m.old) == 1, f"{m.bug}: runtime/{m.file} line moved: {m.old!r}"
        assert m.new != m.old, m.bug
        assert m.tests, f"{m.bug}: no tests to run against it"
        for target in m.tests:
            assert (ROOT / target.split("::")[0]).exists(), f"{m.bug}: no {target}"
