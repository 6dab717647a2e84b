"""The HTTP client's pool is as large as what may be in flight, and a request waits for
its connection before it is sent, where no timeout runs.

httpx queues requests beyond its pool inside the pool, under the pool timeout, and its
connection assignment costs grows with queued requests x connections: 500 polls at once
once failed there with "timed out talking to 127.0.0.1". ``serve`` sizes the pool to the
admitted polls (``monitor.service.connection_limit``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.config import settings_from_mapping
from monitor.fakeforum.server import FakeForumServer, FakeResponse, Request
from monitor.http import HttpPolicy, PoliteClient, Response
from monitor.service import Service, connection_limit
from monitor.telemetry import Telemetry
from tests.support import service_config


class Slow:
    """Answers after ``seconds``, counting how many requests it holds at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __call__(self, request: Request) -> FakeResponse:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(self.seconds)
            return FakeResponse.json({"path": request.path})
        finally:
            with self.lock:
                self.now -= 1


@pytest.fixture
def slow() -> Iterator[tuple[Slow, FakeForumServer]]:
    handler = Slow(0.3)
    with FakeForumServer(handler) as server:
        yield handler, server


async def test_requests_beyond_the_pool_wait_their_turn_and_none_times_out(
    slow: tuple[Slow, FakeForumServer], telemetry: Telemetry
) -> None:
    """Eight requests through two connections, each answered in 0.3 s, with a pool
    timeout of 0.1 s: all eight succeed, two at a time."""
    handler, server = slow
    policy = HttpPolicy(connect_timeout=0.1, read_timeout=5, total_timeout=5, max_retries=0)
    client = PoliteClient(policy=policy, telemetry=telemetry, max_connections=2)
    client.set_rate("127.0.0.1", 1_000_000)
    try:
        answers = await asyncio.gather(
            *(client.get(f"{server.base_url}/r{n}.json") for n in range(8)),
            return_exceptions=True,
        )
    finally:
        await client.aclose()
    assert [type(a) for a in answers] == [Response] * 8, answers
    assert handler.most == 2


def test_the_pool_holds_every_admitted_poll_at_its_widest(tmp_path: Path) -> None:
    """One connection per admitted poll; eight when Hacker News' whole site is polled,
    whose polls fetch eight items at a time."""
    reddit = {"id": "r", "source": "reddit", "subreddit": "gigwork"}
    site = {"id": "hn", "source": "hackernews"}
    plain = settings_from_mapping({"max_concurrent_polls": 6, "communities": [reddit]})
    assert connection_limit(plain) == 6
    with_site = settings_from_mapping({"max_concurrent_polls": 6, "communities": [reddit, site]})
    assert connection_limit(with_site) == 48


async def test_the_service_sizes_its_client_by_the_admitted_polls(tmp_path: Path) -> None:
    data = service_config(tmp_path, [{"id": "hn", "source": "hackernews"}])
    data["max_concurrent_polls"] = 5
    service = Service(settings_from_mapping(data), registry=CollectorRegistry())
    await service.open()
    try:
        assert service.client is not None and service.client.max_connections == 40
    finally:
        await service.stop()
