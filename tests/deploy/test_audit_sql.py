"""Every SQL block in docs/audit.md runs, as the role it names, against a database with a little history.

The data is written the way the server writes it: through the runtime role with an identity bound,
so the audit triggers record what they record in production.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from uuid_utils.compat import uuid7

from app.db import migrate
from app.db.bootstrap import AUDITOR_ROLE, OWNER_ROLE, EmbeddedUrls, bootstrap
from app.db.embedded import EmbeddedPostgres
from app.db.session import Identity, bound_session, create_engine, session_factory
from app.tokens import service as tokens
from tests.conftest import MIGRATION_CONTEXT

AUDIT_DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"
ALICE = "alice@example.com"
BOB = "bob@example.com"
VECTOR = "[" + ",".join(["0.1"] * 384) + "]"


@dataclass(frozen=True)
class Block:
    role: str
    sql: str
    line: int


def _blocks() -> list[Block]:
    doc = AUDIT_DOC.read_text()
    blocks = []
    for match in re.finditer(r"^```sql\n(.*?)^```", doc, flags=re.MULTILINE | re.DOTALL):
        body = match.group(1)
        role = re.match(r"--\s*as\s+(\w+)\s*\n", body)
        line = doc.count("\n", 0, match.start()) + 1
        assert role is not None, f"docs/audit.md line {line}: an sql block must start with `-- as <role>`"
        blocks.append(Block(role.group(1), body, line))
    return blocks


def _substitute(sql: str, variables: dict[str, str]) -> str:
    """What psql does with :'name' (a quoted literal) and :name (the value as it is)."""

    def quoted(m: re.Match[str]) -> str:
        return "'" + variables[m.group(1)].replace("'", "''") + "'"

    sql = re.sub(r":'(\w+)'", quoted, sql)
    return re.sub(r"(?<![:\w]):([A-Za-z_]\w*)", lambda m: variables[m.group(1)], sql)


@dataclass(frozen=True)
class History:
    urls: EmbeddedUrls
    memory_id: uuid.UUID
    request_id: str


async def _write_history(urls: EmbeddedUrls) -> History:
    runtime = create_engine(urls.runtime, pool_size=1)
    sessions = session_factory(runtime)
    kept, deleted, bobs = uuid7(), uuid7(), uuid7()
    app_id = uuid7()
    insert_memory = text(
        "INSERT INTO memories (id, owner_email, app_id, content, content_hash, embedding, tags) "
        "VALUES (:id, :owner, :app, :content, md5(:content), CAST(:v AS vector), :tags)"
    )
    log_read = text(
        "INSERT INTO memory_access_log (memory_id, owner_email, app_id, client_id, operation) "
        "VALUES (:id, :owner, :app, :client, 'search')"
    )
    try:
        async with bound_session(sessions, Identity(ALICE, "claude-desktop", "req-alice-1")) as s:
            await s.execute(text("INSERT INTO users (email) VALUES (:e)"), {"e": ALICE})
            await s.execute(
                text("INSERT INTO apps (id, owner_email, client_id, name) VALUES (:id, :e, :client, 'Claude')"),
                {"id": app_id, "e": ALICE, "client": "claude-desktop"},
            )
            for memory_id, content in ((kept, "alice drinks tea"), (deleted, "alice's old address")):
                params = {"id": memory_id, "owner": ALICE, "app": app_id, "content": content, "tags": ["home"]}
                await s.execute(insert_memory, {**params, "v": VECTOR})
        async with bound_session(sessions, Identity(ALICE, "claude-desktop", "req-alice-2")) as s:
            await s.execute(text("UPDATE memories SET state = 'paused' WHERE id = :id"), {"id": kept})
            await s.execute(
                text("UPDATE memories SET content = 'alice drinks green tea', content_hash = md5('g') WHERE id = :id"),
                {"id": kept},
            )
            await s.execute(text("DELETE FROM memories WHERE id = :id"), {"id": deleted})
            await s.execute(log_read, {"id": kept, "owner": ALICE, "app": app_id, "client": "claude-desktop"})
            await s.execute(
                text("SELECT engram_audit_event('EXPORT', :e, NULL, CAST(:d AS jsonb))"),
                {"e": ALICE, "d": '{"format": "jsonl"}'},
            )
        async with bound_session(sessions, Identity(ALICE, "cli")) as s:
            created = await tokens.create(s, ALICE, "laptop", ["memories:read"], 30)
            await tokens.revoke(s, created.record.id)
        async with bound_session(sessions, Identity(BOB, "cursor", "req-bob-1")) as s:
            await s.execute(text("INSERT INTO users (email) VALUES (:e)"), {"e": BOB})
            params = {"id": bobs, "owner": BOB, "app": None, "content": "bob likes chess", "tags": []}
            await s.execute(insert_memory, {**params, "v": VECTOR})
            await s.execute(log_read, {"id": bobs, "owner": BOB, "app": None, "client": "cursor"})
    finally:
        await runtime.dispose()
    owner = create_engine(urls.admin, pool_size=1)
    try:
        async with owner.begin() as conn:  # a DBA at work: recorded with db_user = engram_owner
            await conn.execute(text("UPDATE memories SET tags = '{reviewed}' WHERE id = :id"), {"id": kept})
    finally:
        await owner.dispose()
    return History(urls, kept, "req-alice-2")


@pytest.fixture(scope="module")
async def history(embedded_pg: EmbeddedPostgres, db_urls: EmbeddedUrls) -> History:
    # A database of its own in the session cluster: the shared one is other tests' business.
    urls = await bootstrap(embedded_pg, database="engram_audit_docs")
    await migrate.upgrade(urls.admin, MIGRATION_CONTEXT)
    return await _write_history(urls)


@pytest.fixture(scope="module")
async def engines(history: History) -> AsyncIterator[dict[str, AsyncEngine]]:
    engines = {
        AUDITOR_ROLE: create_engine(history.urls.auditor, pool_size=1),
        OWNER_ROLE: create_engine(history.urls.admin, pool_size=1),
    }
    yield engines
    for engine in engines.values():
        await engine.dispose()


def test_the_doc_has_queries_for_both_roles() -> None:
    blocks = _blocks()
    assert len(blocks) >= 10
    assert {b.role for b in blocks} == {AUDITOR_ROLE, OWNER_ROLE}


@pytest.mark.parametrize("block", _blocks(), ids=lambda b: f"audit.md:{b.line}")
async def test_audit_doc_query(block: Block, history: History, engines: dict[str, AsyncEngine]) -> None:
    variables = {"email": ALICE, "memory_id": str(history.memory_id), "request_id": history.request_id, "days": "7"}
    sql = _substitute(block.sql, variables)
    async with engines[block.role].connect() as conn:
        rows = (await conn.exec_driver_sql(sql)).all()
    assert rows, f"docs/audit.md line {block.line} found nothing in a history made to answer it"


async def test_the_doc_describes_every_audit_column(engines: dict[str, AsyncEngine]) -> None:
    doc = AUDIT_DOC.read_text()
    section = doc[doc.index("## What is recorded") : doc.index("## Ready queries")]
    first_cells = re.findall(r"^\| ([^|]+) \|", section, flags=re.MULTILINE)
    described = {name for cell in first_cells for name in re.findall(r"`(\w+)`", cell)}
    async with engines[AUDITOR_ROLE].connect() as conn:
        columns = set(
            (
                await conn.scalars(
                    text("SELECT column_name FROM information_schema.columns WHERE table_name = 'audit_log'")
                )
            ).all()
        )
    assert described == columns


async def test_what_the_doc_says_each_role_can_do(history: History, engines: dict[str, AsyncEngine]) -> None:
    async with engines[AUDITOR_ROLE].connect() as conn:
        for table in ("memories", "memory_access_log", "apps", "users", "personal_access_tokens", "signing_keys"):
            with pytest.raises(DBAPIError, match="permission denied"):
                await conn.execute(text(f"SELECT 1 FROM {table} LIMIT 1"))
            await conn.rollback()
        assert await conn.scalar(text("SELECT count(*) FROM engram_meta")) >= 1
        with pytest.raises(DBAPIError, match="permission denied"):
            await conn.execute(text("DELETE FROM audit_log"))
        await conn.rollback()
    # The owner can rewrite the audit log: the doc says so, and says to copy it elsewhere.
    async with engines[OWNER_ROLE].connect() as conn:
        changed = await conn.execute(text("UPDATE audit_log SET actor_email = actor_email"))
        assert changed.rowcount > 0  # type: ignore[attr-defined]
        await conn.rollback()
    # Content never reaches the audit log; the owner's change carries its own database login.
    async with engines[AUDITOR_ROLE].connect() as conn:
        leaked = await conn.scalar(text("SELECT count(*) FROM audit_log WHERE after::text LIKE '%tea%'"))
        assert leaked == 0
        logins = set((await conn.scalars(text("SELECT DISTINCT db_user FROM audit_log"))).all())
        assert logins == {"engram_app", "engram_owner"}
