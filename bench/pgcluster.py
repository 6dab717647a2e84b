"""A throwaway PostgreSQL cluster on 127.0.0.1, for the benchmarks and the tests.

``initdb`` and ``pg_ctl`` come from ``FORUM_MONITOR_PG_BIN``, else Debian's
``/usr/lib/postgresql/15/bin``. PostgreSQL refuses to run as root, so as root the
cluster is created and run as the ``postgres`` user through ``runuser``. Clients
connect over TCP without a password (``trust``).

    with PgCluster() as cluster:
        url = cluster.create_database("store")

The tests import it too (``tests/postgres.py``); it lives here, outside ``tests/``
and outside the wheel, so that the benchmarks need nothing from the test suite.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import psycopg

PG_BIN_CANDIDATES = [os.environ.get("FORUM_MONITOR_PG_BIN", ""), "/usr/lib/postgresql/15/bin"]
HOST = "127.0.0.1"
FAST = {"fsync": "off"}
"""Server settings for a store whose durability does not matter (the default)."""


def bin_dir() -> Path | None:
    """The first of ``PG_BIN_CANDIDATES`` that holds ``initdb``, or None."""
    return next((Path(p) for p in PG_BIN_CANDIDATES if p and (Path(p) / "initdb").exists()), None)


def unavailable() -> str | None:
    """Why no cluster can start on this machine, or None when one can."""
    if bin_dir() is None:
        return "PostgreSQL binaries not found (set FORUM_MONITOR_PG_BIN)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: cannot start PostgreSQL"
    return None


def process_cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU-seconds of process ``pid`` (0 when it is gone); with ``children``,
    also those of the children it has waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _as_cluster_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class PgCluster:
    """One cluster in a fresh temporary folder: ``start``, ``url``, ``stop``.

    ``settings`` are the server's ``-c`` options besides where it listens.
    """

    def __init__(
        self, *, settings: Mapping[str, str] = FAST, prefix: str = "forum-monitor-pg-"
    ) -> None:
        found = bin_dir()
        if found is None:
            raise RuntimeError(unavailable())
        self.bin = found
        self.settings = dict(settings)
        self.prefix = prefix
        self.host = HOST
        self.user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
        self.port = 0
        self.pid = 0
        self.root: Path | None = None

    @property
    def data(self) -> Path:
        assert self.root is not None, "the cluster is not started"
        return self.root / "data"

    def start(self) -> None:
        """initdb and start the server; waits until it accepts connections."""
        self.root = Path(tempfile.mkdtemp(prefix=self.prefix))
        sockets = self.root / "run"
        sockets.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(sockets, "postgres")
            self.root.chmod(0o755)
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            self.port = int(probe.getsockname()[1])
        options = " ".join(
            [f"-c listen_addresses={HOST} -p {self.port} -k {sockets}"]
            + [f"-c {name}={value}" for name, value in self.settings.items()]
        )
        try:
            self._run(
                [str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, "-A", "trust"]
                + ["--no-sync", "-E", "UTF8"]
            )
            self._run(
                [str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options]
                + ["-l", str(self.root / "log"), "-w", "start"]
            )
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            raise
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        """Stop the server at once and delete its folder."""
        if self.root is None:
            return
        subprocess.run(
            _as_cluster_owner(
                [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
            ),
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> PgCluster:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def url(self, dbname: str) -> str:
        """The SQLAlchemy URL of database ``dbname`` on this cluster."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def create_database(self, dbname: str) -> str:
        """Create an empty database ``dbname``; its URL."""
        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{dbname}"')
        return self.url(dbname)

    def cpu_seconds(self) -> float:
        """User + system CPU of the server so far: the postmaster, the processes it runs,
        and those that ended (which the postmaster waited for)."""
        total = process_cpu_seconds(self.pid, children=True)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == self.pid:
                total += process_cpu_seconds(int(entry.name))
        return total

    def _run(self, command: list[str]) -> None:
        subprocess.run(_as_cluster_owner(command), check=True, capture_output=True)
