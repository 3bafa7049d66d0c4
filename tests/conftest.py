"""One embedded PostgreSQL for the whole test session, migrated with our migrations.

Tests reach it through the restricted runtime role (`runtime_engine`), exactly as the server
does; the owner role is only used where a test plays the DBA or the migrator.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db import migrate
from app.db.bootstrap import AUDITOR_ROLE, RUNTIME_ROLE, EmbeddedUrls, bootstrap
from app.db.embedded import EmbeddedPostgres
from app.db.session import create_engine, session_factory
from app.settings import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

EMBEDDING_DIMENSIONS = 384
MIGRATION_CONTEXT = migrate.MigrationContext(
    runtime_role=RUNTIME_ROLE,
    auditor_role=AUDITOR_ROLE,
    embedding_dimensions=EMBEDDING_DIMENSIONS,
    embedding_model="all-MiniLM-L6-v2",
)


@pytest.fixture(scope="session")
def embedded_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture(scope="session")
async def db_urls(embedded_pg: EmbeddedPostgres) -> EmbeddedUrls:
    urls = await bootstrap(embedded_pg)
    await migrate.upgrade(urls.admin, MIGRATION_CONTEXT)
    return urls


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def settings(db_urls: EmbeddedUrls, data_dir: Path) -> Settings:
    return Settings(database_url=db_urls.runtime, database_admin_url=db_urls.admin, data_dir=data_dir)


@pytest.fixture(scope="session")
async def runtime_engine(db_urls: EmbeddedUrls) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_urls.runtime, pool_size=4)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def admin_engine(db_urls: EmbeddedUrls) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_urls.admin, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessions(runtime_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(runtime_engine)
