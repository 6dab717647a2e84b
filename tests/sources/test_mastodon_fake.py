"""The Mastodon adapter against a fake instance over real sockets on 127.0.0.1.

Every status is made by the test, so expected ids, counts and request numbers
follow from what each test adds and from pages of 40.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.config import Settings, settings_from_mapping
from monitor.errors import MalformedResponse
from monitor.fakeforum.mastodon import FakeMastodon
from monitor.fakeforum.server import FakeForumServer, FakeResponse, Fault, Router
from monitor.sources.base import Batch
from monitor.sources.mastodon import Mastodon
from monitor.telemetry import Telemetry
from tests.sources.polling import SourcePoller, fake_settings
from tests.support import FAULT_HTTP, FAULTS, running_service, served, service_config, stored_posts

NOW = 1_750_000_000
DAY = 86400
TIMELINE = "/api/v1/timelines/tag/"


@pytest.fixture
def fake() -> FakeMastodon:
    return FakeMastodon()


@pytest.fixture
def server(fake: FakeMastodon) -> Iterator[FakeForumServer]:
    with served(fake) as running:
        yield running


def make_settings(
    server: FakeForumServer, *, hashtag: str = "gigwork", local: bool = False
) -> Settings:
    community = {"id": "tag", "source": "mastodon", "base_url": server.base_url}
    return fake_settings({**community, "hashtag": hashtag, "local": local})


Poller = partial(SourcePoller, Mastodon, now=NOW)
"""``Poller(telemetry, settings)``: polls the settings' first community, keeping its cursor."""


@pytest.fixture
async def poller(server: FakeForumServer, telemetry: Telemetry) -> Any:
    async with Poller(telemetry, make_settings(server)) as polling:
        yield polling


def ids(batch: Batch) -> list[str]:
    return [e.item.external_id for e in batch.envelopes]


def add_many(fake: FakeMastodon, count: int, *, start: int, step: int = 60) -> list[str]:
    return [fake.add_status("gigwork", created=start + n * step) for n in range(count)]


def test_fake_renders_the_recorded_shape(fake: FakeMastodon, real_samples: Path) -> None:
    recorded = json.loads((real_samples / "mastodon" / "fosstodon_tag_rstats.json").read_text())
    status = fake.render(fake.statuses[int(fake.add_status("x", created=NOW))])
    assert set(status) <= set(recorded[0])
    assert set(status["account"]) <= set(recorded[0]["account"])
    assert status["created_at"].endswith(".000Z") and len(status["created_at"]) == 24


async def test_fake_pages_like_mastodon(fake: FakeMastodon, server: FakeForumServer) -> None:
    made = add_many(fake, 50, start=NOW - 3000)
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        newest = (await http.get(TIMELINE + "gigwork")).json()
        assert [s["id"] for s in newest] == made[::-1][:20]  # default limit 20, newest first
        page = await http.get(TIMELINE + "GigWork", params={"limit": 100, "max_id": made[10]})
        assert [s["id"] for s in page.json()] == made[:10][::-1]  # capped at 40, older than
        assert 'rel="next"' in page.headers["link"]
        after = await http.get(TIMELINE + "gigwork", params={"min_id": made[5], "limit": 3})
        assert [s["id"] for s in after.json()] == made[6:9][::-1]  # immediately newer
        since = await http.get(TIMELINE + "gigwork", params={"since_id": made[5], "limit": 3})
        assert [s["id"] for s in since.json()] == made[47:][::-1]  # the newest ones
        assert (await http.get(TIMELINE + "nothing")).json() == []


async def test_first_poll_reaches_back_history_days(
    fake: FakeMastodon, poller: SourcePoller
) -> None:
    fake.add_status("gigwork", created=NOW - 31 * DAY)
    inside = fake.add_status("gigwork", created=NOW - 29 * DAY)
    fresh = fake.add_status("gigwork", created=NOW - DAY)
    fake.add_status("other", created=NOW - DAY)
    batch = await poller.poll()
    assert ids(batch) == [inside, fresh]  # oldest first
    assert batch.requests == 1 and batch.complete
    # the statuses of the last 15 minutes up to the newest: only the newest itself
    assert poller.cursor == {"last_id": fresh, "seen": [fresh]}


