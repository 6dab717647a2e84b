"""Every route answers with nosniff, HTML with a strict Content-Security-Policy, and HEAD
wherever GET answers: the same status and headers, no body. Over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from monitor.api import create_app
from monitor.config import settings_from_mapping
from monitor.service import Service
from monitor.web.status import stylesheet
from tests.support import chromium, service_config, serving

ROUTES = [
    # (path, status of GET, is HTML)
    ("/", 200, True),
    ("/?sort=posts_7d&order=desc", 200, True),
    ("/community/quiet", 200, True),
    ("/docs", 200, True),
    ("/metrics", 200, False),
    ("/healthz", 200, False),
    ("/readyz", 503, False),  # not scheduled here: not ready, and says so
    ("/openapi.json", 200, False),
    ("/api/v1/communities", 200, False),
    ("/api/v1/communities/quiet", 200, False),
    ("/api/v1/communities/quiet/series?signal=posts&days=7", 200, False),
    ("/api/v1/communities/nowhere", 404, False),
    ("/api/v1/communities/quiet/series?days=0", 422, False),
    ("/no-such-page", 404, False),
    ("/community/nowhere", 404, False),
    ("/?sort=likes", 422, False),
]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app of one community (never polled) served by uvicorn on 127.0.0.1."""
    workdir: Path = tmp_path_factory.mktemp("headers")
    community = {
        "id": "quiet",
        "source": "reddit",
        "subreddit": "quiet",
        "base_url": "http://127.0.0.1:9",
    }
    service = Service(settings_from_mapping(service_config(workdir, [community])))
    with serving(create_app(service, schedule=False)) as url:
        yield url


@pytest.mark.parametrize(("path", "status", "html"), ROUTES, ids=[r[0] for r in ROUTES])
def test_every_route_says_nosniff_and_html_has_a_strict_policy(
    base_url: str, path: str, status: int, html: bool
) -> None:
    response = httpx.get(base_url + path)
    assert response.status_code == status
    assert response.headers["x-content-type-options"] == "nosniff"
    policy = response.headers.get("content-security-policy", "")
    if html:
        assert response.headers["content-type"].startswith("text/html")
        directives = dict(
            (part.split()[0], part.split()[1:]) for part in policy.split(";") if part.strip()
        )
        assert directives["default-src"] == ["'none'"], policy
        assert directives["frame-ancestors"] == ["'none'"], policy
        assert "script-src" not in directives and "'unsafe-inline'" not in policy, policy
        assert "'unsafe-eval'" not in policy and "*" not in policy, policy


@pytest.mark.parametrize("path", ["/", "/community/quiet", "/docs"])
def test_the_pages_own_stylesheet_is_the_one_style_the_policy_allows(
    base_url: str, path: str
) -> None:
    response = httpx.get(base_url + path)
    styles = re.findall(r"<style>(.*?)</style>", response.text, flags=re.DOTALL)
    assert styles == [stylesheet()]
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in response.headers["content-security-policy"]
    assert " style=" not in response.text  # an inline style attribute would be blocked


@pytest.mark.parametrize(("path", "status", "html"), ROUTES, ids=[r[0] for r in ROUTES])
def test_head_answers_wherever_get_does(base_url: str, path: str, status: int, html: bool) -> None:
    got = httpx.get(base_url + path)
    head = httpx.head(base_url + path)
    assert head.status_code == got.status_code == status
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["x-content-type-options"] == "nosniff"
    if "content-length" in head.headers:
        assert int(head.headers["content-length"]) > 0


def test_other_methods_are_still_refused(base_url: str) -> None:
    response = httpx.post(base_url + "/api/v1/communities")
    assert response.status_code == 405
    assert response.json()["detail"].startswith("method: POST is not allowed")
    assert "GET" in response.headers["allow"]
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/", "/community/quiet", "/docs"])
def test_chromium_applies_the_pages_under_their_policy(
    base_url: str, path: str, tmp_path: Path
) -> None:
    """A browser reports every blocked style in its console; there must be none."""
    shown = chromium(tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom", base_url + path)
    assert shown.returncode == 0, shown.stderr
    assert "<style>" in shown.stdout
    assert "Content Security Policy" not in shown.stderr, shown.stderr
