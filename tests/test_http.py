"""The HTTP policy against the real-socket fake server: every failure is typed and counted.

Timing checks read the server's own request log (``Request.at``, taken when the
request arrived), so "never sent early" is measured where it matters. Tests whose
point is not real waiting inject a ``SleepRecorder``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor import __version__
from monitor.errors import (
    HTTPStatusError,
    MalformedResponse,
    RateLimited,
    ResponseTooLarge,
    TransportError,
)
from monitor.fakeforum.server import FakeForumServer, FakeResponse, Fault, Request, Router
from monitor.http import PoliteClient, RequestCounter
from monitor.telemetry import Telemetry
from tests.test_http_support import (
    CONTACT,
    HOST,
    MIB,
    ClientFactory,
    CountingTransport,
    SleepRecorder,
    client_factory,
    requests_total,
)

DATA = {"items": [1, 2, 3]}
RATE_SLACK = 0.25
"""Share of the spacing by which a request may be logged late (a new connection and a server
thread to start, on a busy machine); the bucket spaces sends, the check reads arrivals. The
old bucket sent whole volleys, so a quarter of the spacing still tells the two apart."""


@pytest.fixture
def router() -> Router:
    router = Router()
    router.add("/data.json", lambda _request: FakeResponse.json(DATA))
    return router


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeForumServer]:
    """One server for the module: stopping one takes up to 0.5 s (``serve_forever`` polling)."""
    with FakeForumServer(Router()) as running:
        # the server writes head and body separately; without TCP_NODELAY each reply stalls
        # ~40 ms on Nagle + delayed ACK (the handler class is this server's own)
        running._httpd.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
        yield running


@pytest.fixture
def server(shared_server: FakeForumServer, router: Router) -> FakeForumServer:
    """The shared server with this test's routes, no faults left and an empty request log."""
    shared_server.clear()
    shared_server.handler = router
    return shared_server


@pytest.fixture
async def make_client(telemetry: Telemetry) -> AsyncIterator[ClientFactory]:
    make, close_all = client_factory(telemetry)
    yield make
    await close_all()


def arrivals(server: FakeForumServer, path: str = "/data.json") -> list[float]:
    return [request.at for request in server.requests_to(path)]


# --- identity ----------------------------------------------------------------------------


async def test_user_agent_names_version_and_contact(
    server: FakeForumServer, make_client: ClientFactory
) -> None:
    await make_client().get(server.base_url + "/data.json")
    agent = server.requests[0].headers["user-agent"]
    assert agent.startswith(f"forum-monitor/{__version__} ")
    assert __version__ == "0.1.0"  # pyproject.toml [project] version
    assert CONTACT in agent


# --- Retry-After ----------------------------------------------------------------------------


