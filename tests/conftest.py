"""Shared fixtures.

``FORUM_MONITOR_TEST_STRICT=1`` (set by ``.ci/run``) turns every "missing
prerequisite" skip (recorded samples, PostgreSQL, Prometheus) into a failure,
so nothing skips silently in CI.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.telemetry import Telemetry
from tests.postgres import pg_server, pg_url  # noqa: F401  (fixtures)
from tests.support import REPO_ROOT, missing


@pytest.fixture(scope="session")
def real_samples() -> Path:
    """../shared/real-samples: real API responses recorded by third parties, read in place."""
    path = Path(
        os.environ.get("FORUM_MONITOR_REAL_SAMPLES", REPO_ROOT.parent / "shared" / "real-samples")
    )
    if not path.is_dir():
        missing(f"recorded real responses not found at {path}")
    return path


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def telemetry(registry: CollectorRegistry) -> Telemetry:
    return Telemetry(registry)
