"""A throwaway PostgreSQL cluster for the tests, and a fresh database per test.

PostgreSQL refuses to run as root, so when the tests run as root (CI) the
cluster is created and started as the ``postgres`` user through ``runuser``.
Databases are created and dropped with pytest-postgresql's ``DatabaseJanitor``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from tests.support import free_port, missing

PG_BIN_CANDIDATES = [os.environ.get("FORUM_MONITOR_PG_BIN", ""), "/usr/lib/postgresql/15/bin"]


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str
    version: str

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"


def _as_cluster_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bin_dir = next(
        (Path(p) for p in PG_BIN_CANDIDATES if p and (Path(p) / "initdb").exists()), None
    )
    if bin_dir is None:
        missing("PostgreSQL binaries not found (set FORUM_MONITOR_PG_BIN)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        missing("running as root without runuser: cannot start PostgreSQL")
    root = Path(tempfile.mkdtemp(prefix="forum-monitor-pg-"))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        root.chmod(0o755)
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    port = free_port()
    subprocess.run(
        _as_cluster_owner(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                user,
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        capture_output=True,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off"
    subprocess.run(
        _as_cluster_owner(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "log"),
                "-w",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    version = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    try:
        yield PgServer("127.0.0.1", port, user, version)
    finally:
        subprocess.run(
            _as_cluster_owner(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
            ),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of an empty database that is dropped after the test."""
    dbname = f"fm_{uuid4().hex[:12]}"
    janitor = DatabaseJanitor(
        user=pg_server.user,
        host=pg_server.host,
        port=pg_server.port,
        dbname=dbname,
    )
    with janitor:
        yield pg_server.url(dbname)
