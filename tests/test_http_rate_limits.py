"""GitHub's ways of saying "wait", in the one HTTP policy, and JSON POSTs (GraphQL).

GitHub answers a spent primary budget with 403 (or 429) and ``X-RateLimit-Remaining: 0``
until ``X-RateLimit-Reset`` (a Unix time), a secondary limit with 403 (or 429) and
``Retry-After``; a GraphQL answer carries the budget in its body too
(``PoliteClient.note_rate_limit``). Hand-made answers: no recording of these exists.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from prometheus_client import CollectorRegistry

from monitor.errors import HTTPStatusError, RateLimited, RedirectRefused
from monitor.fakeforum.server import FakeForumServer, FakeResponse, Request, Router
from monitor.telemetry import Telemetry
from tests.test_http_support import HOST, ClientFactory, SleepRecorder, client_factory


@pytest.fixture
def server() -> Iterator[FakeForumServer]:
    with FakeForumServer(Router()) as running:
        yield running


@pytest.fixture
async def make_client(telemetry: Telemetry) -> AsyncIterator[ClientFactory]:
    make, close_all = client_factory(telemetry)
    yield make
    await close_all()


def answering(status: int, **headers: str) -> Router:
    router = Router()
    router.add("/graphql", lambda _r: FakeResponse.json({"message": "limit"}, status, **headers))
    return router


async def test_a_403_with_retry_after_is_a_secondary_rate_limit(
    server: FakeForumServer, make_client: ClientFactory
) -> None:
    server.handler = answering(403, **{"Retry-After": "30"})
    client = make_client(max_retry_wait=5.0)  # 30 s is longer: not waited for in the poll
    with pytest.raises(RateLimited) as caught:
        await client.request("POST", server.base_url + "/graphql", json={"query": "{x}"})
    assert (caught.value.reason, caught.value.retry_after) == ("rate_limited", 30.0)
    assert client.blocked_until(HOST) >= time.time() + 25  # the host waits, every poll of it
    assert len(server.requests) == 1


async def test_a_403_with_a_spent_budget_waits_for_the_reset(
    server: FakeForumServer, make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    reset = int(time.time()) + 600
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
    server.handler = answering(403, **headers)
    client = make_client()
    with pytest.raises(RateLimited) as caught:
        await client.request("POST", server.base_url + "/graphql", json={"query": "{x}"})
    # 600 s from the reset's Unix time, less the second or so the exchange took
    assert 590 <= caught.value.retry_after <= 600
    assert registry.get_sample_value("forum_monitor_rate_limit_remaining", {"host": HOST}) == 0


async def test_a_403_without_either_is_a_refusal_not_a_wait(
    server: FakeForumServer, make_client: ClientFactory
) -> None:
    server.handler = answering(403, **{"X-RateLimit-Remaining": "4999"})
    with pytest.raises(HTTPStatusError) as caught:
        await make_client().request("POST", server.base_url + "/graphql", json={"query": "{x}"})
    assert not isinstance(caught.value, RateLimited)
    assert (caught.value.status, caught.value.reason) == (403, "http_4xx")


async def test_a_budget_from_a_body_reaches_the_gauge_and_pauses_the_host_when_spent(
    server: FakeForumServer, make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    sleeps = SleepRecorder()
    client = make_client(sleep=sleeps, max_retry_wait=120.0)
    client.note_rate_limit(HOST, remaining=17, reset_after=3000)
    assert registry.get_sample_value("forum_monitor_rate_limit_remaining", {"host": HOST}) == 17
    assert client.blocked_until(HOST) == 0.0  # 17 points left: nothing to wait for
    client.note_rate_limit(HOST, remaining=0, reset_after=90)
    assert registry.get_sample_value("forum_monitor_rate_limit_remaining", {"host": HOST}) == 0
    server.handler = answering(200)
    await client.request("POST", server.base_url + "/graphql", json={"query": "{x}"})
    [waited] = sleeps.calls  # the next request waited for the reset (90 s, less a moment)
    assert 85 <= waited <= 90
    client.note_rate_limit(HOST, remaining=0, reset_after=1e300)  # capped at an hour
    assert client.blocked_until(HOST) <= time.time() + 3600


async def test_a_json_post_arrives_as_json_and_is_never_redirected(
    server: FakeForumServer, make_client: ClientFactory
) -> None:
    seen: list[Request] = []

    def graphql(request: Request) -> FakeResponse:
        seen.append(request)
        if len(seen) == 1:
            return FakeResponse.json({"data": {"ok": True}})
        return FakeResponse(307, b"", {"Location": "/elsewhere"})

    router = Router()
    router.add("/graphql", graphql)
    server.handler = router
    client = make_client()
    body = {"query": "query Q { ok }", "variables": {"n": 1}}
    response = await client.request("POST", server.base_url + "/graphql", json=body)
    assert response.json() == {"data": {"ok": True}}
    assert json.loads(seen[0].body) == body
    assert seen[0].headers["content-type"] == "application/json"
    with pytest.raises(RedirectRefused, match="a POST is not redirected"):
        await client.request(
            "POST",
            server.base_url + "/graphql",
            json=body,
            credentials={"Authorization": "bearer secret"},
        )
    assert [r.path for r in server.requests] == ["/graphql", "/graphql"]
