"""Bulk writes and reads straight through the driver.

Ingest writes a poll's rows in one statement per table (the driver's
``executemany``), and reads what it must know of a poll's ids, or a namespace's
authors, as the driver's tuples. Going through the DBAPI directly skips
SQLAlchemy's per-row parameter and result processing, which costs more than the
statement itself at these volumes. Only plain values (str, int, float, bool,
None) are passed and read, so no type processing is lost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Table
from sqlmodel import Session


def placeholder(session: Session) -> str:
    """The driver's parameter mark: ``?`` (sqlite3) or ``%s`` (psycopg)."""
    style = session.get_bind().dialect.paramstyle
    if style == "qmark":
        return "?"
    if style in ("format", "pyformat"):
        return "%s"
    raise ValueError(f"unsupported DBAPI paramstyle {style!r}")


def bulk_insert(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT every row (all rows have the same keys)."""
    if not rows:
        return
    columns = list(rows[0])
    mark = placeholder(session)
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join(mark for _ in columns)})"
    )
    session.connection().exec_driver_sql(sql, list(map(_values(columns), rows)))


def bulk_update(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: str | tuple[str, ...] = "id",
) -> None:
    """UPDATE each row found by ``key`` (a column, or the columns of a composite key) with
    its other values (all rows have the same keys)."""
    if not rows:
        return
    keys = (key,) if isinstance(key, str) else key
    columns = [c for c in rows[0] if c not in keys]
    mark = placeholder(session)
    sql = (
        f"UPDATE {table.name} SET {', '.join(f'{c} = {mark}' for c in columns)} "
        f"WHERE {' AND '.join(f'{k} = {mark}' for k in keys)}"
    )
    session.connection().exec_driver_sql(sql, list(map(_values([*columns, *keys]), rows)))


def _values(columns: Sequence[str]) -> Any:
    """Row -> the tuple of its ``columns``' values (an ``itemgetter``: one C call a row)."""
    if len(columns) == 1:
        only = itemgetter(columns[0])
        return lambda row: (only(row),)
    return itemgetter(*columns)


IN_CHUNK = 500
"""Values one ``select_in`` statement lists at most (SQLite's old limit is 999 parameters)."""


def select_in(
    session: Session,
    sql: str,
    fixed: Sequence[Any],
    values: Sequence[Any],
) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (with ``{mark}`` for each of the ``fixed`` parameters and
    ``{marks}`` for the list an ``IN`` takes) for ``values``, ``IN_CHUNK`` at a time, as
    the driver's tuples: SQLAlchemy's expanding ``IN`` costs more than the query on a
    poll's hundreds of ids, and a result row object each more than counting a
    namespace's hundreds of thousands of authors. A statement that groups by the ``IN``
    column gives whole groups, each value's rows being in one part."""
    mark = placeholder(session)
    cursor = session.connection().connection.cursor()
    rows: list[tuple[Any, ...]] = []
    try:
        for start in range(0, len(values), IN_CHUNK):
            part = values[start : start + IN_CHUNK]
            cursor.execute(
                sql.format(mark=mark, marks=", ".join([mark] * len(part))), (*fixed, *part)
            )
            rows += cursor.fetchall()
    finally:
        cursor.close()
    return rows
