"""Where the database is: the embedded PostgreSQL (started on demand) or the configured URLs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.db import migrate
from app.db.bootstrap import AUDITOR_ROLE, bootstrap
from app.db.embedded import EmbeddedPostgres
from app.embeddings import create_embedder, known_dimensions
from app.settings import Settings


@dataclass
class Database:
    runtime_url: str
    admin_url: str | None
    embedded: EmbeddedPostgres | None
    started_here: bool


def embedded_for(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.resolved_data_dir() / "postgres")


@asynccontextmanager
async def database(settings: Settings, *, keep_running: bool = False) -> AsyncIterator[Database]:
    """The database for a command; an embedded cluster this call started is stopped afterwards."""
    if settings.database_url is not None:
        yield Database(settings.database_url, settings.database_admin_url, None, False)
        return
    pg = embedded_for(settings)
    started = pg.pid() is None
    pg.start()
    try:
        urls = await bootstrap(pg)
        yield Database(urls.runtime, urls.admin, pg, started)
    finally:
        if started and not keep_running:
            pg.stop()


def runtime_role_of(url: str) -> str:
    user = urlsplit(url.replace("+asyncpg", "")).username
    if not user:
        raise ValueError("ENGRAM_DATABASE_URL must name the runtime role (postgresql://ROLE:password@host/db)")
    return user


async def embedding_dimensions(settings: Settings) -> int:
    known = known_dimensions(settings)
    if known is not None:
        return known
    embedder = create_embedder(settings)
    await embedder.start()
    try:
        return embedder.dimensions
    finally:
        await embedder.aclose()


async def upgrade(settings: Settings, db: Database, revision: str = "head") -> None:
    if db.admin_url is None:
        raise SystemExit("Migrations run as the owner role: set ENGRAM_DATABASE_ADMIN_URL.")
    ctx = migrate.MigrationContext(
        runtime_role=runtime_role_of(db.runtime_url),
        auditor_role=AUDITOR_ROLE,
        embedding_dimensions=await embedding_dimensions(settings),
        embedding_model=settings.embedding_model,
    )
    await migrate.upgrade(db.admin_url, ctx, revision)


async def downgrade(settings: Settings, db: Database, revision: str) -> None:
    if db.admin_url is None:
        raise SystemExit("Migrations run as the owner role: set ENGRAM_DATABASE_ADMIN_URL.")
    ctx = migrate.MigrationContext(
        runtime_role=runtime_role_of(db.runtime_url),
        auditor_role=AUDITOR_ROLE,
        embedding_dimensions=await embedding_dimensions(settings),
        embedding_model=settings.embedding_model,
    )
    await migrate.downgrade(db.admin_url, ctx, revision)
