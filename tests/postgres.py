"""The throwaway PostgreSQL cluster for the tests, and a fresh database per test.

The cluster is ``bench.pgcluster.PgCluster`` (as root it runs as the ``postgres`` user);
databases are created and dropped with pytest-postgresql's ``DatabaseJanitor``.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from bench.pgcluster import PgCluster, unavailable
from tests.support import missing


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgCluster]:
    reason = unavailable()
    if reason is not None:
        missing(reason)
    with PgCluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_server: PgCluster) -> Iterator[str]:
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
