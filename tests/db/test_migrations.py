"""Migrations: upgrade head → downgrade base → upgrade head on a real, separate database."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import migrate
from app.db.bootstrap import EmbeddedUrls, bootstrap
from app.db.checks import USER_OWNED_TABLES
from app.db.embedded import EmbeddedPostgres
from app.db.session import create_engine
from tests.conftest import MIGRATION_CONTEXT


async def _tables(url: str) -> set[str]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await conn.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
            return set(rows.all())
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_upgrade(embedded_pg: EmbeddedPostgres) -> None:
    urls = await bootstrap(embedded_pg, database="engram_roundtrip")
    await migrate.upgrade(urls.admin, MIGRATION_CONTEXT)
    assert {"users", "memories", "audit_log", "apps", "personal_access_tokens"} <= await _tables(urls.admin)
    await migrate.downgrade(urls.admin, MIGRATION_CONTEXT, "base")
    assert await _tables(urls.admin) <= {"alembic_version"}
    await migrate.upgrade(urls.admin, MIGRATION_CONTEXT)
    engine = create_engine(urls.runtime, pool_size=1)
    try:
        assert await migrate.current_revision(engine) == migrate.head_revision()
    finally:
        await engine.dispose()


async def test_failing_revision_leaves_nothing_behind(embedded_pg: EmbeddedPostgres) -> None:
    """One transaction for the whole upgrade: a failure part-way rolls every statement back."""
    urls = await bootstrap(embedded_pg, database="engram_failing")
    broken = migrate.MigrationContext(
        runtime_role="no_such_role_here",
        auditor_role=None,
        embedding_dimensions=384,
        embedding_model="m",
    )
    with pytest.raises(RuntimeError, match="does not exist"):
        await migrate.upgrade(urls.admin, broken)
    assert await _tables(urls.admin) == set()


async def test_every_user_owned_table_forces_rls(db_urls: EmbeddedUrls) -> None:
    engine = create_engine(db_urls.admin, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
                        "EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                        "AND a.attnum = i.indkey[0] WHERE i.indrelid = c.oid "
                        "AND a.attname IN ('owner_email', 'email')) AS owner_indexed "
                        "FROM pg_class c WHERE c.relname = ANY(:t)"
                    ),
                    {"t": list(USER_OWNED_TABLES)},
                )
            ).all()
    finally:
        await engine.dispose()
    assert len(rows) == len(USER_OWNED_TABLES)
    for row in rows:
        assert row.relrowsecurity, row.relname
        assert row.relforcerowsecurity, row.relname
        assert row.owner_indexed, f"{row.relname} has no btree leading with its owner column"


async def test_embeddings_stay_in_the_row(runtime_engine: AsyncEngine) -> None:
    """Storage MAIN (migration 0004): an exact scan reads vectors from the heap row, not from TOAST."""
    async with runtime_engine.connect() as conn:
        storage = await conn.scalar(
            text(
                "SELECT attstorage::text FROM pg_attribute "
                "WHERE attrelid = 'memories'::regclass AND attname = 'embedding'"
            )
        )
    assert storage == "m"
