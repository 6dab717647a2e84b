"""Helpers shared by the tests (not fixtures)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any, NoReturn

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from monitor.fakeforum.server import Fault
from monitor.store.models import Post

REPO_ROOT = Path(__file__).resolve().parents[1]
STRICT = os.environ.get("FORUM_MONITOR_TEST_STRICT") == "1"


def missing(reason: str) -> NoReturn:
    """Skip for a missing prerequisite, or fail when running strict (CI)."""
    if STRICT:
        pytest.fail(f"{reason} (FORUM_MONITOR_TEST_STRICT=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_argv(config: Path, port: int) -> list[str]:
    """``forum-monitor serve`` as a user runs it, on 127.0.0.1:``port``."""
    return [
        sys.executable,
        "-m",
        "monitor",
        "serve",
        "--config",
        str(config),
        "--listen",
        f"127.0.0.1:{port}",
    ]


def stored_posts(engine: Engine, community: str) -> tuple[int, int]:
    """(post rows, distinct external ids) stored for ``community``: equal when none is twice."""
    with Session(engine) as session:
        rows = session.exec(
            select(func.count()).select_from(Post).where(Post.community_id == community)
        ).one()
        distinct = session.exec(
            select(func.count(func.distinct(Post.external_id))).where(
                Post.community_id == community
            )
        ).one()
    return int(rows), int(distinct)


FAULTS = [
    # (fault, the reason the failed poll is counted under). Faults the client retries
    # (max_retries=1) must last two requests; a body that arrived whole is not retried.
    # Retry-After 3 s is over max_retry_wait (1 s): not retried, the next poll waits
    (Fault("status", status=429, retry_after="3", count=1), "rate_limited"),
    (Fault("status", status=503, count=2), "http_5xx"),
    (Fault("delay", seconds=1.5, count=2), "timeout"),
    (Fault("reset", count=2), "connect"),
    (Fault("truncate", count=1), "malformed"),
    (Fault("html", count=1), "malformed"),
    (Fault("huge", size=3 * 1024 * 1024, count=1), "too_large"),
]
"""Faults a fake forum can inject, each with the failure reason its poll is counted under;
the client needs ``FAULT_HTTP``."""
FAULT_HTTP = {"read_timeout": "1s", "max_body_bytes": 1024 * 1024, "max_retry_wait": "1s"}
"""HTTP settings under which every fault in ``FAULTS`` fails its poll within a second or so."""


def service_config(
    tmp_path: Path, communities: list[dict[str, Any]], **http: Any
) -> dict[str, Any]:
    """Settings for the whole service against fakes on 127.0.0.1: a SQLite store under
    ``tmp_path``, no rate limit on 127.0.0.1, short timeouts, one quick retry; ``http``
    overrides."""
    return {
        "database_url": f"sqlite:///{tmp_path / 'store.db'}",
        "data_dir": str(tmp_path),
        "pseudonym_key": "integration-test-key-0123456789abcdef",
        "http": {
            "rate_per_minute": {"127.0.0.1": 100000},
            "connect_timeout": "2s",
            "read_timeout": "2s",
            "total_timeout": "5s",
            "max_retries": 1,
            "backoff_base": 0.01,
            "max_retry_wait": "2s",
            **http,
        },
        "communities": communities,
    }
