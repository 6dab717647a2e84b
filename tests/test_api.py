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
            deadline = time.monotonic() + 60
            while True:
                try:
                    body = http.get("/api/v1/communities").json()
                    if len(body["communities"]) == 4 and all(
                        c["last_success_at"] for c in body["communities"]
                    ):
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the first polls did not finish in 60 s"
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
    assert ids == ["gigwork", "rival", "rivalsub", "control"]
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
        ("/api/v1/communities/nope", 404, "known: control, gigwork, rival, rivalsub"),
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


def _flows_when_counted(client: httpx.Client, community: str) -> dict:  # type: ignore[type-arg]
    """The community's flows once its namespace was counted with every poll's posts."""
    deadline = time.monotonic() + 90  # generous: the whole test took 17 s on a loaded machine
    while True:
        body = client.get(f"/api/v1/communities/{community}/flows").json()
        windows = body["windows"]
        if windows and any(d["moved"] for d in windows[0]["destinations"]):
            return body  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"no flows after 90 s: {body}"
        time.sleep(0.5)


def test_departed_gig_workers_show_up_in_the_rival_subreddit(client: httpx.Client) -> None:
    """The demo's six gig-work members who move to the rival subreddit (of some nine who
    fell silent) are found by their namespace pseudonyms, on the same platform only."""
    body = _flows_when_counted(client, "gigwork")
    assert body["simulated"] is True and body["min_authors"] == 5
    (window,) = body["windows"]
    assert (window["window"], window["namespace"]) == ("28d", "reddit")
    departed = window["departed"]
    assert 8 <= departed <= 10
    by_id = {d["community"]: d for d in window["destinations"]}
    assert "rival" not in by_id  # the rival forum is another platform: never paired
    sub = by_id["rivalsub"]
    assert sub["moved"] == 6 and sub["ratio"] == pytest.approx(6 / departed)
    assert window["destinations"][0]["community"] == "rivalsub"
    # nobody of the control moved anywhere; the discourse rival has no reddit partner
    rival = client.get("/api/v1/communities/rival/flows").json()["windows"]
    assert [w["destinations"] for w in rival] == [[]]
    assert client.get("/api/v1/communities/nope/flows").status_code == 404
    page = client.get("/community/gigwork").text
    assert "Where departed participants went" in page
    went = page[page.index('<ul class="flows"') :].split("</ul>")[0]
    assert 'href="/community/rivalsub"' in went and f"(6 of {departed})" in went
    metrics = client.get("/metrics").text
    line = 'forum_participant_flow_ratio{community="gigwork",to_community="rivalsub",window="28d"}'
    assert line in metrics
    assert f'forum_departed_participants{{community="gigwork",window="28d"}} {departed}.0' in (
        metrics
    )
    assert 'to_community="rival"' not in metrics


def test_the_gig_work_community_talks_of_the_new_pay_tier_the_backlog_and_the_rival(
    client: httpx.Client,
) -> None:
    body = client.get("/api/v1/communities/gigwork/terms?days=7&limit=10").json()
    assert body["days"] == 7 and body["baseline_days"] == 28 and body["simulated"] is True
    top = [t["term"] for t in body["terms"]]
    assert "taskhive" in top[:3], top
    for term in ("tier change", "onboarding backlog"):
        assert term in top, top
    first = body["terms"][0]
    assert set(first) == {"term", "count", "baseline_rate", "expected", "score"}
    assert first["count"] > first["expected"] and first["score"] > 0
    # the steady control community has no such rise
    control = client.get("/api/v1/communities/control/terms").json()["terms"]
    assert not {"taskhive", "tier change", "onboarding backlog"} & {t["term"] for t in control}


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("days=0", "days: must be a whole number from 1 to 14; got '0'"),
        ("days=15", "days: must be a whole number from 1 to 14; got '15'"),
        ("days=seven", "days: must be a whole number from 1 to 14; got 'seven'"),
        ("days=-1", "days: must be a whole number from 1 to 14"),
        ("limit=51", "limit: must be a whole number from 1 to 50; got '51'"),
        ("limit=" + "9" * 500, "limit: must be a whole number from 1 to 50"),
        ("limit=%C2%B2", "limit: must be a whole number"),
    ],
)
def test_bad_terms_parameters_are_400_naming_the_parameter(
    client: httpx.Client, query: str, words: str
) -> None:
    response = client.get(f"/api/v1/communities/gigwork/terms?{query}")
    assert response.status_code == 400, response.text
    assert words in response.json()["detail"]
    assert len(response.json()["detail"]) < 200


def test_terms_of_an_unknown_community_are_404(client: httpx.Client) -> None:
    response = client.get("/api/v1/communities/nope/terms")
    assert response.status_code == 404
    assert response.json()["detail"].startswith("community_id: no community 'nope'")


def test_the_community_page_lists_what_rises_now(client: httpx.Client) -> None:
    page = client.get("/community/gigwork").text
    assert "<h3>Rising now</h3>" in page
    assert '<li data-term="taskhive">' in page
    assert "Rising now" not in client.get("/").text  # the overview stays a table


def test_rising_terms_are_bounded_gauges(client: httpx.Client) -> None:
    lines = [
        line
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("forum_term_rising_score{")
    ]
    gig = [line for line in lines if 'community="gigwork"' in line]
    assert 'term="taskhive"' in " ".join(gig)
    for community in ("gigwork", "rival", "control"):
        assert len([line for line in lines if f'community="{community}"' in line]) <= 10