async def test_429_retry_after_seconds_next_request_not_sooner(
    server: FakeForumServer, make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    server.inject(Fault("status", status=429, retry_after="1"))
    counter = RequestCounter()
    client = make_client()
    response = await client.get(server.base_url + "/data.json", counter=counter)
    assert response.json() == DATA
    first, second = arrivals(server)
    assert second - first >= 1.0
    assert client.blocked_until(HOST) >= first + 1.0
    assert counter.requests == 2  # the retry is a request
    assert requests_total(registry, "429") == 1
    assert requests_total(registry, "200") == 1


async def test_429_retry_after_http_date_next_request_not_sooner(
    server: FakeForumServer, router: Router, make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    moments: list[int] = []

    def limited_once(request: Request) -> FakeResponse:
        if moments:
            return FakeResponse.json(DATA)
        # the whole second two seconds after arrival: a wait between 1 and 2 s
        moments.append(math.floor(request.at) + 2)
        date = email.utils.formatdate(moments[0], usegmt=True)
        return FakeResponse.json({"error": 429}, status=429, **{"Retry-After": date})

    router.add("/dated.json", limited_once)
    response = await make_client().get(server.base_url + "/dated.json")
    assert response.json() == DATA
    first, second = arrivals(server, "/dated.json")
    assert second >= moments[0]
    assert second - first >= 1.0
    assert requests_total(registry, "429") == 1
    assert requests_total(registry, "200") == 1


async def test_retry_after_past_max_wait_raises_at_once_and_blocks_the_host(
    server: FakeForumServer, make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    server.inject(Fault("status", status=429, retry_after="120"))
    sleep = SleepRecorder()
    counter = RequestCounter()
    client = make_client(sleep=sleep, max_retry_wait=5.0)
    started = time.time()
    with pytest.raises(RateLimited) as caught:
        await client.get(server.base_url + "/data.json", counter=counter)
    assert caught.value.retry_after == 120.0
    assert caught.value.status == 429
    assert caught.value.reason == "rate_limited"
    assert caught.value.host == HOST
    # a later request before the moment is refused without being sent
    with pytest.raises(RateLimited) as again:
        await client.get(server.base_url + "/data.json", counter=counter)
    assert 115.0 < again.value.retry_after <= 120.0
    assert len(server.requests) == 1
    assert counter.requests == 1
    assert sleep.calls == []
    assert started + 120.0 <= client.blocked_until(HOST) <= time.time() + 120.0
    assert requests_total(registry, "429") == 1
    assert requests_total(registry, "error") == 0


async def test_request_after_a_short_block_waits_for_it(
    server: FakeForumServer, make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    server.inject(Fault("status", status=429, retry_after="1"))
    client = make_client(max_retries=0)  # the 429 ends this call ...
    with pytest.raises(RateLimited):
        await client.get(server.base_url + "/data.json")
    response = await client.get(server.base_url + "/data.json")  # ... and the next one waits
    assert response.json() == DATA
    first, second = arrivals(server)
    assert second - first >= 1.0
    assert requests_total(registry, "429") == 1


async def test_block_pushed_back_while_waiting_is_honoured(
    server: FakeForumServer, router: Router, make_client: ClientFactory
) -> None:
    """A request sleeping out a block sees a later, longer block set by a reply in flight."""

    def slow_budget_spent(_request: Request) -> FakeResponse:
        time.sleep(0.4)
        return FakeResponse.json(DATA, **{"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "1"})

    router.add("/slow", slow_budget_spent)
    router.add(
        "/short",
        lambda _r: FakeResponse.json(
            DATA, **{"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "1.0"}
        ),
    )
    client = make_client()
    slow = asyncio.create_task(client.get(server.base_url + "/slow"))  # answers 0.4 s on
    deadline = time.monotonic() + 30
    while not arrivals(server, "/slow"):  # in flight (a fixed pause may not be, when busy)
        assert time.monotonic() < deadline and not slow.done(), "/slow never arrived"
        await asyncio.sleep(0.01)
    await client.get(server.base_url + "/short")  # blocks the host until ~1.05 s
    await client.get(server.base_url + "/data.json")  # must wait for the slow reply's block
    await slow
    (slow_at,) = arrivals(server, "/slow")
    (late_at,) = arrivals(server, "/data.json")
    # the slow reply left the server at least 0.4 s after it arrived and blocked for 1 s more
    assert late_at >= slow_at + 1.4


# --- 5xx, 4xx and backoff ---------------------------------------------------------------------


async def test_503_burst_then_recovery_backs_off_growing_with_jitter(
    server: FakeForumServer, make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    sleep = SleepRecorder()
    client = make_client(sleep=sleep, backoff_base=1.0, backoff_cap=30.0)
    counter = RequestCounter()
    firsts = []
    for _ in range(5):
        sleep.calls.clear()
        server.inject(Fault("status", status=503, count=2))
        response = await client.get(server.base_url + "/data.json", counter=counter)
        assert response.status == 200
        assert response.json() == DATA
        # retry n waits between half and all of backoff_base * 2**n
        first, second = sleep.calls
        assert 0.5 <= first <= 1.0
        assert 1.0 <= second <= 2.0
        firsts.append(first)
    assert len(set(firsts)) > 1  # jittered, so replicas do not retry in step
    assert counter.requests == 15  # 5 rounds of 2 failures and 1 success
    assert counter.hosts == {HOST}
    assert requests_total(registry, "503") == 10
    assert requests_total(registry, "200") == 5


async def test_503_backoff_with_real_sleep(
    server: FakeForumServer, make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    server.inject(Fault("status", status=503, count=2))
    response = await make_client(backoff_base=0.1).get(server.base_url + "/data.json")
    assert response.json() == DATA
    first, second, third = arrivals(server)
    assert second - first >= 0.05  # at least half of 0.1 * 2**0
    assert third - second >= 0.1  # at least half of 0.1 * 2**1
    assert requests_total(registry, "503") == 2


async def test_more_5xx_than_retries_raises_http_5xx(
    server: FakeForumServer, make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    server.inject(Fault("status", status=503, count=4))
    sleep = SleepRecorder()
    counter = RequestCounter()
    with pytest.raises(HTTPStatusError) as caught:
        await make_client(sleep=sleep, max_retries=3).get(
            server.base_url + "/data.json", counter=counter
        )
    assert not isinstance(caught.value, RateLimited)  # no Retry-After: a plain 5xx
    assert caught.value.status == 503
    assert caught.value.reason == "http_5xx"
    assert len(server.requests) == 4  # the first try and 3 retries
    assert counter.requests == 4
    assert len(sleep.calls) == 3
    assert requests_total(registry, "503") == 4


async def test_404_is_not_retried(
    server: FakeForumServer, make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    sleep = SleepRecorder()
    with pytest.raises(HTTPStatusError) as caught:
        await make_client(sleep=sleep).get(server.base_url + "/missing.json")
    assert caught.value.status == 404
    assert caught.value.reason == "http_4xx"
    assert len(server.requests) == 1
    assert sleep.calls == []
    assert requests_total(registry, "404") == 1


async def test_429_without_retry_after_waits_a_backoff(
    server: FakeForumServer, make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    server.inject(Fault("status", status=429))
    sleep = SleepRecorder()
    response = await make_client(sleep=sleep, backoff_base=1.0, backoff_cap=30.0).get(
        server.base_url + "/data.json"
    )
    assert response.json() == DATA
    (waited,) = sleep.calls
    assert 1.0 < waited <= 4.0  # between half and all of 1.0 * 2**2, less the time since
    assert requests_total(registry, "429") == 1


# --- transport failures ---------------------------------------------------------------------


async def test_read_timeout_is_retried(
    server: FakeForumServer, make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    # the retry must be answered within the read timeout on a fresh connection: 0.5 s
    # leaves a busy machine room for that; the delay stays three timeouts long
    server.inject(Fault("delay", seconds=1.5))
    response = await make_client(read_timeout=0.5).get(server.base_url + "/data.json")
    assert response.json() == DATA
    assert len(server.requests) == 2
    assert requests_total(registry, "error") == 1
    assert requests_total(registry, "200") == 1


async def test_read_timeouts_past_retries_raise_timeout(
    server: FakeForumServer, make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    server.inject(Fault("delay", seconds=0.6, count=2))
    with pytest.raises(TransportError) as caught:
        await make_client(read_timeout=0.2, max_retries=1).get(server.base_url + "/data.json")
    assert caught.value.reason == "timeout"
    assert len(server.requests) == 2
    assert requests_total(registry, "error") == 2


async def test_reset_mid_body_is_retried(
    server: FakeForumServer, make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    server.inject(Fault("reset"))
    response = await make_client().get(server.base_url + "/data.json")
    assert response.json() == DATA
    assert requests_total(registry, "error") == 1
    assert requests_total(registry, "200") == 1


async def test_resets_past_retries_raise_connect(
    server: FakeForumServer, make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    server.inject(Fault("reset", count=2))
    with pytest.raises(TransportError) as caught:
        await make_client(max_retries=1).get(server.base_url + "/data.json")
    assert caught.value.reason == "connect"
    assert caught.value.host == HOST
    assert len(server.requests) == 2
    assert requests_total(registry, "error") == 2


# --- bodies ---------------------------------------------------------------------------------


async def test_truncated_json_is_malformed(
    server: FakeForumServer,
    router: Router,
    make_client: ClientFactory,
    registry: CollectorRegistry,
    real_samples: Path,
) -> None:
    # a recorded Reddit empty listing (102 bytes), cut to its first 51 bytes by the fault
    recorded = (real_samples / "reddit" / "r_askreddit_comments_before_empty.json").read_bytes()
    json.loads(recorded)  # whole, it parses
    router.add(
        "/recorded.json",
        lambda _r: FakeResponse(200, recorded, {"Content-Type": "application/json"}),
    )
    server.inject(Fault("truncate"))
    response = await make_client().get(server.base_url + "/recorded.json")
    assert response.status == 200
    assert len(response.content) == 51
    with pytest.raises(MalformedResponse) as caught:
        response.json()
    assert caught.value.reason == "malformed"
    assert "application/json" in str(caught.value)
    assert requests_total(registry, "200") == 1


async def test_html_error_page_with_200_is_malformed_naming_the_type(
    server: FakeForumServer, make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    server.inject(Fault("html"))
    response = await make_client().get(server.base_url + "/data.json")
    with pytest.raises(MalformedResponse) as caught:
        response.json()
    assert "text/html" in str(caught.value)
    assert caught.value.host == HOST
    assert requests_total(registry, "200") == 1


async def test_huge_body_with_content_length_is_refused_unread(
    server: FakeForumServer, make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    server.inject(Fault("huge", size=10 * MIB))
    transport = CountingTransport()
    with pytest.raises(ResponseTooLarge) as caught:
        await make_client(transport=transport, max_body_bytes=MIB).get(
            server.base_url + "/data.json"
        )
    assert caught.value.reason == "too_large"
    assert "announced" in str(caught.value)  # refused on the Content-Length header
    (stream,) = transport.streams
    assert stream.pulled < MIB  # the 10 MiB body was never read
    assert len(server.requests) == 1  # and not asked again
    assert requests_total(registry, "error") == 1


# --- per-host rate ---------------------------------------------------------------------------


async def warmed_and_idle(client: PoliteClient, server: FakeForumServer, idle: float) -> None:
    """One request (a client's first pays ~40 ms of setup, which would squeeze the next gap),
    then ``idle`` seconds so the host's bucket is empty again, then a fresh request log."""
    await client.get(server.base_url + "/data.json")
    await asyncio.sleep(idle)
    server.clear()


def assert_spaced(times: list[float], *, spacing: float, burst: int = 1) -> None:
    """No window holds more than the burst plus what the rate allows (pairwise, sorted)."""
    ordered = sorted(times)
    for i, earlier in enumerate(ordered):
        for j in range(i + 1, len(ordered)):
            allowed = (max(0, j - i - (burst - 1)) - RATE_SLACK) * spacing
            assert ordered[j] - earlier >= allowed, (i, j, ordered)


async def test_rate_spaces_requests_evenly_with_no_burst(
    server: FakeForumServer, make_client: ClientFactory
) -> None:
    # 120/min is one request every 0.5 s; three at once from an idle bucket must still
    # be spaced: the old per_minute/6-per-10s bucket let 20 through back to back
    client = make_client(rate=120)
    await warmed_and_idle(client, server, 0.5)
    await asyncio.gather(*(client.get(server.base_url + "/data.json") for _ in range(3)))
    times = arrivals(server)
    assert len(times) == 3
    assert_spaced(times, spacing=0.5)


async def test_rate_burst_lets_that_many_go_back_to_back(
    server: FakeForumServer, make_client: ClientFactory
) -> None:
    # 120/min is 0.5 s apart; a bucket of 2 sends two at once, then the spacing starts.
    # Half a spacing tells "together" from "spaced", with room for a busy machine to start
    # two connections and server threads (at 0.2 s apart only 0.1 s was left for that)
    client = make_client(rate=120, rate_burst=2)
    await warmed_and_idle(client, server, 1.0)
    await asyncio.gather(*(client.get(server.base_url + "/data.json") for _ in range(4)))
    times = sorted(arrivals(server))
    assert times[1] - times[0] < 0.25  # the two went together
    assert_spaced(times, spacing=0.5, burst=2)


async def test_lowest_rate_asked_wins(server: FakeForumServer, make_client: ClientFactory) -> None:
    client = make_client(rate=300)
    client.set_rate(HOST, 100000)  # a faster ask does not loosen it
    await warmed_and_idle(client, server, 0.2)
    await asyncio.gather(*(client.get(server.base_url + "/data.json") for _ in range(3)))
    assert_spaced(arrivals(server), spacing=0.2)


# --- X-Ratelimit-* ---------------------------------------------------------------------------


async def test_recorded_reddit_budget_sets_the_gauge_without_pausing(
    server: FakeForumServer,
    router: Router,
    make_client: ClientFactory,
    registry: CollectorRegistry,
    real_samples: Path,
) -> None:
    # the headers Reddit sent with interaction #2 of the recorded asyncpraw cassette:
    # x-ratelimit-remaining "596.0", x-ratelimit-reset "355", x-ratelimit-used "4"
    cassette = real_samples / "reddit" / "cassettes"
    recorded = json.loads(
        (cassette / "asyncpraw_TestComment.test_refresh__deleted_comment.json").read_text()
    )
    headers = recorded["interactions"][1]["response"]["headers"]
    budget = {k: v for k, v in headers.items() if k.lower().startswith("x-ratelimit")}
    assert budget["x-ratelimit-remaining"] == "596.0"
    router.add("/budget", lambda _r: FakeResponse.json(DATA, **budget))
    client = make_client()
    await client.get(server.base_url + "/budget")
    gauge = registry.get_sample_value("forum_monitor_rate_limit_remaining", {"host": HOST})
    assert gauge == 596.0
    assert client.blocked_until(HOST) == 0.0


async def test_spent_budget_pauses_the_host_until_reset(
    server: FakeForumServer, router: Router, make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    spent = {"X-Ratelimit-Remaining": "0.0", "X-Ratelimit-Reset": "1", "X-Ratelimit-Used": "600"}
    router.add("/budget", lambda _r: FakeResponse.json(DATA, **spent))
    client = make_client()
    await client.get(server.base_url + "/budget")
    assert registry.get_sample_value("forum_monitor_rate_limit_remaining", {"host": HOST}) == 0.0
    await client.get(server.base_url + "/data.json")
    (spent_at,) = arrivals(server, "/budget")
    (next_at,) = arrivals(server, "/data.json")
    assert next_at - spent_at >= 1.0


async def test_spent_budget_with_a_long_reset_refuses_without_sending(
    server: FakeForumServer, router: Router, make_client: ClientFactory
) -> None:
    spent = {"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "304"}
    router.add("/budget", lambda _r: FakeResponse.json(DATA, **spent))
    client = make_client(max_retry_wait=5.0)
    await client.get(server.base_url + "/budget")
    with pytest.raises(RateLimited) as caught:
        await client.get(server.base_url + "/data.json")
    assert 300.0 < caught.value.retry_after <= 304.0
    assert arrivals(server, "/data.json") == []


async def test_reset_given_as_unix_time_is_not_taken_for_seconds(
    server: FakeForumServer, router: Router, make_client: ClientFactory
) -> None:
    # GitHub-style reset: the Unix time the budget refills, 3 s from now
    reset_at = math.floor(time.time()) + 3
    spent = {"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": str(reset_at)}
    router.add("/budget", lambda _r: FakeResponse.json(DATA, **spent))
    client = make_client(max_retry_wait=0.5)
    await client.get(server.base_url + "/budget")
    assert client.blocked_until(HOST) == pytest.approx(reset_at, abs=0.01)
    with pytest.raises(RateLimited) as caught:
        await client.get(server.base_url + "/data.json")
    assert 0.5 < caught.value.retry_after <= 3.0


# --- conditional requests ---------------------------------------------------------------------


async def test_validators_make_a_conditional_request_and_304_is_not_an_error(
    server: FakeForumServer, router: Router, make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    etag = '"v1"'
    modified = "Wed, 21 Oct 2015 07:28:00 GMT"

    def conditional(request: Request) -> FakeResponse:
        if request.headers.get("if-none-match") == etag:
            return FakeResponse(304, b"", {"ETag": etag})
        return FakeResponse.json(DATA, ETag=etag, **{"Last-Modified": modified})

    router.add("/feed.json", conditional)
    client = make_client()
    counter = RequestCounter()
    first = await client.get(server.base_url + "/feed.json", counter=counter)
    assert first.validators == {"etag": etag, "last_modified": modified}
    assert not first.not_modified
    second = await client.get(
        server.base_url + "/feed.json", validators=first.validators, counter=counter
    )
    assert second.status == 304
    assert second.not_modified
    assert counter.requests == 2
    assert counter.not_modified == 1
    plain, conditional_request = server.requests
    assert "if-none-match" not in plain.headers
    assert conditional_request.headers["if-none-match"] == etag
    assert conditional_request.headers["if-modified-since"] == modified
    assert requests_total(registry, "200") == 1
    assert requests_total(registry, "304") == 1


# --- the code label --------------------------------------------------------------------------


ODD_STATUSES = [207, 226, 299, 418, 426, 451, 509, 520, 599, 999]
"""Statuses a hostile or odd server may answer (999 is no HTTP status at all)."""


async def test_odd_statuses_share_one_code_label(
    server: FakeForumServer, router: Router, make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    router.add(
        lambda path: path.startswith("/status/"),
        lambda request: FakeResponse.json({}, status=int(request.path.rsplit("/", 1)[1])),
    )
    client = make_client(max_retries=0)
    for status in [*ODD_STATUSES, 200, 404, 503]:
        try:
            await client.get(f"{server.base_url}/status/{status}")
        except HTTPStatusError as exc:
            assert exc.status == status  # the error keeps the real status
    assert len(server.requests) == 13
    codes = {
        sample.labels["code"]: sample.value
        for metric in registry.collect()
        if metric.name == "forum_monitor_http_requests"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["host"] == HOST
    }
    assert codes == {"other": 10.0, "200": 1.0, "404": 1.0, "503": 1.0}
