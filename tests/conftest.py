"""Shared test set-up: Hypothesis profiles (derandomized in CI so a run cannot flake)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# The storage contract fixtures (kv_backend, kv, codec, durable): every backend x every codec.
# pg_server: the session's throwaway PostgreSQL server, stopped when the session ends.
pytest_plugins = ["pg_server", "storage_fixtures"]

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
