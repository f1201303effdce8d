"""Shared settings of the property-based (hypothesis) tests over readers and the config loader.

200 examples per test in the suite; ``ESGKIT_FUZZ_EXAMPLES=5000 pytest -k fuzz`` runs a deeper pass
(the figures in the hardening note come from such runs)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FUZZ_EXAMPLES = int(os.environ.get("ESGKIT_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
