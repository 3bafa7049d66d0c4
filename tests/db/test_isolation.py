"""Row-level security through the restricted runtime role: the database itself keeps users apart."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from uuid_utils.compat import uuid7

from app.db.bootstrap import EmbeddedUrls
from app.db.checks import UnsafeDatabaseRole, check_runtime_role
from app.db.embedded import EmbeddedPostgres
from app.db.session import Identity, bind, bound_session, create_engine, session_factory

ALICE = "alice.iso@example.com"
BOB = "bob.iso@example.com"


async def _add(sessions: async_sessionmaker[AsyncSession], email: str, content: str) -> uuid.UUID:
    memory_id = uuid7()
    vector = "[" + ",".join(str(x) for x in np.random.default_rng().random(384).round(5)) + "]"
    async with bound_session(sessions, Identity(email, "test")) as s:
        await s.execute(text("INSERT INTO users (email) VALUES (:e) ON CONFLICT DO NOTHING"), {"e": email})
        await s.execute(
            text(
                "INSERT INTO memories (id, owner_email, content, content_hash, embedding) "
                "VALUES (:id, :e, :c, md5(:c), CAST(:v AS vector))"
            ),
            {"id": memory_id, "e": email, "c": content, "v": vector},
        )
    return memory_id


async def _count(session: AsyncSession) -> int:
    return int(await session.scalar(text("SELECT count(*) FROM memories")) or 0)


async def test_no_identity_sees_nothing(sessions: async_sessionmaker[AsyncSession]) -> None:
    await _add(sessions, ALICE, "alice likes tea")
    async with sessions() as s:
        assert await _count(s) == 0
        assert await s.scalar(text("SELECT count(*) FROM users")) == 0
    async with bound_session(sessions, Identity(ALICE)) as s:
        assert await _count(s) >= 1


async def test_each_user_sees_only_their_rows(sessions: async_sessionmaker[AsyncSession]) -> None:
    alice_id = await _add(sessions, ALICE, "alice secret plan")
    bob_id = await _add(sessions, BOB, "bob secret plan")
    async with bound_session(sessions, Identity(BOB)) as s:
        ids = set((await s.scalars(text("SELECT id FROM memories"))).all())
        assert bob_id in ids
        assert alice_id not in ids
        # Neither update nor delete reaches another user's row.
        assert (
            await s.execute(text("UPDATE memories SET content = 'x' WHERE id = :id"), {"id": alice_id})
        ).rowcount == 0  # type: ignore[attr-defined]
        assert (await s.execute(text("DELETE FROM memories WHERE id = :id"), {"id": alice_id})).rowcount == 0  # type: ignore[attr-defined]
    async with bound_session(sessions, Identity(ALICE)) as s:
        assert (
            await s.scalar(text("SELECT content FROM memories WHERE id = :id"), {"id": alice_id}) == "alice secret plan"
        )


async def test_cannot_write_rows_for_someone_else(sessions: async_sessionmaker[AsyncSession]) -> None:
    await _add(sessions, BOB, "bob exists")
    with pytest.raises(ProgrammingError, match="row-level security"):
        async with bound_session(sessions, Identity(ALICE)) as s:
            await s.execute(
                text(
                    "INSERT INTO memories (id, owner_email, content, content_hash, embedding) "
                    "VALUES (:id, :e, 'planted', 'h', CAST(:v AS vector))"
                ),
                {"id": uuid7(), "e": BOB, "v": "[" + ",".join(["0.1"] * 384) + "]"},
            )


async def test_mid_request_commit_rebinds(sessions: async_sessionmaker[AsyncSession]) -> None:
    await _add(sessions, ALICE, "alice after commit")
    async with sessions() as s:
        bind(s, Identity(ALICE, "c1", "r1"))
        assert await _count(s) >= 1
        await s.commit()
        # A new transaction on the same session is bound again by the listener.
        assert await s.scalar(text("SELECT current_setting('app.user_email', true)")) == ALICE
        assert await _count(s) >= 1
        await s.commit()


async def test_identity_never_leaks_to_the_next_user_of_a_connection(db_urls: EmbeddedUrls) -> None:
    engine = create_engine(db_urls.runtime, pool_size=1, max_overflow=0)
    try:
        sessions = session_factory(engine)
        await _add(sessions, ALICE, "alice pooled")
        async with sessions() as s:
            bind(s, Identity(ALICE))
            backend = await s.scalar(text("SELECT pg_backend_pid()"))
            assert await _count(s) >= 1
            await s.commit()
        async with sessions() as s:
            # Same physical connection, no identity: nothing visible, setting empty.
            assert await s.scalar(text("SELECT pg_backend_pid()")) == backend
            assert await s.scalar(text("SELECT current_setting('app.user_email', true)")) in ("", None)
            assert await _count(s) == 0
    finally:
        await engine.dispose()


async def test_runtime_role_cannot_write_or_rewrite_the_audit(
    sessions: async_sessionmaker[AsyncSession], db_urls: EmbeddedUrls
) -> None:
    memory_id = await _add(sessions, ALICE, "audited memory")
    async with bound_session(sessions, Identity(ALICE)) as s:
        row = (
            await s.execute(
                text("SELECT operation, actor_email, before, after FROM audit_log WHERE row_id = :id"),
                {"id": str(memory_id)},
            )
        ).one()
        assert row.operation == "INSERT"
        assert row.actor_email == ALICE
        assert "content" not in row.after
        assert "embedding" not in row.after
    for statement in (
        "UPDATE audit_log SET operation = 'x'",
        "DELETE FROM audit_log",
        "INSERT INTO audit_log (operation) VALUES ('forged')",
    ):
        with pytest.raises(DBAPIError, match="permission denied"):
            async with bound_session(sessions, Identity(ALICE)) as s:
                await s.execute(text(statement))
    # Bob cannot read Alice's audit trail.
    await _add(sessions, BOB, "bob audited")
    async with bound_session(sessions, Identity(BOB)) as s:
        subjects = set((await s.scalars(text("SELECT DISTINCT subject_email FROM audit_log"))).all())
        assert subjects == {BOB}


async def test_auditor_reads_every_users_audit(
    sessions: async_sessionmaker[AsyncSession], db_urls: EmbeddedUrls
) -> None:
    await _add(sessions, ALICE, "for the auditor a")
    await _add(sessions, BOB, "for the auditor b")
    engine = create_engine(db_urls.auditor, pool_size=1)
    try:
        async with engine.connect() as conn:
            subjects = set((await conn.scalars(text("SELECT DISTINCT subject_email FROM audit_log"))).all())
            assert {ALICE, BOB} <= subjects
            with pytest.raises(DBAPIError, match="permission denied"):
                await conn.execute(text("SELECT count(*) FROM memories"))
    finally:
        await engine.dispose()


async def test_server_refuses_a_role_that_could_bypass_rls(
    runtime_engine: AsyncEngine, admin_engine: AsyncEngine, embedded_pg: EmbeddedPostgres
) -> None:
    await check_runtime_role(runtime_engine)
    with pytest.raises(UnsafeDatabaseRole, match="owns"):
        await check_runtime_role(admin_engine)
    superuser = create_engine(embedded_pg.url("postgres", "engram"), pool_size=1)
    try:
        with pytest.raises(UnsafeDatabaseRole, match="superuser"):
            await check_runtime_role(superuser)
    finally:
        await superuser.dispose()
