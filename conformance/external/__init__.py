"""Conformance for implementations we did not write: diffusers' schedulers, your own sampler.

    python -m conformance.external diffusers            # the table; exit 0 agree, 1 deviation
    python -m conformance.external diffusers --report r.md

The spec is the oracle: a target states its claim in the spec's conventions (`targets.Claim`,
naming a step rule of `methods`), the spec computes that claim (`oracle.SpecOracle`, which calls
the method's own `step` and `final`), and `check` compares one step and the whole loop on
configurations drawn by hypothesis. `step_target.StepTarget` makes a target of your own step
function. `spec` and `runtime` never import diffusers; only
the `conformance.external.diffusers_*` modules do, and only when they are asked for.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the network

from conformance.external.check import (  # noqa: E402
    CaseResult,
    FamilyResult,
    Report,
    check,
    check_family,
    run_case,
)
from conformance.external.methods import (  # noqa: E402
    DDIM,
    DDPM,
    DPMSolverPP,
    EDMEuler,
    EDMHeun,
    Method,
)
from conformance.external.step_target import KINDS, SpecConfig, StepTarget, spec_families  # noqa: E402
from conformance.external.targets import (  # noqa: E402
    FLOAT64,
    Claim,
    Family,
    Run,
    Target,
    Tolerance,
    eps_to_prediction,
)

__all__ = [
    "FLOAT64",
    "CaseResult",
    "FamilyResult",
    "Report",
    "check",
    "check_family",
    "run_case",
    "spec_families",
    "DDIM",
    "DDPM",
    "Claim",
    "DPMSolverPP",
    "EDMEuler",
    "EDMHeun",
    "KINDS",
    "Method",
    "Family",
    "Run",
    "SpecConfig",
    "StepTarget",
    "Target",
    "Tolerance",
    "eps_to_prediction",
]
