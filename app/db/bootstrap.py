"""Roles and database of the embedded PostgreSQL, created once by its superuser.

Three roles, as in the security model: the owner (migrations, maintenance), the runtime role
(what the server connects as: not owner, not superuser, NOBYPASSRLS) and a read-only auditor.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from app.db.embedded import SUPERUSER, EmbeddedPostgres

DATABASE = "engram"
OWNER_ROLE = "engram_owner"
RUNTIME_ROLE = "engram_app"
AUDITOR_ROLE = "engram_auditor"


@dataclass(frozen=True)
class EmbeddedUrls:
    runtime: str
    admin: str
    auditor: str


async def bootstrap(pg: EmbeddedPostgres, database: str = DATABASE) -> EmbeddedUrls:
    conn = await asyncpg.connect(host=str(pg.run_dir), user=SUPERUSER, database="postgres")
    try:
        existing = {r["rolname"] for r in await conn.fetch("SELECT rolname FROM pg_roles")}
        for role in (OWNER_ROLE, RUNTIME_ROLE, AUDITOR_ROLE):
            if role not in existing:
                await conn.execute(
                    f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT'
                )
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(f'CREATE DATABASE "{database}" OWNER "{OWNER_ROLE}" ENCODING \'UTF8\'')
        await conn.execute(f'REVOKE CREATE ON DATABASE "{database}" FROM PUBLIC')
    finally:
        await conn.close()
    # pgvector is not a trusted extension: the superuser creates it, migrations find it there.
    conn = await asyncpg.connect(host=str(pg.run_dir), user=SUPERUSER, database=database)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        await conn.execute(f'ALTER SCHEMA public OWNER TO "{OWNER_ROLE}"')
        await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    finally:
        await conn.close()
    return EmbeddedUrls(
        runtime=pg.url(RUNTIME_ROLE, database),
        admin=pg.url(OWNER_ROLE, database),
        auditor=pg.url(AUDITOR_ROLE, database),
    )
