"""What a hostile server says reaches the log escaped and cut, whichever way it comes in.

Whole polls through the service, against one server on 127.0.0.1 that answers every
community with words meant for the log: an OAuth ``error`` field of a megabyte with
forged lines in it, a redirect whose path decodes to CR LF and runs on for 8 KB, a
Content-Type of 8 KB, a Stack Exchange error object whose name and message forge lines.
Every record logged, and every failure's message (what the
status page shows), must be one line of bounded length.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from monitor.config import settings_from_mapping
from monitor.errors import MalformedResponse
from monitor.fakeforum.server import FakeForumServer, FakeResponse, Request
from monitor.poller import MAX_MESSAGE_LENGTH, PollOutcome, failure_of
from monitor.service import Service
from tests.support import service_config

FORGED = "2026-01-01 00:00:00,000 ERROR monitor.poller: forged"
LONGEST_LINE = 1000
"""Far above what a message quoting a few escaped, cut remote strings needs (~500)."""


def hostile(request: Request) -> FakeResponse:
    if request.path == "/api/v1/access_token":
        return FakeResponse.json({"error": f"x\n{FORGED}\n" + "y" * 1_000_000})
    if request.path == "/r/gone/new.json":
        # percent-encoded, so the header is legal; the path it names holds CR LF
        location = "/subreddits/search.json%0D%0A" + FORGED.replace(" ", "%20") + "/y" * 4000
        return FakeResponse(302, b"", {"Location": location})
    if request.path.startswith("/subreddits/search.json"):
        return FakeResponse.json({"kind": "Listing", "data": {"children": [], "after": None}})
    if request.path == "/d/posts.json":
        # another origin (another port): refused, and its target quoted in the error
        location = "http://127.0.0.1:9/%0A" + FORGED.replace(" ", "%20") + "/z" * 4000
        return FakeResponse(301, b"", {"Location": location})
    if request.path == "/se/2.3/questions":
        forged = f"x\n{FORGED}\n" + "y" * 30_000  # read: under the 64 KiB an error may hold
        error = {"error_id": 400, "error_name": forged, "error_message": forged}
        return FakeResponse(400, json.dumps(error).encode(), {"Content-Type": "application/json"})
    if request.path in ("/feed.xml", "/m/api/v1/timelines/tag/pay"):
        page = b"<html>not what you asked for</html>"
        return FakeResponse(200, page, {"Content-Type": "text/" + "h" * 8000})
    return FakeResponse(404)


async def poll_all(settings: dict[str, Any]) -> dict[str, PollOutcome]:
    service = Service(settings_from_mapping(settings), registry=CollectorRegistry())
    await service.open()
    try:
        return {outcome.community: outcome for outcome in await service.poll_all()}
    finally:
        await service.stop()


async def test_remote_words_reach_the_log_escaped_and_cut(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeForumServer(hostile) as server:
        base = server.base_url
        oauth = service_config(
            tmp_path / "oauth",
            [{"id": "token", "source": "reddit", "subreddit": "pay", "base_url": base}],
        )
        oauth["reddit"] = {"client_id": "id", "client_secret": "secret"}
        (tmp_path / "oauth").mkdir()
        anonymous = service_config(
            tmp_path / "anonymous",
            [
                {"id": "gone", "source": "reddit", "subreddit": "gone", "base_url": base},
                {"id": "forum", "source": "discourse", "base_url": base + "/d"},
                {"id": "news", "source": "rss", "url": base + "/feed.xml"},
                {"id": "toots", "source": "mastodon", "base_url": base + "/m", "hashtag": "pay"},
                {
                    "id": "so",
                    "source": "stackexchange",
                    "site": "stackoverflow",
                    "base_url": base + "/se",
                },
            ],
        )
        (tmp_path / "anonymous").mkdir()
        outcomes = await poll_all(oauth) | await poll_all(anonymous)

    assert {c: o.outcome for c, o in outcomes.items()} == {
        "token": "malformed",  # no token, only an "error"
        "gone": "http_4xx",  # redirected to a search page: no such subreddit
        "forum": "redirect",
        "news": "malformed",
        "toots": "malformed",
        "so": "http_4xx",  # the API's error object, its words quoted escaped
    }
    # ours: the service sets the HTTP stack's own loggers (httpx, httpcore) to WARNING
    for record in (r for r in caplog.records if r.name.startswith("monitor")):
        message = record.getMessage()
        assert "\n" not in message and "\r" not in message, message[:300]
        assert len(message) < LONGEST_LINE, message[:300]
    for outcome in outcomes.values():
        assert outcome.error is not None
        assert "\n" not in outcome.error and len(outcome.error) < LONGEST_LINE
    # each failure was logged, so the checks above looked at the hostile words; each
    # remote string is quoted escaped where the message is built (the poller's own
    # escaping of a whole message is only the net under that)
    failing = [r.getMessage() for r in caplog.records if "failing" in r.getMessage()]
    assert sorted(line.split()[2].rstrip(":") for line in failing) == sorted(outcomes)
    assert any("from 127.0.0.1 ('x\\n2026-01-01 00:00:00,000 ERROR" in line for line in failing)
    assert any(
        "(redirected to '/subreddits/search.json\\r\\n2026-01-01" in line for line in failing
    )
    assert any("redirected to '127.0.0.1' ('http://127.0.0.1:9/%0A2026" in line for line in failing)
    assert any("Stack Exchange error 400 'x\\n2026-01-01 00:00:00,000" in line for line in failing)


def test_a_failure_message_that_quoted_a_server_raw_is_escaped_and_cut() -> None:
    raw = MalformedResponse(f"no token ({'y' * 3000}\n{FORGED})", host="127.0.0.1")
    reason, message = failure_of(raw, what="poll", community="c")
    assert reason == "malformed"
    assert "\n" not in message
    assert len(message) == MAX_MESSAGE_LENGTH + len("''...")
    plain = MalformedResponse("expected JSON from 127.0.0.1", host="127.0.0.1")
    assert failure_of(plain, what="poll", community="c")[1] == "expected JSON from 127.0.0.1"
