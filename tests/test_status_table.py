"""The status page at scale: one sortable row per community, under 1 MB at 1,000
communities, and a page of its own for each with the charts. No script anywhere: sorting
is a query parameter behind the column headings."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from monitor.api import create_app
from monitor.service import Service
from monitor.web.status import COLUMNS, SortBy
from tests.synthetic import NOW, community_ids, filled_snapshots, settings_for


def app_client(service: Service) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(service, schedule=False, clock=lambda: NOW))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


def service_of(count: int, *, analysed: int | None = None) -> Service:
    """``count`` communities, the first ``analysed`` (default all) with snapshots."""
    settings = settings_for(count)
    service = Service(settings, clock=lambda: NOW)
    service.use_snapshots(filled_snapshots(settings, analysed=analysed))
    return service


@pytest.fixture(scope="module")
def service() -> Service:
    return service_of(40, analysed=36)


@pytest.fixture
async def client(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(service) as http:
        yield http


def rows(page: str) -> list[tuple[str, str]]:
    """(community, verdict) of every row, top to bottom."""
    return re.findall(r'<tr data-community="([^"]+)" data-verdict="([^"]+)">', page)


def cells(page: str, community: str) -> list[str]:
    row = re.search(rf'<tr data-community="{community}"[^>]*>(.*?)</tr>', page)
    assert row is not None, community
    return re.findall(r"<td>(.*?)</td>", row.group(1))


def number(cell: str) -> float | None:
    found = re.search(r"[-+]?\d+(\.\d+)?", re.sub(r"<[^>]+>", "", cell))
    return float(found.group(0)) if found else None


async def test_every_community_is_one_row_linking_to_its_own_page(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/")).text
    assert sorted(c for c, _ in rows(page)) == community_ids(40)
    assert page.count('href="/community/community-0007"') == 1
    assert "<svg" not in page and "<script" not in page
    assert len(cells(page, "community-0007")) == len(COLUMNS)


async def test_by_default_what_needs_a_look_comes_first(client: httpx.AsyncClient) -> None:
    verdicts = [v for _, v in rows((await client.get("/")).text)]
    rank = ["down", "declining", "not analysed", "warming up", "growing", "steady"]
    assert verdicts == sorted(verdicts, key=rank.index)
    assert verdicts[0] == "declining" and "not analysed" in verdicts


@pytest.mark.parametrize(
    ("sort", "order", "column"),
    [
        ("posts_7d", "desc", 6),
        ("posts_7d", "asc", 6),
        ("participants_change", "asc", 7),
        ("sentiment_7d", "desc", 9),
    ],
)
async def test_sorting_by_a_column_puts_unknown_values_last(
    client: httpx.AsyncClient, sort: str, order: str, column: int
) -> None:
    page = (await client.get(f"/?sort={sort}&order={order}")).text
    values = [number(cells(page, community)[column]) for community, _ in rows(page)]
    known = [v for v in values if v is not None]
    assert known == sorted(known, reverse=order == "desc")
    assert values == known + [None] * (len(values) - len(known))
    assert len(known) == 36 or sort == "participants_change"


async def test_the_heading_of_the_sorted_column_reverses_it_and_the_others_sort_by_them(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/?sort=posts_7d&order=desc")).text
    assert '<th aria-sort="descending"><a href="/?sort=posts_7d&amp;order=asc">' in page
    assert 'href="/?sort=community&amp;order=asc"' in page
    assert 'href="/?sort=participants_change&amp;order=asc"' in page  # biggest drop first
    assert page.count("aria-sort=") == 1


@pytest.mark.parametrize("query", ["sort=likes", "order=sideways", "sort=posts_7d&order=up"])
async def test_a_bad_sort_is_refused_naming_the_parameter(
    client: httpx.AsyncClient, query: str
) -> None:
    response = await client.get(f"/?{query}")
    assert response.status_code == 422
    assert response.json()["detail"].split(":")[0] in {"sort", "order"}


async def test_a_community_page_has_its_facts_conditions_and_charts(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/community/community-0003")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert page.count("<svg") == 3 and "<script" not in page
    assert 'data-community="community-0003"' in page
    assert "<dt>Posts, 7 days</dt>" in page and "Out of line now" in page
    assert 'href="/"' in page
    not_analysed = (await client.get("/community/community-0039")).text
    assert "Not analysed yet" in not_analysed and "<svg" not in not_analysed
    missing = await client.get("/community/nowhere")
    assert missing.status_code == 404
    assert "community_id: no community 'nowhere'" in missing.json()["detail"]


async def test_the_page_of_1000_communities_with_the_longest_ids_is_under_1_mb() -> None:
    longest = [f"{cid}-{'x' * (63 - len(cid) - 1)}" for cid in community_ids(1000)]
    assert all(len(cid) == 63 for cid in longest)  # what the config allows
    settings = settings_for(1000, ids=longest)
    service = Service(settings, clock=lambda: NOW)
    service.use_snapshots(filled_snapshots(settings))
    async with app_client(service) as http:
        for query in ("", "?sort=posts_7d&order=desc"):
            page = (await http.get("/" + query)).content
            assert len(page) < 1_000_000, len(page)
            assert len(rows(page.decode())) == 1000


def test_every_column_can_be_sorted_by() -> None:
    assert [c.key for c in COLUMNS] == list(SortBy)
