"""The HTTP client's pool is as large as what may be in flight, and a request waits for
its connection before it is sent, where no timeout runs.

httpx queues requests beyond its pool inside the pool, under the pool timeout, and its
connection assignment costs grows with queued requests x connections: 500 polls at once
once failed there with "timed out talking to 127.0.0.1". ``serve`` sizes the pool to the
polls it admits.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from monitor.fakeforum.server import FakeForumServer, FakeResponse, Request
from monitor.http import HttpPolicy, PoliteClient, Response
from monitor.telemetry import Telemetry


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
