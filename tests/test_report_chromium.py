"""The evidence report and a community's status page in headless Chromium.

The store is tests/report_store.py (a decline from 2024-05-12, an outage 2024-04-12..14).
The report is written by ``forum-monitor report`` as a user runs it; the status page is
the service's own rendering of that community. Screenshots go to docs/ (the README shows
them); the DOM Chromium built is checked for the dates on the axes, the gap and the onset.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from sqlmodel import Session

from monitor.analysis.snapshot import compute_snapshot
from monitor.web.status import render_community_page
from monitor.web.view import Annotation, Presentation, community_view
from tests import report_store as rs
from tests.support import REPO_ROOT, chromium

DOCS = REPO_ROOT / "docs"
PNG = b"\x89PNG\r\n\x1a\n"


def figure(dom: str, signal: str) -> str:
    found = re.search(rf'<figure class="chart" data-signal="{signal}">(.*?)</figure>', dom, re.S)
    assert found, f"no {signal} chart"
    return found.group(1)


def screenshot(tmp_path: Path, target: Path, size: str, url: str) -> None:
    shot = chromium(
        tmp_path, "--hide-scrollbars", f"--window-size={size}", f"--screenshot={target}", url
    )
    assert shot.returncode == 0, shot.stderr
    assert target.read_bytes()[:8] == PNG
    assert target.stat().st_size > 30_000  # a rendered page, not a blank one


def test_report_in_chromium(tmp_path: Path) -> None:
    engine, _ = rs.build(tmp_path / "gig.db")
    engine.dispose()
    config = tmp_path / "config.toml"
    config.write_text(
        f'pseudonym_key = "{rs.fx.KEY.decode()}"\n'
        f'database_url = "sqlite:///{tmp_path / "gig.db"}"\n'
        '[[communities]]\nid = "gig"\nsource = "reddit"\nsubreddit = "gigwork"\n'
        'interval = "1h"\n'
    )
    report = tmp_path / "report.html"
    made = subprocess.run(
        [sys.executable, "-m", "monitor", "report", "--config", str(config),
         "--community", "gig", "--since", "2024-03-01", "--until", "2024-05-31",
         "--out", str(report)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    url = report.as_uri()

    screenshot(tmp_path, DOCS / "report.png", "900,2600", url)
    pdf = tmp_path / "report.pdf"
    printed = chromium(tmp_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", url)
    assert printed.returncode == 0, printed.stderr
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert len(re.findall(rb"/Type\s*/Page\b", pdf.read_bytes())) >= 3

    dom = chromium(tmp_path, "--dump-dom", url).stdout
    posts = figure(dom, "posts")
    # dated x axis, on every chart
    for day in ("2024-03-04", "2024-04-01", "2024-04-29", "2024-05-27"):
        assert f">{day}</text>" in posts
    assert ">posts per UTC day</text>" in posts
    # the outage is shaded as a gap, and the line is broken there
    assert 'data-gap="2024-04-12/2024-04-14"' in posts
    assert posts.count("<polyline") == 2
    # the onset, drawn on the posts chart and in the change points table
    assert re.search(
        r'data-day="2024-05-12"><line[^>]*>(?:</line>)?<text[^>]*>level shift 2024-05-12', posts
    )
    assert re.search(r"<td>posts</td><td>2024-05-12</td>", dom)
    assert "level shift" not in figure(dom, "replies")
    assert "Not covered (drawn as gaps, never as zero): 2024-04-12 – 2024-04-14" in dom
    assert "forum-monitor report --config" in dom


def test_status_page_in_chromium(tmp_path: Path) -> None:
    engine, settings = rs.build(tmp_path / "gig.db")
    now = rs.TODAY + 1800  # half an hour after the last poll: the source is up
    community = settings.communities[0]
    with Session(engine) as session:
        snapshot = compute_snapshot(session, settings=settings, community=community, now=now)
    engine.dispose()
    # not marked "simulated": that banner speaks of the demo, which this page is not
    presentation = Presentation(
        annotations=(Annotation("gig", rs.ONSET + 9 * 3600, rs.EVENT_LABEL),)
    )
    view = community_view(community, snapshot, presentation=presentation, now=now)
    page = tmp_path / "community.html"
    page.write_text(render_community_page(view, presentation=presentation, now=now, version="test"))
    url = page.as_uri()

    screenshot(tmp_path, DOCS / "community-page.png", "1280,1000", url)
    screenshot(tmp_path, DOCS / "community-page-phone.png", "390,2400", url)

    dom = chromium(tmp_path, "--dump-dom", url).stdout
    assert 'data-verdict="declining"' in dom
    posts, participants, sentiment = (
        figure(dom, s) for s in ("posts", "active_participants", "sentiment_mean")
    )
    for chart in (posts, participants, sentiment):
        assert ">2024-04-15</text>" in chart and ">2024-05-13</text>" in chart  # dated axis
        assert 'data-gap="2024-04-12/2024-04-14"' in chart
        assert rs.EVENT_LABEL in chart  # an event belongs on every chart
        assert chart.count('class="marker changepoint"') == 1  # its own change point only
    posts_shift = next(p for p in snapshot.changepoints if p.signal == "posts")
    assert f"shift 05-12: {posts_shift.shift_ratio:.0%} of before</text>" in posts
    assert "of before (2024-05-12)</li>" in posts  # the label, dated, under the chart too
