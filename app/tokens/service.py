"""Creating, listing, revoking and resolving personal access tokens."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from app.auth import scopes as scope_names
from app.db.models import PersonalAccessToken
from app.problems import bad_request, not_found

TOKEN_PREFIX = "egm_"  # noqa: S105 - a recognisable prefix, not a secret
MAX_NAME = 100


def hash_token(token: str) -> bytes:
    # 256 random bits: a fast hash is enough, no attacker can enumerate the input space.
    return hashlib.sha256(token.encode()).digest()


def looks_like_personal_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX)


@dataclass(frozen=True)
class ResolvedToken:
    id: uuid.UUID
    owner_email: str
    name: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class CreatedToken:
    token: str
    record: PersonalAccessToken


async def create(
    session: AsyncSession, owner_email: str, name: str, scopes: list[str], expires_in_days: int | None
) -> CreatedToken:
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise bad_request(f"A token needs a name of 1 to {MAX_NAME} characters.")
    unknown = sorted(set(scopes) - set(scope_names.ALL_SCOPES))
    if unknown or not scopes:
        raise bad_request(
            f"Unknown or missing scopes {unknown}; choose from {', '.join(scope_names.ALL_SCOPES)}.",
        )
    if expires_in_days is not None and not 0 <= expires_in_days <= 3650:
        raise bad_request("expires_in_days must be between 0 (never) and 3650.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = None
    if expires_in_days:
        expires_at = datetime.now(UTC) + timedelta(days=expires_in_days)
    record = PersonalAccessToken(
        id=uuid7(),
        owner_email=owner_email,
        name=name,
        token_prefix=token[:12],
        token_hash=hash_token(token),
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
    )
    session.add(record)
    await session.flush()
    await session.refresh(record)
    return CreatedToken(token=token, record=record)


async def list_tokens(session: AsyncSession) -> list[PersonalAccessToken]:
    result = await session.scalars(select(PersonalAccessToken).order_by(PersonalAccessToken.created_at.desc()))
    return list(result)


async def revoke(session: AsyncSession, token_id: uuid.UUID) -> PersonalAccessToken:
    record = await session.scalar(
        update(PersonalAccessToken)
        .where(PersonalAccessToken.id == token_id)
        .values(revoked_at=text("coalesce(revoked_at, now())"))
        .returning(PersonalAccessToken)
    )
    if record is None:
        raise not_found("token")
    return record


async def resolve(session: AsyncSession, token: str) -> ResolvedToken | None:
    """The token's owner and scopes, or None when it is unknown, revoked or expired.

    Runs before anyone is bound, through the one SECURITY DEFINER function made for it.
    """
    row = (
        await session.execute(
            text("SELECT id, owner_email, name, scopes, expires_at, revoked_at FROM engram_resolve_pat(:h)"),
            {"h": hash_token(token)},
        )
    ).one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= datetime.now(UTC):
        return None
    return ResolvedToken(id=row.id, owner_email=row.owner_email, name=row.name, scopes=frozenset(row.scopes))
