"""Alembic environment: migrations run on the engine the service hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text
from sqlmodel import SQLModel

import monitor.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)

target_metadata = SQLModel.metadata
config = context.config


MIGRATION_LOCK = 0x666F72756D  # "forum": the PostgreSQL advisory lock migrations hold
"""Replicas started together on one PostgreSQL database take turns: the first migrates,
the others wait for it and then find nothing to do (without the lock, one died on a
``UniqueViolation`` of ``alembic_version``)."""


def run_migrations() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        url = config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("run migrations through `forum-monitor db upgrade`")
        engine = create_engine(url)
    with engine.connect() as connection:
        shared = connection.dialect.name == "postgresql"
        if shared:  # a session lock: it outlives the commits below until unlocked
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            if shared:
                connection.rollback()  # a failed migration leaves its transaction open
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                connection.commit()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations()
