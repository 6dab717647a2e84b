"""Reading one community costs the same however many are watched: the API builds only the
view it answers with. Counted, not timed (``bench/capacity_read.py`` times it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from monitor import api
from monitor.service import Service
from monitor.web.view import community_view
from tests.synthetic import NOW, community_ids, filled_snapshots, settings_for

COMMUNITIES = 300


@pytest.fixture(scope="module")
def service() -> Service:
    settings = settings_for(COMMUNITIES)
    service = Service(settings, clock=lambda: NOW)
    service.snapshots = filled_snapshots(settings)
    return service


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The ids of the community views the app builds, in order."""
    found: list[str] = []

    def counting(community, snapshot, **kwargs):  # type: ignore[no-untyped-def]
        found.append(community.id)
        return community_view(community, snapshot, **kwargs)

    monkeypatch.setattr(api, "community_view", counting)
    yield found


@pytest.fixture
async def client(service: Service, built: list[str]) -> AsyncIterator[httpx.AsyncClient]:
    """The app in process (its lifespan, which would open a store, is not run)."""
    app = api.create_app(service, schedule=False, clock=lambda: NOW)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield http


@pytest.mark.parametrize(
    "path", ["/api/v1/communities/{id}", "/api/v1/communities/{id}/series?signal=posts&days=30"]
)
async def test_one_community_builds_one_view(
    client: httpx.AsyncClient, built: list[str], path: str
) -> None:
    one = community_ids(COMMUNITIES)[-1]
    response = await client.get(path.format(id=one))
    assert response.status_code == 200, response.text
    assert built == [one]


async def test_an_unknown_community_builds_no_view_and_names_a_few_known_ones(
    client: httpx.AsyncClient, built: list[str]
) -> None:
    response = await client.get("/api/v1/communities/nowhere")
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert detail.startswith("community_id: no community 'nowhere'; known: community-0000, ")
    assert f"({COMMUNITIES} in all)" in detail
    assert len(detail) < 400
    assert built == []


async def test_the_list_still_builds_every_view(
    client: httpx.AsyncClient, built: list[str]
) -> None:
    body = (await client.get("/api/v1/communities")).json()
    assert [c["id"] for c in body["communities"]] == community_ids(COMMUNITIES)
    assert built == community_ids(COMMUNITIES)
