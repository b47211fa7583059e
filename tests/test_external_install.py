"""`pip install ".[external]"` gives a working command and pytest plugin: the wheel is built from
a copy of the checkout and installed into a fresh virtual environment, then run from outside
the checkout (so only the installed copy can be imported).

Offline and in seconds: the wheel is installed with --no-deps, and the environment sees the
dependencies already installed here through one .pth line (the packages the `external` extra and
the base install name: numpy, torch, hypothesis, diffusers, pytest); nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*cmd, cwd, env=None):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300)


def test_the_wheel_installs_a_working_command_and_plugin(tmp_path):
    src = tmp_path / "src"
    for name in ("spec", "runtime", "conformance"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                "-w", tmp_path / "dist", src, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("diffspec-*.whl"))

    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    purelib = run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                  cwd=tmp_path).stdout.strip()
    (Path(purelib) / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    installed = run(sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "-q",
                    wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr

    home = tmp_path / "elsewhere"  # not the checkout: only the installed copy is importable
    home.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "OMP_NUM_THREADS": "1"}
    small = ["--examples", "2", "--derandomize", "--profile", "small"]
    cmd = run(env_dir / "bin" / "diffspec-external", "--scheduler", "external_schedulers:PaperDDIM",
              "--claims", "ddim", *small, cwd=home, env=env)
    assert cmd.returncode == 0 and "agrees" in cmd.stdout, cmd.stdout + cmd.stderr
    plugin = run(py, "-m", "pytest", "-p", "no:cacheprovider", "--diffspec-scheduler",
                 "external_schedulers:StrideDDIM", "--diffspec-claims", "ddim",
                 "--diffspec-examples", "2", "-q", cwd=home, env=env)
    assert plugin.returncode == 1 and "2 failed" in plugin.stdout, plugin.stdout + plugin.stderr
    where = run(py, "-c", "import conformance.pytest_plugin as m; print(m.__file__)",
                cwd=home, env=env)
    assert where.stdout.startswith(str(env_dir)), where.stdout  # the installed copy ran


def test_heavy_packages_are_only_in_the_extras_that_use_them():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    base = {d.lower() for d in project["dependencies"]}
    assert not base & {"scikit-learn", "matplotlib", "pillow", "diffusers", "hypothesis"}
    assert "hypothesis" in project["optional-dependencies"]["external"]  # conformance.external imports it
    assert project["scripts"]["diffspec-external"] == "conformance.external.__main__:console"
    assert project["entry-points"]["pytest11"]["diffspec"] == "conformance.pytest_plugin"
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "'.[dev,external,train]'" in make  # make install still installs everything
