"""Crash safety: SIGKILL mid-poll, restart, and the store equals a clean run's."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.fakeforum.reddit import FakeReddit
from monitor.fakeforum.server import FakeForumServer, Fault, Router
from tests.test_poll_cycle import to_toml

NOW = int(time.time())


@pytest.fixture
def reddit() -> Iterator[tuple[FakeReddit, FakeForumServer]]:
    fake = FakeReddit()
    for n in range(150):  # 150 threads with 2 replies each: 2 pages of submissions, 3 of comments
        thread = fake.add_thread(
            "gigwork", created=NOW - 20000 + n * 100, author=f"u{n % 13}", title=f"thread {n}"
        )
        for k in range(2):
            fake.add_reply(
                thread,
                created=NOW - 20000 + n * 100 + 10 + k,
                author=f"u{(n + k + 1) % 13}",
                text=f"reply {k}",
            )
    router = Router()
    fake.register(router)
    with FakeForumServer(router) as server:
        yield fake, server


def write_config(tmp_path: Path, name: str, base_url: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        to_toml(
            {
                "database_url": f"sqlite:///{tmp_path / name}.db",
                "data_dir": str(tmp_path),
                "pseudonym_key": "restart-test-key-0123456789abcdef",
                "http": {
                    "rate_per_minute": {"127.0.0.1": 100000},
                    "read_timeout": "30s",
                    "total_timeout": "60s",
                },
                "communities": [
                    {
                        "id": "gig",
                        "source": "reddit",
                        "subreddit": "gigwork",
                        "base_url": base_url,
                        "history_days": 2,
                    }
                ],
            }
        )
    )
    return path


def poll_once(config: Path, cwd: Path) -> subprocess.Popen[str]:
    """``poll-once`` in the background; its JSON lines and stderr go to files beside it."""
    with (cwd / "poll.out").open("a") as out, (cwd / "poll.err").open("a") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "monitor", "poll-once", "--config", str(config), "--json"],
            cwd=cwd,
            stdout=out,
            stderr=err,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("FORUM_MONITOR_")},
        )


def completes(process: subprocess.Popen[str], cwd: Path) -> bool:
    """True when the run ended with every community polled; else says why."""
    code = process.wait(timeout=120)
    assert code == 0, (cwd / "poll.out").read_text()[-2000:] + (cwd / "poll.err").read_text()[
        -2000:
    ]
    return True


def store_rows(database: Path) -> list[tuple[object, ...]]:
    """Everything a crash could corrupt: posts, threads, authors and the cursor."""
    with sqlite3.connect(database) as connection:
        posts = connection.execute(
            "SELECT p.external_id, p.kind, p.thread_external_id, p.parent_external_id,"
            " p.created_at, a.pseudonym, p.sentiment FROM posts p"
            " LEFT JOIN authors a ON a.id = p.author_id ORDER BY p.external_id"
        ).fetchall()
        threads = connection.execute(
            "SELECT external_id, created_at, reply_count, first_reply_at FROM threads"
            " ORDER BY external_id"
        ).fetchall()
        authors = connection.execute(
            "SELECT pseudonym, first_seen, last_seen FROM authors ORDER BY pseudonym"
        ).fetchall()
        cursor = connection.execute("SELECT cursor FROM poll_state").fetchall()
        rollups = connection.execute(
            "SELECT day, posts, threads_started, active_participants, new_participants"
            " FROM daily_rollups ORDER BY day"
        ).fetchall()
    return [
        *posts,
        ("threads", *threads),
        ("authors", *authors),
        ("cursor", *cursor),
        ("rollups", *rollups),
    ]


def test_sigkill_mid_poll_then_restart_equals_clean_run(
    reddit: tuple[FakeReddit, FakeForumServer], tmp_path: Path
) -> None:
    _, server = reddit
    clean = write_config(tmp_path, "clean", server.base_url)
    assert completes(poll_once(clean, tmp_path), tmp_path)

    killed = write_config(tmp_path, "killed", server.base_url)
    server.clear()
    # hold the comments listing long enough to kill the process while it waits for it,
    # after the submissions were fetched
    server.inject(Fault("delay", path_prefix="/r/gigwork/comments", seconds=30, count=1))
    process = poll_once(killed, tmp_path)
    deadline = time.monotonic() + 60
    while not server.requests_to("/r/gigwork/comments"):
        assert time.monotonic() < deadline, "the poll never asked for the comments"
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL
    with sqlite3.connect(tmp_path / "killed.db") as connection:
        assert connection.execute("SELECT count(*) FROM posts").fetchone() == (0,)

    assert completes(poll_once(killed, tmp_path), tmp_path)
    assert store_rows(tmp_path / "killed.db") == store_rows(tmp_path / "clean.db")
    assert len(store_rows(tmp_path / "clean.db")) == 150 * 3 + 4


def test_kills_at_random_moments_never_lose_or_duplicate(
    reddit: tuple[FakeReddit, FakeForumServer], tmp_path: Path
) -> None:
    fake, server = reddit
    clean = write_config(tmp_path, "clean", server.base_url)
    victim = write_config(tmp_path, "victim", server.base_url)
    chance = random.Random(20261128)
    for round_number in range(4):
        # new activity between rounds, so later polls are incremental
        thread = fake.add_thread(
            "gigwork",
            created=NOW - 1000 + round_number,
            author="late",
            title=f"late {round_number}",
        )
        fake.add_reply(thread, created=NOW - 900 + round_number, author=f"u{round_number}")
        process = poll_once(victim, tmp_path)
        time.sleep(chance.uniform(0.3, 2.0))  # start-up, migration, fetch or write
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert completes(poll_once(victim, tmp_path), tmp_path)
    assert completes(poll_once(clean, tmp_path), tmp_path)
    clean_rows, victim_rows = store_rows(tmp_path / "clean.db"), store_rows(tmp_path / "victim.db")
    assert victim_rows == clean_rows
    # every post once, plus the threads, authors, cursor and rollups entries
    assert len(clean_rows) == 150 * 3 + 4 * 2 + 4
