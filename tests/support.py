"""Helpers shared by the tests (not fixtures)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
STRICT = os.environ.get("FORUM_MONITOR_TEST_STRICT") == "1"


def missing(reason: str) -> NoReturn:
    """Skip for a missing prerequisite, or fail when running strict (CI)."""
    if STRICT:
        pytest.fail(f"{reason} (FORUM_MONITOR_TEST_STRICT=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)
