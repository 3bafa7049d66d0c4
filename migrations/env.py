"""Alembic environment: runs every pending revision in one transaction, as the owner role."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=None,
        transaction_per_migration=False,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_async_engine(config.get_main_option("sqlalchemy.url") or "")
    async with engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("Engram migrations run online only: they inspect roles and the embedding dimension.")
if config.attributes.get("connection") is not None:
    _run(config.attributes["connection"])
else:
    asyncio.run(_main())
