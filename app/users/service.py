"""Registering the caller: the user row and the app it acts through, in one statement."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from app.auth.principal import Principal

# One round trip per request. ON CONFLICT makes fifty simultaneous first requests create one user
# and one app; the last-seen times are refreshed at most once a minute so requests rarely write.
_TOUCH = text(
    """
    WITH u AS (
        INSERT INTO users (email) VALUES (:email)
        ON CONFLICT (email) DO UPDATE SET last_seen_at = now()
        WHERE users.last_seen_at < now() - interval '1 minute'
        RETURNING memory_count
    ), a AS (
        INSERT INTO apps (id, owner_email, client_id, name) VALUES (:app_id, :email, :client_id, :client_name)
        ON CONFLICT (owner_email, client_id) DO UPDATE SET last_seen_at = now()
        WHERE apps.last_seen_at < now() - interval '1 minute'
        RETURNING id, paused, name
    )
    SELECT
        coalesce((SELECT memory_count FROM u), (SELECT memory_count FROM users WHERE email = :email), 0)
            AS memory_count,
        coalesce((SELECT id FROM a), (SELECT id FROM apps WHERE owner_email = :email AND client_id = :client_id))
            AS app_id,
        coalesce((SELECT paused FROM a),
                 (SELECT paused FROM apps WHERE owner_email = :email AND client_id = :client_id)) AS paused,
        coalesce((SELECT name FROM a),
                 (SELECT name FROM apps WHERE owner_email = :email AND client_id = :client_id)) AS app_name
    """
)


@dataclass(frozen=True, slots=True)
class Caller:
    """The principal as the database knows it: the app row and how many memories the user has."""

    email: str
    client_id: str
    app_id: uuid.UUID
    app_name: str
    app_paused: bool
    memory_count: int


async def touch(session: AsyncSession, principal: Principal) -> Caller:
    row = (
        await session.execute(
            _TOUCH,
            {
                "email": principal.email,
                "app_id": uuid7(),
                "client_id": principal.client_id,
                "client_name": principal.client_name[:200] or principal.client_id,
            },
        )
    ).one()
    return Caller(
        email=principal.email,
        client_id=principal.client_id,
        app_id=row.app_id,
        app_name=row.app_name,
        app_paused=bool(row.paused),
        memory_count=int(row.memory_count),
    )


async def ensure_user(session: AsyncSession, email: str) -> None:
    """The user row, for work that has a user but no client (the CLI creating a token)."""
    await session.execute(text("INSERT INTO users (email) VALUES (:email) ON CONFLICT DO NOTHING"), {"email": email})
