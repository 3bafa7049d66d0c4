"""Listing and pausing the caller's apps."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.problems import not_found


class AppOut(msgspec.Struct):
    id: uuid.UUID
    client_id: str
    name: str
    paused: bool
    created_at: datetime
    last_seen_at: datetime
    memories_written: int
    memories_read: int
    last_read_at: datetime | None


class AppPatch(msgspec.Struct, forbid_unknown_fields=True):
    paused: bool


_LIST = """
    SELECT a.id, a.client_id, a.name, a.paused, a.created_at, a.last_seen_at,
           (SELECT count(*) FROM memories m WHERE m.app_id = a.id) AS memories_written,
           (SELECT count(*) FROM memory_access_log l WHERE l.app_id = a.id) AS memories_read,
           (SELECT max(l.at) FROM memory_access_log l WHERE l.app_id = a.id) AS last_read_at
      FROM apps a
"""


async def list_apps(session: AsyncSession) -> list[AppOut]:
    rows = await session.execute(text(_LIST + " ORDER BY a.last_seen_at DESC"))
    return [AppOut(**row._asdict()) for row in rows]


async def set_paused(session: AsyncSession, app_id: uuid.UUID, paused: bool) -> AppOut:
    updated = await session.scalar(
        text("UPDATE apps SET paused = :paused WHERE id = :id RETURNING id"), {"paused": paused, "id": app_id}
    )
    if updated is None:
        raise not_found("app")
    row = (await session.execute(text(_LIST + " WHERE a.id = :id"), {"id": app_id})).one()
    return AppOut(**row._asdict())
