"""The trainer is a leaf: no module of `runtime` imports `runtime.train` (the package) except
the trainer's own modules and its `__main__`. Sampling, evaluation and the rest must work
without it (`resolve_device` lives in runtime.plumbing.cli). Imports are read with `ast`, so an import
inside a function counts too."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRAINER = "runtime.train"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str, is_package: bool) -> set[str]:
    """Every module name an import statement of `source` can load, absolute: `import a.b` gives
    a.b; `from a import b` gives a and a.b (b may be a submodule); relative imports are resolved
    against `module`."""
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def imports_trainer(names: set[str]) -> bool:
    return any(n == TRAINER or n.startswith(TRAINER + ".") for n in names)


def offenders() -> list[str]:
    found = []
    for path in sorted((ROOT / "runtime").rglob("*.py")):
        module = module_name(path)
        if module == TRAINER or module.startswith(TRAINER + "."):
            continue  # the trainer's own package and its __main__
        names = imported_names(path.read_text(), module, path.name == "__init__.py")
        if imports_trainer(names):
            found.append(module)
    return found


def test_no_runtime_module_imports_the_trainer():
    assert offenders() == []


@pytest.mark.parametrize(("source", "module", "expected"), [
    ("from runtime.train import resolve_device", "runtime.sample", True),
    ("import runtime.train", "runtime.evaluate", True),
    ("import runtime.train.loop as loop", "runtime.evaluate", True),
    ("from runtime import train", "runtime.plumbing.quality", True),
    ("from . import train", "runtime.evaluate", True),
    ("from . import train", "runtime.plumbing.quality", False),  # runtime.plumbing.train
    ("from .train.run import build_run", "runtime.evaluate", True),
    ("from ..train.run import build_run", "runtime.plumbing.quality", True),
    ("def f():\n    from runtime.train import train\n", "runtime.sample", True),
    ("from runtime import train_step", "runtime.plumbing.quality", False),
    ("import runtime.train_step", "runtime.plumbing.quality", False),
    ("from runtime.plumbing.cli import resolve_device", "runtime.sample", False),
    ("from . import rng", "runtime.data", False),  # runtime.data is a package: runtime.data.rng
])
def test_the_checker_sees_every_spelling(source, module, expected):
    assert imports_trainer(imported_names(source, module, module == "runtime.data")) is expected


def test_sample_and_evaluate_load_without_the_trainer():
    code = ("import sys, runtime.sample, runtime.evaluate, runtime.plumbing.checkpoint, runtime.plumbing.quality; "
            "print(sorted(m for m in sys.modules if m == 'runtime.train' "
            "or m.startswith('runtime.train.')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_cli_choice_lists_equal_the_runtime_tables():
    """--prediction's choices and help are read off runtime.prediction.PREDICTION_TABLE;
    runtime.plumbing.config keeps its own --lr-schedule choices, which must name exactly what
    runtime.plumbing.lr_schedule accepts."""
    import runtime.plumbing.config
    import runtime.plumbing.lr_schedule
    import runtime.prediction

    assert runtime.plumbing.config.PREDICTIONS == tuple(runtime.prediction.PREDICTION_TABLE)
    help = runtime.plumbing.config.PREDICTION_HELP
    assert all(f"{name} ({row.help})" in help
               for name, row in runtime.prediction.PREDICTION_TABLE.items())
    assert runtime.plumbing.config.LR_SCHEDULES == runtime.plumbing.lr_schedule.LR_SCHEDULES
