"""Two processes on one SQLite store refuse to both poll; the second says why in one line.

Two ``serve`` processes on one store both polled every community (1.78 times the
requests, both moving the same cursor). A process that polls a SQLite store holds
its lock for as long as it runs; a SIGKILL frees it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import free_port
from tests.test_serve import spawn_serve, wait_ready


def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        'pseudonym_key = "single-poller-test-key-0123456789abcdef"\n'
        'contact = "ops@example.org"\n'
        '[http]\nmax_retries = 0\nconnect_timeout = "1s"\n'
        '[[communities]]\nid = "gig"\nsource = "reddit"\nsubreddit = "gig"\n'
        'base_url = "http://127.0.0.1:1"\ninterval = "1h"\n'
    )
    return path


def run(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *argv, "--config", str(config(tmp_path))],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FORUM_MONITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}"},
    )


def test_a_second_poller_on_one_sqlite_store_refuses_in_one_line(tmp_path: Path) -> None:
    port = free_port()
    with (tmp_path / "first.log").open("w") as log:
        first = spawn_serve(config(tmp_path), port=port, workdir=tmp_path, stderr=log)
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz")
            once = run(tmp_path, "poll-once")
            second = run(tmp_path, "serve", "--listen", f"127.0.0.1:{free_port()}")
            for refused in (once, second):
                assert refused.returncode == 1
                [line] = refused.stderr.strip().splitlines()
                assert f"process {first.pid} already polls the SQLite store store.db" in line
                assert "PostgreSQL" in line
            assert "serving" not in second.stderr
            # a backfill keeps a cursor of its own and may run beside the poller
            assert "already polls" not in run(tmp_path, "backfill", "--days", "1").stderr
        finally:
            first.send_signal(signal.SIGKILL)  # a killed poller frees the store
            first.wait()
    freed = run(tmp_path, "poll-once")
    assert "already polls" not in freed.stderr
