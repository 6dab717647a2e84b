"""The HTTP policy where no socket is needed: header parsing, streamed bodies, odd transports.

Everything here goes through ``httpx.MockTransport`` or is a pure function; the
real-socket behaviour is in ``test_http.py``.
"""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

from monitor import __version__
from monitor.errors import MalformedResponse, RateLimited, RedirectRefused, ResponseTooLarge
from monitor.http import (
    HttpPolicy,
    PoliteClient,
    RequestCounter,
    Response,
    parse_rate_reset,
    parse_retry_after,
)
from monitor.telemetry import Telemetry
from tests.test_http_support import (
    HOST,
    MIB,
    ClientFactory,
    SleepRecorder,
    client_factory,
    requests_total,
    tight_policy,
)

URL = f"http://{HOST}/data.json"
OCT_21_2015_0728_UTC = 1445412480  # calendar.timegm((2015, 10, 21, 7, 28, 0))
CHUNK = 64 * 1024


@pytest.fixture
async def make_client(telemetry: Telemetry) -> AsyncIterator[ClientFactory]:
    make, close_all = client_factory(telemetry)
    yield make
    await close_all()


# --- Retry-After and X-Ratelimit-Reset parsing ------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 2 ", 2.0),
        ("0", 0.0),
        ("-5", 0.0),  # a negative wait is no wait
        ("inf", None),  # would block the host for good
        ("nan", None),
        ("soon", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # already past
        # a server cannot stop a community's polls for good: one hour at most
        ("1e300", 3600.0),
        ("3601", 3600.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 3600.0),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=OCT_21_2015_0728_UTC) == seconds


