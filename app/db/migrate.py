"""Running our alembic migrations programmatically, as the owner role."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


@dataclass(frozen=True)
class MigrationContext:
    """What revisions need to know that the database cannot tell them."""

    runtime_role: str
    auditor_role: str | None
    embedding_dimensions: int
    embedding_model: str


def alembic_config(ctx: MigrationContext | None = None) -> Config:
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if ctx is not None:
        cfg.attributes.update(
            runtime_role=ctx.runtime_role,
            auditor_role=ctx.auditor_role,
            embedding_dimensions=ctx.embedding_dimensions,
            embedding_model=ctx.embedding_model,
        )
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def _run(admin_url: str, ctx: MigrationContext, action: str, revision: str) -> None:
    engine = create_async_engine(admin_url)
    try:
        async with engine.connect() as conn:

            def go(sync_conn: Connection) -> None:
                cfg = alembic_config(ctx)
                cfg.attributes["connection"] = sync_conn
                if action == "upgrade":
                    command.upgrade(cfg, revision)
                else:
                    command.downgrade(cfg, revision)

            await conn.run_sync(go)
            await conn.commit()
    finally:
        await engine.dispose()


async def upgrade(admin_url: str, ctx: MigrationContext, revision: str = "head") -> None:
    await _run(admin_url, ctx, "upgrade", revision)


async def downgrade(admin_url: str, ctx: MigrationContext, revision: str) -> None:
    await _run(admin_url, ctx, "downgrade", revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The applied revision, or None for an empty database."""
    async with engine.connect() as conn:
        try:
            return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        except ProgrammingError:
            return None
