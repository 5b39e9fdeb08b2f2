"""Test-wide settings. Under CI (CI=true) hypothesis is derandomized: the same examples on
every run, so a red CI always reproduces; locally it explores new examples each run."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
