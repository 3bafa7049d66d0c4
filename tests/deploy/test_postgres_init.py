"""deploy/postgres-init/10-engram.sh on a fresh cluster: Engram migrates onto it and accepts its runtime role."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.db import migrate
from app.db.bootstrap import AUDITOR_ROLE, OWNER_ROLE, RUNTIME_ROLE, EmbeddedUrls
from app.db.checks import check_runtime_role
from app.db.embedded import POSTGRES_BIN_PATH, SUPERUSER, EmbeddedPostgres
from app.db.session import create_engine
from tests.conftest import MIGRATION_CONTEXT

INIT_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "postgres-init" / "10-engram.sh"
PASSWORDS = {"DB_OWNER_PASSWORD": "o'wner", "DB_APP_PASSWORD": "app", "DB_AUDITOR_PASSWORD": "auditor"}

ROLES_SQL = (
    "SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolbypassrls "
    "FROM pg_roles WHERE rolname IN ('engram_owner', 'engram_app', 'engram_auditor') ORDER BY rolname"
)
SCHEMA_SQL = (
    "SELECT pg_get_userbyid(d.datdba) AS db_owner, d.datacl::text AS db_acl, "
    "pg_get_userbyid(n.nspowner) AS schema_owner, n.nspacl::text AS schema_acl, "
    "(SELECT extname FROM pg_extension WHERE extname = 'vector') AS vector "
    "FROM pg_database d, pg_namespace n WHERE d.datname = current_database() AND n.nspname = 'public'"
)

SCRAM_SQL = "SELECT count(*) FROM pg_authid WHERE rolname LIKE 'engram%' AND rolpassword LIKE 'SCRAM-SHA-256$%'"


@pytest.fixture(scope="module")
def fresh_pg() -> Iterator[EmbeddedPostgres]:
    # Outside pytest's temporary tree, like the session cluster (see tests/conftest.py).
    root = Path(tempfile.mkdtemp(prefix="engram-test-init-"))
    pg = EmbeddedPostgres(root)
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def _run_init_script(pg: EmbeddedPostgres, **overrides: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{POSTGRES_BIN_PATH}{os.pathsep}{os.environ.get('PATH', '')}",
        "PGHOST": str(pg.run_dir),
        "POSTGRES_USER": SUPERUSER,
        **PASSWORDS,
        **overrides,
    }
    return subprocess.run([str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False)


async def _query(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(text(sql))).all()]
    finally:
        await engine.dispose()


def test_init_script_refuses_to_run_without_passwords(fresh_pg: EmbeddedPostgres) -> None:
    result = _run_init_script(fresh_pg, DB_APP_PASSWORD="")
    assert result.returncode != 0
    assert "DB_APP_PASSWORD" in result.stderr


async def test_engram_migrates_onto_the_init_script_database(
    fresh_pg: EmbeddedPostgres, embedded_pg: EmbeddedPostgres, db_urls: EmbeddedUrls
) -> None:
    result = _run_init_script(fresh_pg)
    assert result.returncode == 0, result.stderr

    owner, runtime, auditor = (fresh_pg.url(role, "engram") for role in (OWNER_ROLE, RUNTIME_ROLE, AUDITOR_ROLE))
    await migrate.upgrade(owner, MIGRATION_CONTEXT)

    engine = create_engine(runtime, pool_size=1)
    try:
        await check_runtime_role(engine)  # what `engram serve` checks before it serves
    finally:
        await engine.dispose()
    assert await _query(auditor, "SELECT count(*) FROM audit_log") == [(0,)]
    with pytest.raises(DBAPIError, match="permission denied"):
        await _query(runtime, "CREATE TABLE planted (id int)")

    # The same roles, database and schema as app/db/bootstrap.py makes for the embedded default.
    superuser = fresh_pg.url(SUPERUSER, "engram")
    session_superuser = embedded_pg.url(SUPERUSER, "engram")
    assert await _query(superuser, ROLES_SQL) == await _query(session_superuser, ROLES_SQL)
    assert await _query(superuser, SCHEMA_SQL) == await _query(session_superuser, SCHEMA_SQL)
    assert await _query(fresh_pg.url(SUPERUSER), SCRAM_SQL) == [(3,)]
