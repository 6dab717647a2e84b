"""Helpers shared by the tests (not fixtures)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, NoReturn, Protocol

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from monitor.backfill import Backfiller
from monitor.config import Settings
from monitor.fakeforum.server import FakeForumServer, Fault, Router
from monitor.service import Service
from monitor.store.models import Post

REPO_ROOT = Path(__file__).resolve().parents[1]
STRICT = os.environ.get("FORUM_MONITOR_TEST_STRICT") == "1"


def missing(reason: str) -> NoReturn:
    """Skip for a missing prerequisite, or fail when running strict (CI)."""
    if STRICT:
        pytest.fail(f"{reason} (FORUM_MONITOR_TEST_STRICT=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with a fresh profile under ``tmp_path``; skips when not installed."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        missing("chromium is not installed (Debian package chromium)")
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Fake(Protocol):
    """A fake forum of ``monitor.fakeforum``: it adds its routes to a router."""

    def register(self, router: Router) -> None: ...


@contextmanager
def served(*fakes: Fake) -> Iterator[FakeForumServer]:
    """``fakes`` on one router, served on 127.0.0.1 while the block runs."""
    router = Router()
    for fake in fakes:
        fake.register(router)
    with FakeForumServer(router) as running:
        yield running


@asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[Service]:
    """The whole service on ``settings`` (with a registry of its own), opened for the block
    and stopped after it."""
    service = Service(settings, registry=CollectorRegistry())
    await service.open()
    try:
        yield service
    finally:
        await service.stop()


async def open_backfill(settings: Settings, *, now: int) -> tuple[Service, Backfiller]:
    """The service opened on ``settings`` with its clock at ``now``, and a backfiller on
    its store, client and ingest, as ``forum-monitor backfill`` makes them. The caller
    stops the service."""
    service = Service(settings, registry=CollectorRegistry(), clock=lambda: now)
    await service.open()
    assert service.engine and service.client and service.ingestor
    backfiller = Backfiller(
        settings=settings,
        engine=service.engine,
        client=service.client,
        ingestor=service.ingestor,
        clock=lambda: now,
    )
    return service, backfiller


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
        "github": {"token": "fake-github-token"},  # what monitor.fakeforum.github expects
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


@contextmanager
def serving(app: Any, **config: Any) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on a free port of 127.0.0.1, with its lifespan;
    ``config`` goes to ``uvicorn.Config``. Yields the base URL once the app answers."""
    import uvicorn

    from monitor.server import bind

    sockets = bind("127.0.0.1", 0)
    port = int(sockets[0].getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False, **config)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive(), "the server stopped before it started"
            assert time.monotonic() < deadline, "the server did not start in 60 s"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        for sock in sockets:
            sock.close()


def report_section(
    settings: Settings,
    community_id: str,
    *,
    since: int,
    until: int,
    now: int,
    workdir: Path,
    section: str,
) -> str | None:
    """The evidence report of ``community_id`` over ``[since, until)``, written as the
    ``report`` command writes it: the inner HTML of its ``section``, None when absent."""
    import re

    from monitor.report import write_report

    out = workdir / f"{community_id}.html"
    write_report(
        settings=settings,
        community_id=community_id,
        since=since,
        until=until,
        out=out,
        now=now,
        command="forum-monitor report",
        version="test",
    )
    found = re.search(rf'<section id="{section}">(.*?)</section>', out.read_text(), re.S)
    return None if found is None else found.group(1)
