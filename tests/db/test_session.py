"""The runtime engine's pool: connections the database dropped are replaced, not handed out."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from app.db import session as db_session
from app.db.bootstrap import EmbeddedUrls
from app.db.session import create_engine


@pytest.mark.parametrize("ping_after_idle", [db_session.PING_AFTER_IDLE_SECONDS, 0.0])
async def test_a_pooled_connection_the_database_closed_is_replaced(
    db_urls: EmbeddedUrls, monkeypatch: pytest.MonkeyPatch, ping_after_idle: float
) -> None:
    monkeypatch.setattr(db_session, "PING_AFTER_IDLE_SECONDS", ping_after_idle)
    engine = create_engine(db_urls.runtime, pool_size=1, max_overflow=0)
    killer = create_engine(db_urls.runtime, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
        # What a database restart or an administrator's pg_terminate_backend does to an idle connection.
        async with killer.connect() as conn:
            assert await conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await asyncio.sleep(0.2)
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT pg_backend_pid()")) != pid
    finally:
        await engine.dispose()
        await killer.dispose()


async def test_a_healthy_idle_connection_is_pinged_and_kept(
    db_urls: EmbeddedUrls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_session, "PING_AFTER_IDLE_SECONDS", 0.0)
    engine = create_engine(db_urls.runtime, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
        for _ in range(3):
            async with engine.connect() as conn:
                assert await conn.scalar(text("SELECT pg_backend_pid()")) == pid
    finally:
        await engine.dispose()
