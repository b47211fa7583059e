"""Session-wide test setup, loaded by pytest before any test module.

1. Shape checking: every public function of `spec` carries jaxtyping annotations; while the tests
   run, jaxtyping's import hook wraps them with beartype, so a wrong shape or dtype fails loudly.
   The hook must be installed before `spec` is first imported, which is why it lives here.
2. Hypothesis profiles: `dev` (fast, random) and `ci` (derandomized, fixed example counts).
   Choose with HYPOTHESIS_PROFILE=dev|ci (`make test` uses dev, `.ci/run` uses ci).
"""

import os

from hypothesis import HealthCheck, settings
from jaxtyping import install_import_hook

install_import_hook("spec", "beartype.beartype")

settings.register_profile(
    "dev",
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    max_examples=40,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
