"""Engine and sessions, schema upgrades through Alembic, and readable connection errors.

A SQLite store is private: a new file is created 0600 (its -wal and -shm files take
the same mode) in a directory created 0700; an existing file open to group or others
is named in a warning, not changed. ``secure_delete`` is on for every connection, so
pruned bodies are overwritten in the file, and ``truncate_wal`` empties the
write-ahead log, which would otherwise keep old copies of their pages.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from monitor.errors import DatabaseUnreachable, StoreCorrupt, StoreError
from monitor.filemodes import make_private_dir, warn_if_open

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def migrations_dir() -> Path:
    """The Alembic scripts: alembic/ beside monitor/ in a checkout or an editable install,
    else the copy an installed wheel carries as ``monitor/_alembic`` (pyproject.toml)."""
    checkout = PACKAGE_DIR.parent / "alembic"
    if (checkout / "env.py").exists():
        return checkout
    return PACKAGE_DIR / "_alembic"


ALEMBIC_DIR = migrations_dir()


def describe_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable database URL)"


def host_of(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or ":memory:"
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # whatever the build's default: deleted and pruned content is overwritten, not left
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def create_private_sqlite(path: Path) -> None:
    """A new SQLite store file, mode 0600 and with its header written (in WAL mode);
    nothing if the file exists."""
    try:
        make_private_dir(path.parent)
    except OSError as exc:
        raise StoreError(
            f"cannot create {path.parent} for the SQLite database: "
            f"{(exc.strerror or str(exc)).lower()}; make it a writable directory "
            "(it is data_dir unless database_url names the file)"
        ) from None
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(descriptor)
    try:
        connection = sqlite3.connect(path)
        try:
            # writes the first page: a store this service made is never an empty file
            connection.execute("PRAGMA journal_mode=WAL")
        finally:
            connection.close()
    except sqlite3.Error as exc:
        # ours (O_EXCL above) and still empty: remove it, or the next start finds a 0-byte store
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)
        raise StoreError(
            f"cannot create the store {path}: {exc}; nothing was left behind (free space on "
            f"the disk or fix the permissions of {path.parent}, then start again)"
        ) from None


def make_engine(url: str) -> Engine:
    """An engine for ``url``; creates the directory of a SQLite file and checks connectivity."""
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"invalid database URL: {exc}") from None
    existing: Path | None = None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            path = Path(database)
            if path.exists():
                existing = path
                if path.is_file() and path.stat().st_size == 0:
                    raise StoreCorrupt(str(path), "the file is empty; a store is never 0 bytes")
            else:
                create_private_sqlite(path)
            engine = create_engine(url, connect_args={"check_same_thread": False})
        else:
            engine = create_engine(
                url, connect_args={"check_same_thread": False}, poolclass=StaticPool
            )
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(
            url,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=5,
            connect_args={"connect_timeout": 5},
        )
    try:
        check_connection(engine, url)
    except BaseException:
        engine.dispose()
        raise
    if existing is not None:  # after the check: a damaged store is one line, not two
        warn_if_open(existing, what="the SQLite store", private_mode=0o600)
    return engine


MAX_SHOWN_PROBLEMS = 2


def check_connection(engine: Engine, url: str) -> None:
    """Connect once; on a SQLite file, also check its pages (``PRAGMA quick_check``)."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    file = database if database and database != ":memory:" else None
    try:
        with engine.connect() as connection:
            if file is None:
                connection.execute(text("SELECT 1"))
                return
            problems = [
                str(row) for row in connection.exec_driver_sql("PRAGMA quick_check").scalars()
            ]
    except OperationalError as exc:
        raise DatabaseUnreachable(host_of(url), _first_line(exc, "connection failed")) from None
    except DatabaseError as exc:
        if file is None:
            raise
        # "file is not a database", "database disk image is malformed"
        raise StoreCorrupt(file, _first_line(exc, "unreadable")) from None
    if problems != ["ok"]:
        shown = "; ".join(_clip(p) for p in problems[:MAX_SHOWN_PROBLEMS])
        more = len(problems) - MAX_SHOWN_PROBLEMS
        raise StoreCorrupt(
            file, f"quick_check: {shown}" + (f"; {more} more problems" if more > 0 else "")
        )


def _first_line(exc: DatabaseError, default: str) -> str:
    lines = str(exc.orig).strip().splitlines() if exc.orig else []
    return lines[0] if lines else default


def _clip(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def truncate_wal(engine: Engine) -> None:
    """Checkpoint a SQLite store and empty its write-ahead log (old page copies, such as
    pruned bodies, go with it); nothing on PostgreSQL. Best effort: a reader in the way
    leaves the log for the next time."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as connection:
        busy, _, _ = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
    if busy:
        log.debug("write-ahead log not truncated: a reader was active")


def alembic_config(engine: Engine) -> Config:
    if not (ALEMBIC_DIR / "env.py").exists():
        raise StoreError(f"migrations not found at {ALEMBIC_DIR}")
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (the newest by default)."""
    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session whose work commits at the end of the block, or rolls back on any error."""
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
