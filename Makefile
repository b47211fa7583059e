# diffspec: every target installs into .venv first (with the pinned constraints).
PY      := .venv/bin/python
STAMP   := .venv/.installed
HYPOTHESIS_PROFILE ?= dev
WORKERS ?= 2
export HYPOTHESIS_PROFILE
# Let Python cache compiled modules (in the ignored __pycache__ folders) even where the
# environment says not to: the suites start many Python processes (xdist workers, the commands
# under test), and each would otherwise compile every module of the project and its test files anew.
export PYTHONDONTWRITEBYTECODE :=

.PHONY: install test conformance conformance-external lint train bench mutants gpu-check clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv .venv
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,external,train]'
	touch $(STAMP)

# Both cores: pytest-xdist runs one worker per core (conftest.py gives each one torch thread);
# worksteal lets an idle worker take queued tests from a busy one, so a long test near the end
# does not leave a core idle.
test: $(STAMP)
	$(PY) -m pytest -n $(WORKERS) --dist worksteal tests conformance

conformance: $(STAMP)
	$(PY) -m pytest -n $(WORKERS) --dist worksteal conformance

# diffusers' schedulers against the spec (full profile); exit 0 when the findings are exactly
# the recorded ones in conformance/external/expected_deviations.toml (the default for diffusers)
conformance-external: $(STAMP)
	$(PY) -m conformance.external diffusers --report conformance-external.md

lint: $(STAMP)
	$(PY) -m ruff check spec runtime conformance tests scripts

train: $(STAMP)
	$(PY) -m runtime.train

bench: $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,bench,train]'
	$(PY) scripts/bench.py

mutants: $(STAMP)
	$(PY) scripts/mutants.py

gpu-check: $(STAMP)
	bash scripts/gpu_check.sh

clean:
	rm -rf .venv build *.egg-info .pytest_cache .hypothesis
