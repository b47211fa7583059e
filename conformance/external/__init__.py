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
function. `tables` checks a scheduler's alphas_cumprod, timesteps and sigmas against the spec
(`check_timesteps`, `check_sigmas`; rows of a report: `TimestepsRows`, `SigmasRows`).
`spec` and `runtime` never import diffusers; only
the `conformance.external.diffusers_*` modules do, and only when they are asked for.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the network

from conformance.external.check import (  # noqa: E402
    EXAMPLES,
    CaseResult,
    FamilyResult,
    Report,
    check,
    check_family,
    config_from_json,
    config_json,
    run_case,
)
from conformance.external.expectations import (  # noqa: E402
    Expectations,
    ExpectationsError,
    compare,
    load_expectations,
    record,
)
from conformance.external.methods import (  # noqa: E402
    DDIM,
    DDPM,
    DPMSolverPP,
    DPMSolverPP2S,
    DPMSolverPP3M,
    EDMEuler,
    EDMEulerAncestral,
    EDMHeun,
    FlowEuler,
    FlowHeun,
    FlowUniPC,
    Method,
    UniPC,
)
from conformance.external.scheduler_target import (  # noqa: E402
    CLAIMS,
    SchedulerConfig,
    SchedulerTarget,
    heun_grid,
    heun_sigma_grid,
    inject_noise,
    integer_timesteps,
    scheduler_configs,
)
from conformance.external.step_target import (  # noqa: E402
    KINDS,
    SpecConfig,
    StepTarget,
    spec_families,
)
from conformance.external.suite import (  # noqa: E402
    Suite,
    SuiteError,
    load_suite,
    rerun,
    run_suite,
)
from conformance.external.tables import (  # noqa: E402
    SCHEDULES,
    SIGMAS,
    ScheduleRows,
    SigmasRows,
    TableConfig,
    TimestepsRows,
    check_schedule,
    check_sigmas,
    check_timesteps,
    scheduler_rows,
)
from conformance.external.targets import (  # noqa: E402
    FLOAT32,
    FLOAT64,
    FLOW32,
    VERDICTS,
    Claim,
    Family,
    InvalidConfig,
    OutsideSpec,
    Run,
    Target,
    Tolerance,
    eps_to_prediction,
    flow_betas,
    validate_config,
)

__all__ = [
    # the protocol and the spec methods a claim names
    "Claim", "Run", "Family", "Target", "Method", "DDIM", "DDPM", "DPMSolverPP", "EDMEuler",
    "EDMHeun", "DPMSolverPP2S", "EDMEulerAncestral", "FlowEuler", "FlowHeun", "UniPC",
    "DPMSolverPP3M", "FlowUniPC", "OutsideSpec", "VERDICTS", "flow_betas",
    # tolerance models
    "Tolerance", "FLOAT64", "FLOAT32", "FLOW32",
    # targets without a Target class: a step function, a scheduler class
    "StepTarget", "KINDS", "SpecConfig", "spec_families", "SchedulerTarget", "CLAIMS",
    "SchedulerConfig", "scheduler_configs", "inject_noise", "integer_timesteps",
    "eps_to_prediction",
    # a scheduler's tables: alphas_cumprod, timesteps and sigmas against the spec
    "check_schedule", "check_timesteps", "check_sigmas", "SCHEDULES", "SIGMAS", "heun_grid",
    "heun_sigma_grid", "ScheduleRows", "TimestepsRows", "SigmasRows", "TableConfig",
    "scheduler_rows",
    # running checks
    "check", "check_family", "run_case", "rerun", "EXAMPLES", "CaseResult", "FamilyResult",
    "Report", "Suite", "SuiteError", "load_suite", "run_suite", "validate_config",
    "InvalidConfig", "config_json", "config_from_json",
    # expectations
    "Expectations", "ExpectationsError", "load_expectations", "compare", "record",
]
