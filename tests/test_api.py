"""The JSON API and the pages, on the real service polling a fake forum over 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from monitor.api import MAX_SERIES_DAYS, create_app
from monitor.demo import demo_presentation, demo_settings
from monitor.fakeforum.scenario import DEMO_PLANS, Simulation
from monitor.service import Service
from tests.support import free_port


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The service polling the demo's fake forums, served by uvicorn on 127.0.0.1."""
    workdir: Path = tmp_path_factory.mktemp("api")
    now = int(time.time())
    simulation = Simulation(DEMO_PLANS).start()
    simulation.load_history(now=now, days=120, seed=3)
    service = Service(demo_settings(simulation, workdir=workdir))
    app = create_app(service, presentation=demo_presentation(simulation, now=now))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    body = http.get("/api/v1/communities").json()
                    if len(body["communities"]) == 3 and all(
                        c["last_success_at"] for c in body["communities"]
                    ):
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the first polls did not finish in 30 s"
                time.sleep(0.2)
            yield http
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        simulation.stop()


def test_communities_lists_every_community_with_its_state(client: httpx.Client) -> None:
    body = client.get("/api/v1/communities").json()
    assert body["simulated"] is True
    ids = [c["id"] for c in body["communities"]]
    assert ids == ["gigwork", "rival", "control"]
    gig = body["communities"][0]
    assert gig["source"] == "reddit" and gig["last_error"] is None
    assert gig["last_success_at"] is not None
    assert set(gig["windows"]) == {"1d", "7d", "28d"}
    assert gig["windows"]["7d"]["posts"] > 0
    assert gig["coverage"]["7d"] == pytest.approx(1.0)
    assert gig["events"][0]["label"].startswith("Platform cut pay")
    assert gig["status"] in {"declining", "steady", "growing", "down", "warming up"}
    for condition in gig["out_of_line"]:
        assert set(condition) == {"alert", "severity", "summary"}
    assert client.get("/api/v1/communities/control").json()["id"] == "control"


def test_series_has_daily_values_with_coverage(client: httpx.Client) -> None:
    response = client.get("/api/v1/communities/rival/series?signal=posts&days=90")
    assert response.status_code == 200
    body = response.json()
    assert body["signal"] == "posts" and body["days"] == 90 and len(body["points"]) == 90
    first, last = body["points"][0], body["points"][-1]
    assert first["timestamp"] % 86400 == 0 and last["timestamp"] - first["timestamp"] == 89 * 86400
    assert last["timestamp"] < time.time() and time.time() - last["timestamp"] < 2 * 86400
    assert all(p["coverage"] == pytest.approx(1.0) for p in body["points"])
    assert time.strftime("%Y-%m-%d", time.gmtime(first["timestamp"])) == first["day"]
    sentiment = client.get("/api/v1/communities/rival/series?signal=sentiment_mean&days=7")
    assert len(sentiment.json()["points"]) == 7
    default = client.get("/api/v1/communities/rival/series").json()
    assert default["signal"] == "posts" and default["days"] == 90


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("/api/v1/communities/nope/series?signal=posts", 404, "community_id: no community 'nope'"),
        ("/api/v1/communities/" + "x" * 500, 404, "community_id: no community 'xxx"),
        ("/api/v1/nothing-here", 404, "path: nothing at '/api/v1/nothing-here'"),
        ("/api/v1/communities/nope", 404, "known: control, gigwork, rival"),
        ("/api/v1/communities/gigwork/series?days=-1", 422, "days: Input should be greater"),
        ("/api/v1/communities/gigwork/series?days=0", 422, "days:"),
        ("/api/v1/communities/gigwork/series?days=100000", 422, f"equal to {MAX_SERIES_DAYS}"),
        ("/api/v1/communities/gigwork/series?days=ten", 422, "days: Input should be a valid"),
        ("/api/v1/communities/gigwork/series?signal=likes", 422, "signal: Input should be"),
    ],
)
def test_bad_parameters_are_4xx_with_a_clear_message(
    client: httpx.Client, url: str, status: int, words: str
) -> None:
    response = client.get(url)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert len(response.json()["detail"]) < 200  # a refused value is not echoed in full


def test_openapi_and_offline_docs(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    assert "/api/v1/communities/{community_id}/series" in schema["paths"]
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "/api/v1/communities/{community_id}/series" in docs.text
    assert "negative_ratio" in docs.text  # the signal enum is listed
    assert "cdn" not in docs.text.lower() and "<script" not in docs.text


@pytest.mark.parametrize("path", ["/", "/community/gigwork"])
def test_status_pages_are_self_contained(client: httpx.Client, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "Simulated data" in html
    assert "<script" not in html and "<link" not in html
    assert "src=" not in html
    assert 'href="http' not in html
    assert '<meta name="viewport"' in html


def test_the_status_table_links_each_community_to_its_page_of_charts(client: httpx.Client) -> None:
    table = client.get("/").text
    for community in ("gigwork", "rival", "control"):
        assert f'<tr data-community="{community}"' in table
        assert f'href="/community/{community}"' in table
    assert "<svg" not in table
    gig = client.get("/community/gigwork").text
    assert gig.count("<svg") == 3  # posts, participants, sentiment
    assert "Platform cut pay rates" in gig
    assert 'data-community="rival"' not in gig
