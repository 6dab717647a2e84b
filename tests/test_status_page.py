"""`forum-monitor demo` as a user runs it, and its status page in headless Chromium."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import chromium, free_port


class Demo:
    def __init__(self, process: subprocess.Popen[str], base_url: str, log: Path) -> None:
        self.process, self.base_url, self.log = process, base_url, log


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "demo", "--listen", f"127.0.0.1:{port}"],
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("FORUM_MONITOR_")},
        )
        try:
            yield Demo(process, f"http://127.0.0.1:{port}", log)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


DEMO_PROMISE = 60.0
"""README, "See it in one minute": the demo's four communities polled and analysed."""


def wait_for_analysis(base_url: str, *, timeout: float = DEMO_PROMISE) -> dict[str, str]:
    """Status by community, once every community was polled and has trends."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            body = httpx.get(base_url + "/api/v1/communities", timeout=2).json()
            last = body
            communities = body["communities"]
            if len(communities) == 4 and all(
                c["last_success_at"] and c["trends"] for c in communities
            ):
                return {c["id"]: c["status"] for c in communities}
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"demo not analysed after {timeout}s; last answer: {last}")


def verdict_of(dom: str, community: str) -> str:
    found = re.search(rf'data-community="{community}" data-verdict="([^"]+)"', dom)
    assert found, f"{community} not on the page"
    return found.group(1)


def test_demo_status_page_in_headless_chromium(demo: Demo, tmp_path: Path) -> None:
    started = time.monotonic()
    statuses = wait_for_analysis(demo.base_url)
    assert statuses == {
        "gigwork": "declining",
        "rival": "growing",
        "rivalsub": "growing",
        "control": "steady",
    }
    assert time.monotonic() - started < DEMO_PROMISE  # 22 s seen on a loaded machine

    screenshot = tmp_path / "status-page.png"
    shot = chromium(
        tmp_path, "--window-size=1280,2000", f"--screenshot={screenshot}", demo.base_url + "/"
    )
    assert shot.returncode == 0, shot.stderr
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 20_000  # a rendered page, not a blank one
    narrow = tmp_path / "status-page-narrow.png"
    assert (
        chromium(
            tmp_path, "--window-size=400,2400", f"--screenshot={narrow}", demo.base_url + "/"
        ).returncode
        == 0
    )
    assert narrow.stat().st_size > 20_000

    dom = chromium(tmp_path, "--dump-dom", demo.base_url + "/").stdout
    assert verdict_of(dom, "gigwork") == "declining"
    assert verdict_of(dom, "control") == "steady"
    assert "Simulated data" in dom
    gig_row = dom[dom.index('data-community="gigwork"') :].split("</tr>")[0]
    assert "ForumParticipationDrop" in gig_row and 'href="/community/gigwork"' in gig_row

    page = tmp_path / "community-page.png"
    gig_url = demo.base_url + "/community/gigwork"
    shot = chromium(tmp_path, "--window-size=1280,1600", f"--screenshot={page}", gig_url)
    assert shot.returncode == 0, shot.stderr
    assert page.stat().st_size > 20_000
    gig = chromium(tmp_path, "--dump-dom", gig_url).stdout
    assert verdict_of(gig, "gigwork") == "declining"
    assert "simulated data" in gig
    assert "ForumParticipationDrop" in gig and "Platform cut pay rates" in gig
    assert gig.count("<svg") == 3
    assert "Where departed participants went" in gig
    control = chromium(tmp_path, "--dump-dom", demo.base_url + "/community/control").stdout
    assert "Nothing out of line." in control


def test_demo_stops_cleanly_on_ctrl_c(demo: Demo) -> None:
    wait_for_analysis(demo.base_url)
    demo.process.send_signal(signal.SIGINT)
    assert demo.process.wait(timeout=15) == 0
    output = demo.log.read_text()
    assert "SIMULATED DATA" in output and "/api/v1/communities" in output
    assert "Traceback" not in output