@pytest.fixture
def new_york_time() -> Iterator[None]:
    """Run with a local time zone that is not UTC, to catch dates read as local time."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.mark.usefixtures("new_york_time")
def test_retry_after_date_with_unknown_zone_is_gmt() -> None:
    # RFC 5322 "-0000" parses to a naive datetime; read as New York time it would be 4 h off
    header = "Wed, 21 Oct 2015 07:28:30 -0000"
    assert parse_retry_after(header, now=OCT_21_2015_0728_UTC) == 30.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("304", 304.0),  # Reddit: seconds until the window resets
        ("0.5", 0.5),
        (None, 60.0),  # no header: assume a one-minute window
        ("soon", 60.0),
        ("inf", 60.0),
        ("-3", 0.0),
        ("1700000003", 3.0),  # GitHub style: the Unix time of the reset
        ("1699999990", 0.0),  # a Unix time already past
        ("1e300", 3600.0),  # at most an hour, however far the server says
        ("253402300799", 3600.0),  # year 9999 as a Unix time
    ],
)
def test_parse_rate_reset(header: str | None, seconds: float) -> None:
    assert parse_rate_reset(header, now=1_700_000_000) == seconds


# --- Response -------------------------------------------------------------------------------


def response(content: bytes, **headers: str) -> Response:
    return Response(200, URL, httpx.Headers(headers), content)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\xff\xfe\xfa not utf-8",
        b"[" * 100_000,  # nesting deep enough to raise RecursionError, not ValueError
    ],
)
def test_json_that_does_not_parse_is_malformed(content: bytes) -> None:
    with pytest.raises(MalformedResponse) as caught:
        response(content, **{"content-type": "application/json; charset=utf-8"}).json()
    assert caught.value.host == HOST
    assert "'application/json' that does not parse" in str(caught.value)  # quoted: a server's word


def test_validators_absent_and_type_unknown() -> None:
    bare = response(b"<p>")
    assert bare.validators == {}
    with pytest.raises(MalformedResponse, match="unknown type"):
        bare.json()


# --- identity and configuration ---------------------------------------------------------------


def test_user_agent_without_contact() -> None:
    assert HttpPolicy().user_agent == f"forum-monitor/{__version__} (community health monitor)"


def test_burst_and_rate_must_be_positive(telemetry: Telemetry) -> None:
    with pytest.raises(ValueError, match="rate_burst"):
        HttpPolicy(rate_burst=0)
    client = PoliteClient(policy=tight_policy(), telemetry=telemetry)
    with pytest.raises(ValueError, match="greater than zero"):
        client.set_rate(HOST, 0)


# --- body size cap on a streamed body (no Content-Length) ------------------------------------


class Streamed:
    """A 200 whose body comes in ``chunks`` pieces of 64 KiB with no Content-Length."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.pulled = 0
        self.finished = False
        self.calls = 0

    async def body(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += 1
            yield b"x" * CHUNK
        self.finished = True

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        reply = httpx.Response(
            200, headers={"Content-Type": "application/json"}, content=self.body()
        )
        assert "content-length" not in reply.headers
        assert reply.headers["transfer-encoding"] == "chunked"
        return reply


async def test_streamed_body_past_the_cap_stops_reading_early(
    make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    streamed = Streamed(chunks=160)  # 10 MiB
    client = make_client(transport=httpx.MockTransport(streamed), max_body_bytes=MIB)
    with pytest.raises(ResponseTooLarge) as caught:
        await client.get(URL)
    assert caught.value.reason == "too_large"
    assert "passed the 1048576-byte cap" in str(caught.value)
    # 16 chunks make exactly 1 MiB (allowed); the 17th passes the cap and reading stops
    assert streamed.pulled == 17
    assert not streamed.finished
    assert streamed.calls == 1  # a too-large body is not asked for again
    assert requests_total(registry, "error") == 1


async def test_streamed_body_exactly_at_the_cap_is_accepted(make_client: ClientFactory) -> None:
    streamed = Streamed(chunks=16)  # 16 * 64 KiB = 1 MiB
    client = make_client(transport=httpx.MockTransport(streamed), max_body_bytes=MIB)
    reply = await client.get(URL)
    assert len(reply.content) == MIB
    assert streamed.finished


async def test_gzip_body_is_capped_by_its_decoded_size(
    make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    bomb = gzip.compress(b"0" * 10 * MIB)
    assert len(bomb) < 64 * 1024  # small on the wire, so Content-Length does not catch it

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=bomb)

    client = make_client(transport=httpx.MockTransport(handler), max_body_bytes=MIB)
    with pytest.raises(ResponseTooLarge, match="passed the"):
        await client.get(URL)
    assert requests_total(registry, "error") == 1


# --- failures that a retry would only repeat --------------------------------------------------


async def test_body_that_does_not_decode_is_malformed_and_not_retried(
    make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        # stream=, not content=: httpx would try to decode content= itself, in this handler
        return httpx.Response(
            200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip")
        )

    sleep = SleepRecorder()
    with pytest.raises(MalformedResponse) as caught:
        await make_client(transport=httpx.MockTransport(handler), sleep=sleep).get(URL)
    assert "does not decode" in str(caught.value)
    assert len(calls) == 1
    assert sleep.calls == []
    assert requests_total(registry, "error") == 1


async def test_redirect_loop_is_refused_after_five_hops_and_not_retried(
    make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(302, headers={"Location": URL})

    sleep = SleepRecorder()
    counter = RequestCounter()
    client = make_client(transport=httpx.MockTransport(handler), sleep=sleep)
    with pytest.raises(RedirectRefused) as caught:
        await client.get(URL, counter=counter)
    assert caught.value.reason == "redirect"
    assert "one time too many" in str(caught.value)
    assert len(calls) == 6  # the request and the 5 redirects it may follow
    assert counter.requests == 6  # each hop is a request sent
    assert sleep.calls == []
    assert requests_total(registry, "302") == 6


# --- backoff, 503 with Retry-After, injected clock --------------------------------------------


class Script:
    """Answers with the given statuses in turn (and 200 after them), with extra headers."""

    def __init__(self, *statuses: int, **headers: str) -> None:
        self.statuses = list(statuses)
        self.headers = headers
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.statuses:
            return httpx.Response(self.statuses.pop(0), headers=self.headers, json={"error": 1})
        return httpx.Response(200, json={"ok": True})


async def test_backoff_is_capped(make_client: ClientFactory, registry: CollectorRegistry) -> None:
    sleep = SleepRecorder()
    client = make_client(
        transport=httpx.MockTransport(Script(503, 503, 503, 503)),
        sleep=sleep,
        max_retries=4,
        backoff_base=1.0,
        backoff_cap=3.0,
    )
    assert (await client.get(URL)).json() == {"ok": True}
    # ceilings 1, 2, 4 -> 3 (cap), 8 -> 3 (cap); each wait is between half and all of it
    bounds = [(0.5, 1.0), (1.0, 2.0), (1.5, 3.0), (1.5, 3.0)]
    assert len(sleep.calls) == 4
    for waited, (low, high) in zip(sleep.calls, bounds, strict=True):
        assert low <= waited <= high
    assert requests_total(registry, "503") == 4


async def test_503_with_retry_after_is_rate_limited_and_waits(
    telemetry: Telemetry, registry: CollectorRegistry
) -> None:
    now = 1_000.0
    sleep = SleepRecorder()
    script = Script(503, **{"Retry-After": "2"})
    client = PoliteClient(
        policy=tight_policy(),
        telemetry=telemetry,
        transport=httpx.MockTransport(script),
        sleep=sleep,
        clock=lambda: now,
    )
    client.set_rate(HOST, 100000)
    try:
        assert (await client.get(URL)).json() == {"ok": True}
        assert sleep.calls == [2.0]  # the whole Retry-After, no backoff on top
        assert client.blocked_until(HOST) == 1_002.0
        assert script.calls == 2
        assert requests_total(registry, "503") == 1
    finally:
        await client.aclose()


async def test_long_retry_after_sets_the_block_from_the_injected_clock(
    telemetry: Telemetry,
) -> None:
    script = Script(429, **{"Retry-After": "30"})
    client = PoliteClient(
        policy=tight_policy(max_retry_wait=10.0),
        telemetry=telemetry,
        transport=httpx.MockTransport(script),
        clock=lambda: 1_000.0,
    )
    try:
        with pytest.raises(RateLimited) as caught:
            await client.get(URL)
        assert caught.value.retry_after == 30.0
        assert client.blocked_until(HOST) == 1_030.0
        assert client.blocked_until("elsewhere.example") == 0.0  # other hosts are not blocked
        assert script.calls == 1
    finally:
        await client.aclose()


async def test_form_post_goes_through_the_same_policy(
    make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(502)
        return httpx.Response(200, json={"access_token": "t"})

    counter = RequestCounter()
    client = make_client(transport=httpx.MockTransport(handler), sleep=SleepRecorder())
    reply = await client.request(
        "POST", URL, data={"grant_type": "client_credentials"}, auth=("id", "pw"), counter=counter
    )
    assert reply.json() == {"access_token": "t"}
    assert counter.requests == 2
    assert seen[1].method == "POST"
    assert seen[1].content == b"grant_type=client_credentials"
    assert seen[1].headers["authorization"].startswith("Basic ")
    assert requests_total(registry, "502") == 1
