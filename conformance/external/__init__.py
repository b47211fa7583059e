"""Conformance for implementations we did not write: diffusers' schedulers, your own sampler
(docs/external.md is the guide; this module's names are the public API for adapters).

    python -m conformance.external diffusers            # the table; exit 0 as recorded, 1 not
    python -m conformance.external mylib.conformance:targets --expect findings.toml
    python -m conformance.external --scheduler mylib.sched:MyScheduler --claims ddim
    python -m conformance.external diffusers --report r.md

The spec is the oracle: a target states its claim in the spec's conventions (`targets.Claim`,
naming a step rule of `methods`), the spec computes that claim (`oracle.SpecOracle`, which calls
the method's own `step` and `final`), and `check` compares one step and the whole loop on
configurations drawn by hypothesis. `step_target.StepTarget` makes a target of your own step
function. `spec` and `runtime` never import diffusers; only
the `conformance.external.diffusers_*` modules do, and only when they are asked for.
"""

import importlib
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the network

# The public names are loaded on first use (PEP 562), so that importing this package, as pytest
# does for the plugin entry point `conformance.external.pytest_plugin` before the test suite's
# conftest runs, imports neither spec nor hypothesis nor diffusers.
_EXPORTS: dict[str, str] = {
    "EXAMPLES": "check",
    "CaseResult": "check",
    "FamilyResult": "check",
    "Report": "check",
    "check": "check",
    "check_family": "check",
    "config_from_json": "check",
    "config_json": "check",
    "run_case": "check",
    "Expectations": "expectations",
    "ExpectationsError": "expectations",
    "compare": "expectations",
    "load_expectations": "expectations",
    "record": "expectations",
    "DDIM": "methods",
    "DDPM": "methods",
    "DPMSolverPP": "methods",
    "EDMEuler": "methods",
    "EDMHeun": "methods",
    "Method": "methods",
    "CLAIMS": "scheduler_target",
    "SchedulerConfig": "scheduler_target",
    "SchedulerTarget": "scheduler_target",
    "inject_noise": "scheduler_target",
    "integer_timesteps": "scheduler_target",
    "scheduler_configs": "scheduler_target",
    "KINDS": "step_target",
    "SpecConfig": "step_target",
    "StepTarget": "step_target",
    "spec_families": "step_target",
    "Suite": "suite",
    "SuiteError": "suite",
    "load_suite": "suite",
    "rerun": "suite",
    "run_suite": "suite",
    "FLOAT32": "targets",
    "FLOAT64": "targets",
    "VERDICTS": "targets",
    "Claim": "targets",
    "Family": "targets",
    "InvalidConfig": "targets",
    "OutsideSpec": "targets",
    "Run": "targets",
    "Target": "targets",
    "Tolerance": "targets",
    "eps_to_prediction": "targets",
    "validate_config": "targets",
}


def __getattr__(name: str) -> object:
    """`conformance.external.NAME`: the public name from the module that defines it."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'conformance.external' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"conformance.external.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    # the protocol and the spec methods a claim names
    "Claim", "Run", "Family", "Target", "Method", "DDIM", "DDPM", "DPMSolverPP", "EDMEuler",
    "EDMHeun", "OutsideSpec", "VERDICTS",
    # tolerance models
    "Tolerance", "FLOAT64", "FLOAT32",
    # targets without a Target class: a step function, a scheduler class
    "StepTarget", "KINDS", "SpecConfig", "spec_families", "SchedulerTarget", "CLAIMS",
    "SchedulerConfig", "scheduler_configs", "inject_noise", "integer_timesteps",
    "eps_to_prediction",
    # running checks
    "check", "check_family", "run_case", "rerun", "EXAMPLES", "CaseResult", "FamilyResult",
    "Report", "Suite", "SuiteError", "load_suite", "run_suite", "validate_config",
    "InvalidConfig", "config_json", "config_from_json",
    # expectations
    "Expectations", "ExpectationsError", "load_expectations", "compare", "record",
]
