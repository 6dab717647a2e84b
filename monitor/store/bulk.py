"""Bulk writes straight through the driver's ``executemany``.

Ingest writes a poll's rows in one statement per table. Going through the
DBAPI directly skips SQLAlchemy's per-row parameter processing, which costs
more than the write itself at these volumes. Only plain values (str, int,
float, bool, None) are passed, so no type processing is lost.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Table
from sqlmodel import Session


def _placeholder(session: Session) -> str:
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
    mark = _placeholder(session)
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
    mark = _placeholder(session)
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
) -> Iterator[tuple[Any, ...]]:
    """The rows of ``sql`` (with ``{mark}`` for each of the ``fixed`` parameters and
    ``{marks}`` for the list an ``IN`` takes) for ``values``, ``IN_CHUNK`` at a time,
    straight through the driver: SQLAlchemy's expanding ``IN`` costs more than the query
    on a poll's hundreds of ids."""
    mark = _placeholder(session)
    connection = session.connection()
    for start in range(0, len(values), IN_CHUNK):
        part = values[start : start + IN_CHUNK]
        statement = sql.format(mark=mark, marks=", ".join([mark] * len(part)))
        yield from connection.exec_driver_sql(statement, (*fixed, *part)).all()
