"""The service as a user runs it: a real process, real HTTP, SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from subprocess import Popen
from typing import IO

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import free_port, missing, serve_argv


def spawn_serve(config: Path, *, port: int, workdir: Path, stderr: IO[str]) -> Popen[str]:
    """The service in the background, its store a SQLite file in ``workdir``."""
    return subprocess.Popen(
        serve_argv(config, port),
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
        env={**os.environ, "FORUM_MONITOR_DATABASE_URL": f"sqlite:///{workdir / 'store.db'}"},
    )


def wait_ready(url: str, *, timeout: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=1.0)
            if response.status_code == 200:
                return response
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready after {timeout}s")


class Served:
    def __init__(self, process: subprocess.Popen[str], base_url: str, workdir: Path) -> None:
        self.process, self.base_url, self.workdir = process, base_url, workdir


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    config = tmp_path / "config.toml"
    config.write_text('pseudonym_key = "serve-test-key-0123456789abcdef-0123"\n')
    port = free_port()
    with (tmp_path / "stderr.log").open("w") as stderr:
        process = spawn_serve(config, port=port, workdir=tmp_path, stderr=stderr)
        try:
            yield Served(process, f"http://127.0.0.1:{port}", tmp_path)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_health_readiness_and_metrics(served: Served) -> None:
    wait_ready(served.base_url + "/readyz")
    assert httpx.get(served.base_url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(served.base_url + "/readyz").json()
    assert ready["checks"] == {"migrations": True, "scheduler": True}
    metrics = httpx.get(served.base_url + "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(metrics.text)}
    assert {"forum_monitor_polls", "forum_monitor_http_requests"} <= names


def test_sigterm_exits_zero_within_ten_seconds(served: Served) -> None:
    wait_ready(served.base_url + "/readyz")
    started = time.monotonic()
    served.process.send_signal(signal.SIGTERM)
    code = served.process.wait(timeout=10)
    assert code == 0
    assert time.monotonic() - started < 10
    assert "Traceback" not in (served.workdir / "stderr.log").read_text()


def test_promtool_check_metrics_is_clean(served: Served) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool not installed (Debian package prometheus)")
    wait_ready(served.base_url + "/readyz")
    body = httpx.get(served.base_url + "/metrics").text
    check = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "" and check.stderr.strip() == ""


def test_unreachable_database_is_one_line_naming_the_host(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('database_url = "postgresql://watcher:hunter2@127.0.0.1:1/forum"\n')
    run = subprocess.run(
        [sys.executable, "-m", "monitor", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "127.0.0.1:1" in lines[0] and "hunter2" not in lines[0]


def test_serve_logs_the_config_warnings_once(tmp_path: Path) -> None:
    """serve may run where check-config never did; the database is unreachable so that it
    stops right after starting."""
    config = tmp_path / "config.toml"
    config.write_text(
        'database_url = "postgresql://watcher@127.0.0.1:1/forum"\n'
        '[[communities]]\nid = "gig"\nsource = "reddit"\nsubreddit = "gigwork"\n'
    )
    run = subprocess.run(
        [sys.executable, "-m", "monitor", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert run.returncode == 1
    assert run.stderr.count("reddit.user_agent: not set and no contact configured") == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--config", "missing.toml"],
        ["poll-once", "--config", "missing.toml"],
        ["db", "upgrade", "--config", "missing.toml"],
        ["check-config"],
        ["serve", "--listen", "nowhere"],
        ["frobnicate"],
        ["db", "sideways"],
    ],
)
def test_every_command_fails_in_one_line(argv: list[str], tmp_path: Path) -> None:
    (tmp_path / "empty.toml").write_text("# nothing\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORUM_MONITOR_")}
    if argv[:2] == ["serve", "--listen"]:
        env["FORUM_MONITOR_CONFIG"] = str(tmp_path / "empty.toml")
    run = subprocess.run(
        [sys.executable, "-m", "monitor", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env=env,
    )
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    assert run.stderr.strip(), "a reason must be printed"


def test_sigterm_with_a_poll_in_flight_exits_zero_and_writes_all_or_nothing(
    tmp_path: Path,
) -> None:
    import sqlite3

    from monitor.fakeforum.reddit import FakeReddit
    from monitor.fakeforum.server import FakeForumServer, Fault, Router

    fake = FakeReddit()
    now = int(time.time())
    for n in range(30):
        thread = fake.add_thread("gigwork", created=now - 3000 + n * 60, author=f"u{n % 4}")
        fake.add_reply(thread, created=now - 2990 + n * 60, author=f"u{(n + 1) % 4}")
    router = Router()
    fake.register(router)
    with FakeForumServer(router) as forum:
        # the comments listing answers only after 30 s: the poll is in flight when we stop
        forum.inject(Fault("delay", path_prefix="/r/gigwork/comments", seconds=30))
        config = tmp_path / "config.toml"
        config.write_text(
            'pseudonym_key = "serve-test-key-0123456789abcdef-0123"\n'
            '[http]\nrate_per_minute = { "127.0.0.1" = 100000 }\nread_timeout = "60s"\n'
            'total_timeout = "90s"\n'
            "[[communities]]\n"
            f'id = "gig"\nsource = "reddit"\nsubreddit = "gigwork"\nbase_url = "{forum.base_url}"\n'
            'interval = "1s"\nhistory_days = 1\n'
        )
        port = free_port()
        with (tmp_path / "stderr.log").open("w") as stderr:
            process = spawn_serve(config, port=port, workdir=tmp_path, stderr=stderr)
            try:
                deadline = time.monotonic() + 60
                while not forum.requests_to("/r/gigwork/comments"):
                    assert time.monotonic() < deadline, "the poll never reached the comments"
                    time.sleep(0.05)
                started = time.monotonic()
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=10) == 0
                assert time.monotonic() - started < 10
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    assert "Traceback" not in (tmp_path / "stderr.log").read_text()
    with sqlite3.connect(tmp_path / "store.db") as connection:
        posts = connection.execute("SELECT count(*) FROM posts").fetchone()[0]
        cursor = connection.execute("SELECT cursor FROM poll_state").fetchone()[0]
    # the poll was cut before its commit: nothing of it, and the cursor untouched
    assert (posts, cursor) == (0, "{}")
