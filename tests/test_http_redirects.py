"""Redirects: followed within the origin only, credentials never carried to another one.

The servers are real sockets on 127.0.0.1; two servers on two ports are two origins.
Every client here sends through ``LocalOnly``, which refuses (and records) any request
for a host other than 127.0.0.1: a policy that followed a redirect to
169.254.169.254 shows up as that record instead of a connection attempt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from monitor.config import settings_from_mapping
from monitor.errors import FAILURE_REASONS, RedirectRefused
from monitor.fakeforum.server import FakeForumServer, FakeResponse, Request
from monitor.http import HttpPolicy, PoliteClient, RequestCounter, redirect_refusal
from monitor.sources.discourse import Discourse
from monitor.telemetry import Telemetry
from tests.test_http_support import SleepRecorder, requests_total, tight_policy

POSTS = {"latest_posts": []}
SECRETS = {
    "authorization": "bearer token-1",
    "api-key": "key-1",
    "api-username": "system",
    "cookie": "session=abc",
    "x-private-token": "tok-1",
}


class LocalOnly(httpx.AsyncBaseTransport):
    """A real transport for 127.0.0.1; any other host is recorded and refused unsent."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.elsewhere: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != "127.0.0.1":
            self.elsewhere.append(str(request.url))
            raise httpx.ConnectError("this test sends nothing beyond 127.0.0.1", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Redirecting:
    """Answers ``path`` with ``status`` and ``Location: location``; anything else with JSON."""

    def __init__(self, path: str = "", location: str = "", status: int = 302) -> None:
        self.redirects: dict[str, tuple[int, str]] = {path: (status, location)} if path else {}

    def __call__(self, request: Request) -> FakeResponse:
        if request.path in self.redirects:
            status, location = self.redirects[request.path]
            return FakeResponse(status, b"", {"Location": location})
        return FakeResponse.json(POSTS)


@pytest.fixture
def home() -> Iterator[FakeForumServer]:
    with FakeForumServer(Redirecting()) as server:
        yield server


@pytest.fixture
def other() -> Iterator[FakeForumServer]:
    """Another origin: the same address, another port."""
    with FakeForumServer(Redirecting()) as server:
        yield server


@pytest.fixture
def guard() -> LocalOnly:
    return LocalOnly()


@pytest.fixture
async def clients(telemetry: Telemetry, guard: LocalOnly) -> AsyncIterator[Any]:
    made: list[PoliteClient] = []

    def make(**overrides: Any) -> PoliteClient:
        client = PoliteClient(
            policy=tight_policy(**overrides),
            telemetry=telemetry,
            transport=guard,
            sleep=SleepRecorder(),
        )
        client.set_rate("127.0.0.1", 100000)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


def sent_secrets(request: Request) -> set[str]:
    return set(SECRETS) & set(request.headers)


# --- where a redirect may go ----------------------------------------------------------------


async def test_a_redirect_to_the_metadata_address_is_refused_naming_it(
    home: FakeForumServer, clients: Any, guard: LocalOnly, registry: CollectorRegistry
) -> None:
    metadata = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    home.handler = Redirecting("/posts.json", metadata)
    counter = RequestCounter()
    with pytest.raises(RedirectRefused) as caught:
        await clients().get(home.base_url + "/posts.json", counter=counter)
    assert guard.elsewhere == []  # no request was even attempted there
    refused = caught.value
    assert refused.reason == "redirect"
    assert refused.target == metadata
    assert refused.host == "127.0.0.1"  # the host that sent the redirect
    # the message names where it pointed, not only the configured host
    assert "'169.254.169.254'" in str(refused)
    assert "another origin" in str(refused)
    assert len(home.requests) == 1  # and a refused redirect is not asked again
    assert counter.requests == 1
    assert requests_total(registry, "302") == 1


async def test_a_redirect_to_another_port_is_another_origin(
    home: FakeForumServer, other: FakeForumServer, clients: Any
) -> None:
    home.handler = Redirecting("/posts.json", other.base_url + "/posts.json", status=301)
    with pytest.raises(RedirectRefused) as caught:
        await clients().get(home.base_url + "/posts.json")
    assert other.requests == []
    assert f"'127.0.0.1' ('{other.base_url}/posts.json')" in str(caught.value)


async def test_a_same_origin_redirect_is_followed_with_its_credentials(
    home: FakeForumServer, clients: Any, registry: CollectorRegistry
) -> None:
    # relative, as Reddit sends an unknown subreddit to its search listing
    home.handler = Redirecting("/r/gone/new.json", "../../subreddits/search.json?q=gone")
    counter = RequestCounter()
    response = await clients().get(
        home.base_url + "/r/gone/new.json",
        params={"limit": 100},
        credentials=SECRETS,
        counter=counter,
    )
    assert response.json() == POSTS
    assert response.url == home.base_url + "/subreddits/search.json?q=gone"
    first, second = home.requests
    assert first.query == {"limit": ["100"]}
    assert (second.path, second.query) == ("/subreddits/search.json", {"q": ["gone"]})
    assert sent_secrets(first) == sent_secrets(second) == set(SECRETS)
    assert counter.requests == 2  # each hop is a request sent
    assert requests_total(registry, "302") == 1
    assert requests_total(registry, "200") == 1


async def test_credentials_stay_behind_even_on_an_allowed_hop_to_another_origin(
    home: FakeForumServer, other: FakeForumServer, clients: Any
) -> None:
    home.handler = Redirecting("/posts.json", other.base_url + "/posts.json", status=307)
    client = clients(redirect_sites=(frozenset({home.base_url, other.base_url}),))
    headers = {"User-Agent": "probe", "Cookie": "jar=1", "Authorization": "Basic eDp5"}
    response = await client.get(home.base_url + "/posts.json", headers=headers, credentials=SECRETS)
    assert response.json() == POSTS  # the allowed hop was followed
    (asked,) = home.requests
    (hop,) = other.requests
    assert sent_secrets(asked) == set(SECRETS)
    # neither the named credentials nor credential headers passed as plain headers
    assert sent_secrets(hop) == set()
    assert hop.headers["user-agent"] == "probe"


async def test_a_redirect_back_home_carries_credentials_again(
    home: FakeForumServer, other: FakeForumServer, clients: Any
) -> None:
    home.handler = Redirecting("/start", other.base_url + "/away")
    other.handler = Redirecting("/away", home.base_url + "/posts.json")
    client = clients(redirect_sites=(frozenset({home.base_url, other.base_url}),))
    await client.get(home.base_url + "/start", credentials=SECRETS)
    assert [sent_secrets(r) for r in home.requests] == [set(SECRETS), set(SECRETS)]
    assert [sent_secrets(r) for r in other.requests] == [set()]


async def test_a_post_is_not_redirected_even_within_its_origin(
    home: FakeForumServer, clients: Any
) -> None:
    home.handler = Redirecting("/api/v1/access_token", "/elsewhere/token", status=307)
    with pytest.raises(RedirectRefused, match="a POST is not redirected"):
        await clients().request(
            "POST",
            home.base_url + "/api/v1/access_token",
            data={"grant_type": "client_credentials"},
            auth=("id", "secret"),
        )
    assert [r.path for r in home.requests] == ["/api/v1/access_token"]


# --- the rules, as a pure function ----------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "target", "allowed"),
    [
        ("https://forum.test/a", "https://forum.test/b", True),
        ("https://forum.test/a", "https://forum.test:443/b", True),  # the default port spelled
        ("http://forum.test/feed", "https://forum.test/feed", True),  # asking for TLS
        ("http://forum.test:8080/feed", "https://forum.test:8443/feed", False),
        ("https://forum.test/a", "http://forum.test/a", False),  # never down to plain http
        ("https://forum.test/a", "https://cdn.forum.test/a", False),
        ("https://forum.test/a", "https://forum.test:8443/a", False),
        ("http://forum.test/a", "http://169.254.169.254/latest/meta-data/", False),
        ("https://forum.test/a", "ftp://forum.test/a", False),
        ("https://www.reddit.com/r/x/new.json", "https://oauth.reddit.com/r/x/new.json", True),
        ("https://reddit.com/r/x/new.json", "https://www.reddit.com/r/x/new.json", True),
        ("https://www.reddit.com/r/x/new.json", "http://www.reddit.com/r/x/new.json", False),
        ("https://www.reddit.com/r/x/new.json", "https://reddit.com.evil.test/r/x", False),
        ("https://www.reddit.com/r/x/new.json", "https://old.reddit.com/r/x/new.json", False),
        ("https://forum.test/a", "https://www.reddit.com/r/x/new.json", False),
    ],
)
def test_redirect_rules(start: str, target: str, allowed: bool) -> None:
    refusal = redirect_refusal(httpx.URL(start), httpx.URL(target))
    assert (refusal is None) is allowed, refusal


