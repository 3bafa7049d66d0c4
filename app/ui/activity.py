"""The dashboard's recent activity: the latest changes to the caller's memories and who made them.

A read of the history table under row-level security; the history itself is written by
MemoryService.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import App, Memory, MemoryHistory

_VERBS = {"created": "Added", "updated": "Edited", "merged": "Merged", "state": "Changed state of"}


@dataclass(frozen=True)
class Activity:
    at: datetime
    verb: str
    memory_id: uuid.UUID
    content: str
    detail: str | None
    client: str


async def recent(session: AsyncSession, limit: int = 8) -> list[Activity]:
    rows = (
        await session.execute(
            select(MemoryHistory, Memory.content)
            .join(Memory, Memory.id == MemoryHistory.memory_id)
            .order_by(MemoryHistory.id.desc())
            .limit(limit)
        )
    ).all()
    client_ids = {h.client_id for h, _ in rows if h.client_id}
    names: dict[str, str] = {}
    if client_ids:
        names = {
            r.client_id: r.name
            for r in await session.execute(select(App.client_id, App.name).where(App.client_id.in_(client_ids)))
        }
    return [
        Activity(
            at=h.at,
            verb=_VERBS.get(h.event, h.event.capitalize()),
            memory_id=h.memory_id,
            content=content,
            detail=f"{h.from_state} → {h.to_state}" if h.event == "state" else None,
            client=names.get(h.client_id or "", h.client_id or "unknown client"),
        )
        for h, content in rows
    ]
