"""A damaged SQLite store stops the start in one line naming the file, never half-works."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from monitor.config import settings_from_mapping
from monitor.errors import StoreCorrupt
from monitor.ingest import Ingestor
from monitor.sources.base import Batch, Envelope, Item
from monitor.store import db
from tests.support import free_port, serve_argv

KEY = "corrupt-test-key-0123456789abcdef-01"
PAGE = 4096


def real_store(path: Path) -> None:
    """A migrated store holding 3,000 posts, vacuumed so that every page is in use."""
    settings = settings_from_mapping(
        {"communities": [{"id": "gig", "source": "reddit", "subreddit": "gig"}]}
    )
    engine = db.make_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    fetched = 1_700_000_000
    items = [
        Item(
            external_id=f"p{n}",
            kind="thread" if n % 10 == 0 else "reply",
            thread_id=f"p{n - n % 10}",
            parent_id=None if n % 10 == 0 else f"p{n - n % 10}",
            created_at=fetched - 3000 + n,
            author=f"user{n % 97}",
            text="the rate went down again",
        )
        for n in range(3000)
    ]
    batch = Batch(
        envelopes=[Envelope("gig", "reddit", fetched, item) for item in items],
        cursor={},
        validators={},
        requests=1,
        not_modified=False,
    )
    with db.session_scope(engine) as session:
        Ingestor(settings=settings, key=KEY.encode()).ingest(
            session, community=settings.communities[0], batch=batch, started_at=fetched, now=fetched
        )
    engine.dispose()
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("VACUUM")
    assert not Path(f"{path}-wal").exists()


def damage_middle_page(path: Path) -> None:
    pages = path.stat().st_size // PAGE
    assert pages > 20, "the store should span many pages"
    garbage = random.Random(7).randbytes(PAGE)
    with path.open("r+b") as handle:
        handle.seek(pages // 2 * PAGE)
        handle.write(garbage)


def damage_header(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.write(b"this is not the header of a SQLite file" + b"\xff" * 61)


def empty_file(path: Path) -> None:
    path.write_bytes(b"")


DAMAGE = {"page": damage_middle_page, "header": damage_header, "empty": empty_file}


@pytest.fixture(params=sorted(DAMAGE))
def damaged(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    if request.param != "empty":
        real_store(path)
    DAMAGE[request.param](path)  # the empty file is 0644: its warning must not add a line
    return path


def test_damaged_store_is_refused_naming_the_file(damaged: Path) -> None:
    with pytest.raises(StoreCorrupt) as caught:
        db.make_engine(f"sqlite:///{damaged}")
    message = str(caught.value)
    assert message.startswith(f"the store {damaged} is corrupt (")
    assert message.endswith("restore it from a backup or move it away")
    assert "\n" not in message


def test_sound_store_passes_the_check(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    real_store(path)
    engine = db.make_engine(f"sqlite:///{path}")  # no StoreCorrupt
    engine.dispose()


def test_serve_on_a_damaged_store_exits_1_in_one_line_and_is_never_ready(
    damaged: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'data_dir = "{tmp_path}"\ndatabase_url = "sqlite:///{damaged}"\n'
        f'pseudonym_key = "{KEY}"\ncontact = "ops@example.org"\n'
        '[[communities]]\nid = "gig"\nsource = "reddit"\nsubreddit = "gig"\n'
        'base_url = "http://127.0.0.1:1"\n'
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORUM_MONITOR_")}
    process = subprocess.Popen(
        serve_argv(config, port),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    answers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while process.poll() is None:
            assert time.monotonic() < deadline, f"serve still running; /readyz said {answers}"
            try:
                answers.append(httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code)
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            process.kill()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 1
    assert 200 not in answers
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert str(damaged) in lines[0] and "corrupt" in lines[0]
    assert "Traceback" not in stderr


@pytest.mark.parametrize("argv", [["poll-once"], ["db", "upgrade"], ["backfill"]])
def test_other_commands_refuse_a_damaged_header_too(tmp_path: Path, argv: list[str]) -> None:
    path = tmp_path / "store.db"
    real_store(path)
    damage_header(path)
    config = tmp_path / "config.toml"
    config.write_text(
        f'data_dir = "{tmp_path}"\ndatabase_url = "sqlite:///{path}"\npseudonym_key = "{KEY}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORUM_MONITOR_")}
    run = subprocess.run(
        [sys.executable, "-m", "monitor", *argv, "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env=env,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        f"forum-monitor: the store {path} is corrupt (file is not a database): "
        "restore it from a backup or move it away"
    ]


def test_communities_without_analysis_are_listed_not_hidden(tmp_path: Path) -> None:
    """A store the analysis cannot read (here: a table gone) leaves no snapshot; the status
    page and the API still list every enabled community, as not analysed."""
    path = tmp_path / "store.db"
    real_store(path)
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("DROP TABLE daily_rollups")
    communities = "".join(
        f'[[communities]]\nid = "{name}"\nsource = "reddit"\nsubreddit = "{name}"\n'
        f'base_url = "http://127.0.0.1:1"\ninterval = "1h"\nenabled = {enabled}\n'
        for name, enabled in [("gig", "true"), ("rival", "true"), ("paused", "false")]
    )
    config = tmp_path / "config.toml"
    config.write_text(
        f'data_dir = "{tmp_path}"\ndatabase_url = "sqlite:///{path}"\n'
        f'pseudonym_key = "{KEY}"\n{communities}'
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORUM_MONITOR_")}
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "stderr.log").open("w") as stderr:
        process = subprocess.Popen(
            serve_argv(config, port),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert process.poll() is None, (tmp_path / "stderr.log").read_text()
                assert time.monotonic() < deadline, "serve never became ready"
                time.sleep(0.1)
            # ready does not wait for analysis: wait for its first try, which fails
            while True:
                listed = httpx.get(base + "/api/v1/communities").json()["communities"]
                if all(c["status"] != "warming up" for c in listed):
                    break
                assert time.monotonic() < deadline, listed
                time.sleep(0.1)
            one = httpx.get(base + "/api/v1/communities/rival").json()
            series = httpx.get(base + "/api/v1/communities/rival/series").json()
            page = httpx.get(base + "/").text
        finally:
            process.terminate()
            process.wait(timeout=15)
    assert "no such table: daily_rollups" in (tmp_path / "stderr.log").read_text()
    assert [(c["id"], c["source"], c["status"]) for c in listed] == [
        ("gig", "reddit", "not analysed"),
        ("rival", "reddit", "not analysed"),
    ]
    assert (one["status"], one["computed_at"], one["windows"]) == ("not analysed", None, {})
    assert (series["community"], series["points"]) == ("rival", [])
    assert "No enabled communities configured" not in page
    assert "No communities configured" not in page
    for name in ("gig", "rival"):
        assert f'data-community="{name}" data-verdict="not analysed"' in page
    assert 'data-community="paused"' not in page
    assert "2 communities: 2 not analysed" in page