# --- through a source -----------------------------------------------------------------------


async def test_discourse_api_key_never_reaches_the_origin_a_redirect_names(
    home: FakeForumServer, other: FakeForumServer, telemetry: Telemetry, guard: LocalOnly
) -> None:
    home.handler = Redirecting("/posts.json", other.base_url + "/posts.json")
    settings = settings_from_mapping(
        {
            "http": {"rate_per_minute": {"127.0.0.1": 100000}},
            "discourse": {"api_key": "sekret"},
            "communities": [
                {
                    "id": "forum",
                    "source": "discourse",
                    "base_url": home.base_url,
                    "api_username": "system",
                }
            ],
        }
    )
    policy = HttpPolicy(connect_timeout=2, read_timeout=2, total_timeout=5, max_retries=0)
    client = PoliteClient(policy=policy, telemetry=telemetry, transport=guard)
    try:
        source = Discourse(settings.communities[0], settings=settings, client=client)
        with pytest.raises(RedirectRefused) as caught:
            await source.poll(cursor={}, validators={})
    finally:
        await client.aclose()
    assert other.requests == []
    assert home.requests[0].headers["api-key"] == "sekret"
    assert home.requests[0].headers["api-username"] == "system"
    assert f"{other.base_url}/posts.json" in str(caught.value)


