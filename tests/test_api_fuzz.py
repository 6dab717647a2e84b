"""The JSON API under a property-based fuzzer (schemathesis, driven by /openapi.json) against
the real service of the demo on 127.0.0.1, with four communities of data: no server error,
every answer as the schema says, and every 4xx naming the parameter it refuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support import free_port

SEED = "20261201"
PARAMETERS = {"community_id", "signal", "days", "limit"}


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``forum-monitor demo`` (no live posting), once its communities have been polled."""
    workdir = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    log = workdir / "demo.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORUM_MONITOR_")}
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "demo", "--no-live", "--listen", f"127.0.0.1:{port}"],
            cwd=workdir,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                body = httpx.get(base_url + "/api/v1/communities", timeout=2).json()
                if len(body["communities"]) == 4 and all(
                    c["last_success_at"] for c in body["communities"]
                ):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the demo's first polls did not finish"
            time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=15)


def names_its_parameter(method: str, url: str, status: int, body: str) -> bool:
    """A 4xx says which parameter it refuses: ``<parameter>: <why>``, and that parameter was
    in the request (the method, for 405)."""
    detail = json.loads(body)["detail"]
    named = detail.split(":", 1)[0]
    if status == 405:
        return named == "method" and method in detail
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    return named in PARAMETERS and (named == "community_id" or named in query)


def test_schemathesis_finds_no_server_error_and_every_4xx_names_its_parameter(
    demo_url: str, tmp_path: Path
) -> None:
    har = tmp_path / "fuzz.har.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            demo_url + "/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "50",
            "--seed",
            SEED,
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "10",
            "--no-color",
            "--report",
            "har",
            "--report-har-path",
            str(har),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    entries = json.loads(har.read_text())["log"]["entries"]
    statuses = [entry["response"]["status"] for entry in entries]
    assert not [s for s in statuses if s >= 500]
    refused = [
        (entry["request"]["method"], entry["request"]["url"], entry["response"])
        for entry in entries
        if 400 <= entry["response"]["status"] < 500
    ]
    assert {404, 405, 422} <= {response["status"] for _, _, response in refused}
    unnamed = [
        (method, url, response["status"], response["content"].get("text", "")[:200])
        for method, url, response in refused
        if not names_its_parameter(
            method, url, response["status"], response["content"].get("text", "")
        )
    ]
    assert not unnamed, unnamed[:10]
