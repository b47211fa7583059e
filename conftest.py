"""Session-wide test setup, loaded by pytest before any test module.

1. Shape checking: every public function of `spec` carries jaxtyping annotations; while the tests
   run, jaxtyping's import hook wraps them with beartype, so a wrong shape or dtype fails loudly.
   The hook must be installed before `spec` is first imported, which is why it lives here.
2. Threads: under pytest-xdist (`make test` runs one worker per core) each worker runs torch
   with one thread, so two workers do not fight over the two cores; the trainer subprocesses
   that tests start inherit OMP_NUM_THREADS. Set it yourself to override.
3. Hypothesis profiles: `dev` (fast, random) and `ci` (derandomized, fixed example counts).
   Choose with HYPOTHESIS_PROFILE=dev|ci (`make test` uses dev, `.ci/run` uses ci).
"""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from jaxtyping import install_import_hook  # noqa: E402

install_import_hook("spec", "beartype.beartype")

settings.register_profile(
    "dev",
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# ci: 25 derandomized examples a test (40 until the suite outgrew its 2-core budget; every
# `make mutants` mutant is killed with the dev profile's 20).
settings.register_profile(
    "ci",
    max_examples=25,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# `make mutants` needs a failure, not a minimal one: no shrinking (a shrink of the train_step
# record alone can take minutes).
settings.register_profile(
    "mutants",
    parent=settings.get_profile("dev"),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