def test_a_refused_redirect_is_counted_under_a_reason_of_its_own(
    telemetry: Telemetry, registry: CollectorRegistry
) -> None:
    """Not declared at zero: a moved forum fails every poll until its URL is fixed, so its
    series appears at the first (README, "Series per community")."""
    assert "redirect" in FAILURE_REASONS
    telemetry.declare_community("forum", "discourse", interval=300)
    labels = {"community": "forum", "source": "discourse", "reason": "redirect"}
    assert registry.get_sample_value("forum_monitor_poll_failures_total", labels) is None
    telemetry.poll_failures.labels(**labels).inc()
    assert registry.get_sample_value("forum_monitor_poll_failures_total", labels) == 1


async def test_a_cookie_a_server_sets_is_sent_nowhere(
    home: FakeForumServer, other: FakeForumServer, clients: Any
) -> None:
    def sets_a_cookie(request: Request) -> FakeResponse:
        return FakeResponse.json(POSTS, **{"Set-Cookie": "session=from-home; Path=/"})

    home.handler = sets_a_cookie
    client = clients()
    await client.get(home.base_url + "/posts.json")
    await client.get(home.base_url + "/posts.json")
    # cookies know no ports: a kept one would go to the other origin on this host too
    await client.get(other.base_url + "/posts.json")
    assert [r.headers.get("cookie") for r in [*home.requests, *other.requests]] == [None] * 3