async def test_cycles_return_exactly_the_new_items_at_the_request_bound(
    fake: FakeMastodon, server: FakeForumServer, poller: SourcePoller
) -> None:
    first = add_many(fake, 5, start=NOW - 10 * DAY)
    assert ids(await poller.poll()) == first
    idle = await poller.poll()  # reads the last 15 minutes again: the 5, all seen
    assert (ids(idle), idle.requests) == ([], 1)
    # rounds a day apart, a status a minute: each poll also reads the previous round's
    # statuses of the 15 minutes below the cursor (min(15, its size)) and skips them
    expected_requests = {
        1: 1,  # 1 + 5 read: one short page
        39: 2,  # 39 + 1 = 40: a full page, then an empty one
        40: 2,  # 40 + 15 = 55
        41: 2,  # 41 + 15 = 56
        120: 4,  # 120 + 15 = 135: 40, 40, 40, 15
    }
    for day, (count, requests) in enumerate(expected_requests.items()):
        made = add_many(fake, count, start=NOW - (9 - day) * DAY)
        batch = await poller.poll()
        assert ids(batch) == made
        assert batch.complete
        assert batch.requests == requests <= math.ceil(count / 40) + 1


async def test_a_backlog_over_the_page_bound_continues_next_poll(
    fake: FakeMastodon, poller: SourcePoller, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_many(fake, 2, start=NOW - 5 * DAY)
    await poller.poll()
    monkeypatch.setattr(Mastodon, "max_pages", 2)
    backlog = add_many(fake, 100, start=NOW - DAY)
    first = await poller.poll()
    # two pages: the 2 seen statuses of the overlap and 38 new, then 40 new
    assert ids(first) == backlog[:78] and not first.complete and first.requests == 2
    second = await poller.poll()
    # 15 seen (the cursor's last 15 minutes) and the 22 left: one short page
    assert ids(second) == backlog[78:] and second.complete and second.requests == 1


async def test_a_status_that_federates_in_late_is_caught_within_the_overlap(
    fake: FakeMastodon, poller: SourcePoller
) -> None:
    newest = fake.add_status("gigwork", created=NOW - 3600)
    await poller.poll()
    late = fake.add_status("gigwork", created=NOW - 3600 - 600, local=False)  # 10 min older
    too_late = fake.add_status("gigwork", created=NOW - 3600 - 1200, local=False)  # 20 min
    assert int(too_late) < int(late) < int(newest)  # ids follow creation time
    batch = await poller.poll()
    assert ids(batch) == [late]  # the 20-minute straggler is below the overlap: missed
    assert ids(await poller.poll()) == []


async def test_a_late_status_with_an_id_from_its_arrival_is_caught_however_late(
    fake: FakeMastodon, poller: SourcePoller
) -> None:
    """Some remote statuses get ids from when the instance received them, not from their
    ``created_at`` (on real timelines, minutes to an hour later): above the cursor."""
    newest = fake.add_status("gigwork", created=NOW - 3600)
    await poller.poll()
    late = fake.add_status("gigwork", created=NOW - 3 * 3600, arrived=NOW - 60, local=False)
    assert int(late) > int(newest)  # its id is its arrival, two hours after its creation
    batch = await poller.poll()
    assert ids(batch) == [late]
    assert batch.envelopes[0].item.created_at == NOW - 3 * 3600  # counted on its own day
    assert ids(await poller.poll()) == []


async def test_a_long_first_poll_goes_on_in_the_next_polls(
    fake: FakeMastodon, poller: SourcePoller, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Mastodon, "max_pages", 2)
    made = add_many(fake, 100, start=NOW - 2 * DAY, step=600)
    first = await poller.poll()
    assert ids(first) == made[20:]  # the newest 80
    assert (first.complete, first.covered_from) == (False, None)
    # seen: the statuses of the 15 minutes up to the newest, 10 minutes apart; pending:
    # the walk back goes on below the lowest status fetched, down to history_days
    assert poller.cursor == {
        "last_id": made[-1],
        "seen": made[-2:],
        "pending": {"max_id": made[20], "floor_time": NOW - 30 * DAY},
    }
    newer = fake.add_status("gigwork", created=NOW - 60)
    second = await poller.poll()
    # forward first (the overlap's 2 seen and the new one), then the last 20 below
    assert ids(second) == [*made[:20], newer]
    assert second.requests == 2
    assert (second.complete, second.covered_from) == (True, NOW - 30 * DAY)
    assert "pending" not in poller.cursor
    assert ids(await poller.poll()) == []


async def test_replies_find_their_thread_through_parents(
    fake: FakeMastodon, poller: SourcePoller
) -> None:
    root = fake.add_status("gigwork", created=NOW - 900)
    reply = fake.add_status("gigwork", created=NOW - 800, reply_to=root)
    nested = fake.add_status("gigwork", created=NOW - 700, reply_to=reply)
    stray = fake.add_status("gigwork", created=NOW - 600, reply_to="12345")
    items = {e.item.external_id: e.item for e in (await poller.poll()).envelopes}
    assert (items[reply].thread_id, items[reply].parent_id) == (root, root)
    assert (items[nested].thread_id, items[nested].parent_id) == (root, reply)
    assert items[stray].thread_id == "12345"  # the parent is not on the timeline
    later = fake.add_status("gigwork", created=NOW - 100, reply_to=nested)
    (again,) = (await poller.poll()).envelopes
    assert (again.item.external_id, again.item.thread_id) == (later, root)  # remembered


async def test_boosts_edits_and_the_local_filter(
    fake: FakeMastodon, server: FakeForumServer, telemetry: Telemetry
) -> None:
    own = fake.add_status("gigwork", created=NOW - 500, content="<p>Pay cut again</p>")
    remote = fake.add_status("gigwork", created=NOW - 400, local=False)
    fake.add_status("gigwork", created=NOW - 300, boost_of=own)
    fake.edit(own, content="<p>Pay cut again (edited)</p>", at=NOW - 200)
    everyone = Poller(telemetry, make_settings(server))
    local = Poller(telemetry, make_settings(server, local=True))
    async with everyone, local:
        batch = await everyone.poll()
        assert ids(batch) == [own, remote]  # the boost is not a post
        items = {e.item.external_id: e.item for e in batch.envelopes}
        assert items[own].edited_at == NOW - 200 and "(edited)" in items[own].text
        assert items[remote].author == "member@other.example"
        assert ids(await local.poll()) == [own]
        assert server.requests[-1].query["local"] == ["true"]


async def test_a_timeline_that_is_not_a_list_is_malformed(telemetry: Telemetry) -> None:
    router = Router()
    router.add(lambda path: path.startswith(TIMELINE), lambda _: FakeResponse.json({"error": 1}))
    with FakeForumServer(router) as server:
        async with Poller(telemetry, make_settings(server)) as polling:
            with pytest.raises(MalformedResponse, match="not a list of statuses"):
                await polling.poll()
            assert polling.cursor == {}


# -- through the whole service -----------------------------------------------------


def tag_config(server: FakeForumServer, tmp_path: Path) -> dict[str, Any]:
    community = {"id": "tag", "source": "mastodon", "base_url": server.base_url}
    return service_config(tmp_path, [{**community, "hashtag": "gigwork"}], **FAULT_HTTP)


async def test_no_author_name_reaches_the_store(
    fake: FakeMastodon, server: FakeForumServer, tmp_path: Path
) -> None:
    now = int(time.time())
    root = fake.add_status("gigwork", created=now - 600, author="alice_gigworker")
    fake.add_status("gigwork", created=now - 300, author="bob_rider", local=False, reply_to=root)
    async with running_service(settings_from_mapping(tag_config(server, tmp_path))) as service:
        (polled,) = await service.poll_all()
        assert (polled.outcome, polled.new_items) == ("ok", 2)
    with sqlite3.connect(tmp_path / "store.db") as db:
        dump = "\n".join(db.iterdump())
    assert dump.count('INSERT INTO "posts"') == 2 and root in dump  # the statuses are there
    assert "alice_gigworker" not in dump and "bob_rider" not in dump


@pytest.mark.parametrize(("fault", "reason"), FAULTS, ids=[r for _, r in FAULTS])
async def test_every_fault_is_counted_then_nothing_lost_or_duplicated(
    fake: FakeMastodon, server: FakeForumServer, tmp_path: Path, fault: Fault, reason: str
) -> None:
    now = int(time.time())
    first = add_many(fake, 3, start=now - 10 * 3600)
    async with running_service(settings_from_mapping(tag_config(server, tmp_path))) as service:
        (ok,) = await service.poll_all()
        assert (ok.outcome, ok.new_items) == ("ok", 3)
        later = add_many(fake, 4, start=now - 5 * 3600)
        server.inject(replace(fault, path_prefix=TIMELINE))
        (failed,) = await service.poll_all()
        assert failed.outcome == reason
        labels = {"community": "tag", "source": "mastodon", "reason": reason}
        assert service.registry.get_sample_value("forum_monitor_poll_failures_total", labels) == 1
        if reason == "rate_limited":
            await asyncio.sleep(3.1)  # the server asked for 3 s; a poll before is deferred
        (recovered,) = await service.poll_all()
        assert (recovered.outcome, recovered.new_items) == ("ok", 4)
        assert service.engine is not None
        assert stored_posts(service.engine, "tag") == (len(first + later),) * 2
