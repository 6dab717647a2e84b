"""Shared fixtures.

``FORUM_MONITOR_TEST_STRICT=1`` (set by ``.ci/run``) turns every "missing
prerequisite" skip (recorded samples, PostgreSQL, Prometheus) into a failure,
so nothing skips silently in CI.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest
from prometheus_client import CollectorRegistry

from monitor.telemetry import Telemetry

REPO_ROOT = Path(__file__).resolve().parents[1]
STRICT = os.environ.get("FORUM_MONITOR_TEST_STRICT") == "1"


def missing(reason: str) -> NoReturn:
    """Skip for a missing prerequisite, or fail when running strict (CI)."""
    if STRICT:
        pytest.fail(f"{reason} (FORUM_MONITOR_TEST_STRICT=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


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
