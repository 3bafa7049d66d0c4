"""OAuth grants: a client's consent row plus the refresh-token families issued under it.

Revoking deletes the consent (the next sign-in asks again), revokes every refresh token and
drops unused authorization codes of that client for the caller. Access tokens already issued
name their sign-in (`sid`), and the token check refuses those of a revoked one, so they stop at
once too (tokens issued before they carried `sid` live until they expire).
Everything runs under row-level security as the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.oauth import flow


@dataclass(frozen=True)
class Grant:
    client_id: str
    client_name: str
    scopes: list[str]
    granted_at: datetime | None
    live_tokens: int
    last_used_at: datetime | None


_LIVE = "t.revoked_at IS NULL AND t.used_at IS NULL AND t.expires_at > now()"
_GRANTS = f"""
    WITH clients AS (
        SELECT client_id FROM oauth_consents
        UNION SELECT client_id FROM oauth_refresh_tokens t WHERE {_LIVE}
    )
    SELECT k.client_id,
           coalesce(oc.client_name, k.client_id) AS client_name,
           coalesce(c.scopes, '{{}}') AS scopes,
           c.granted_at,
           (SELECT count(*) FROM oauth_refresh_tokens t WHERE t.client_id = k.client_id AND {_LIVE}) AS live_tokens,
           (SELECT max(a.last_seen_at) FROM apps a WHERE a.client_id = k.client_id) AS last_used_at
      FROM clients k
      LEFT JOIN oauth_consents c ON c.client_id = k.client_id
      LEFT JOIN oauth_clients oc ON oc.client_id = k.client_id
"""


async def list_grants(session: AsyncSession) -> list[Grant]:
    rows = await session.execute(text(_GRANTS + " ORDER BY c.granted_at DESC NULLS LAST, k.client_id"))
    return [Grant(**row._asdict()) for row in rows]


async def revoke_grant(session: AsyncSession, email: str, client_id: str) -> bool:
    """True when there was a consent or a live token to revoke."""
    consent = await session.scalar(
        text("DELETE FROM oauth_consents WHERE client_id = :c RETURNING client_id"), {"c": client_id}
    )
    tokens = (
        await session.execute(
            text(
                "UPDATE oauth_refresh_tokens SET revoked_at = now() "
                "WHERE client_id = :c AND revoked_at IS NULL RETURNING id"
            ),
            {"c": client_id},
        )
    ).all()
    await session.execute(text("DELETE FROM oauth_codes WHERE client_id = :c AND used_at IS NULL"), {"c": client_id})
    if consent is None and not tokens:
        return False
    await flow.audit(session, "OAUTH_GRANT_REVOKED", email, client_id, tokens=len(tokens), via="web")
    return True


async def registered_clients(session: AsyncSession, client_ids: list[str]) -> set[str]:
    """Which of these client ids are OAuth clients of Engram itself (registered or by metadata document)."""
    if not client_ids:
        return set()
    rows = await session.scalars(
        text("SELECT client_id FROM oauth_clients WHERE client_id = ANY(:ids)"), {"ids": client_ids}
    )
    return set(rows)


async def granted_clients(session: AsyncSession) -> set[str]:
    """Client ids that hold a consent or a live refresh token (what "revoke" can take back)."""
    return {g.client_id for g in await list_grants(session)}
