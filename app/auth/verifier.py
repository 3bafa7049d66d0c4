"""From a bearer token to a Principal: personal tokens, Engram's own JWTs and trusted issuers.

One code path for every kind of token, used by the REST API and the MCP endpoint alike.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import scopes as scope_names
from app.auth.jwt import IssuerUnavailable, JWTVerifier, TokenInvalid
from app.auth.principal import Principal, TokenKind
from app.settings import Settings
from app.tokens import service as tokens

GRANT_REVOKED = text("SELECT engram_grant_revoked(:g)")

log = structlog.get_logger("engram.auth")


@dataclass
class AuthFailure(Exception):
    """Why a request is not authenticated; the transport turns it into 401/403/503."""

    status: int
    error: str  # invalid_token, insufficient_scope, access_denied, temporarily_unavailable
    description: str

    def __str__(self) -> str:
        return self.description


def email_allowed(settings: Settings, email: str) -> bool:
    if not settings.allowed_emails and not settings.allowed_domains:
        return True
    allowed_emails = {e.strip().lower() for e in settings.allowed_emails}
    allowed_domains = {d.strip().lower().lstrip("@") for d in settings.allowed_domains}
    return email in allowed_emails or email.rpartition("@")[2] in allowed_domains


def normalise_email(raw: object) -> str | None:
    if not isinstance(raw, str):
        return None
    email = raw.strip().lower()
    if "@" not in email or email.startswith("@") or email.endswith("@") or len(email) > 320:
        return None
    return email


class TokenVerifier:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], jwt: JWTVerifier) -> None:
        self.settings = settings
        self.sessions = sessions
        self.jwt = jwt

    async def verify(self, token: str, *, audiences: list[str], session: AsyncSession | None = None) -> Principal:
        """`session`: resolve a personal token in that (still unbound) transaction instead of a new one."""
        if tokens.looks_like_personal_token(token):
            principal = await self._personal(token, session)
        else:
            principal = await self._jwt(token, audiences)
            if principal.kind == "engram":
                await self._refuse_revoked_grant(principal, session)
        if not email_allowed(self.settings, principal.email):
            raise AuthFailure(
                403,
                "access_denied",
                f"{principal.email} is not on this server's list of allowed users or domains.",
            )
        return principal

    async def _personal(self, token: str, session: AsyncSession | None) -> Principal:
        if session is not None:
            resolved = await tokens.resolve(session, token)
        else:
            async with self.sessions() as own, own.begin():
                resolved = await tokens.resolve(own, token)
        if resolved is None:
            raise AuthFailure(401, "invalid_token", "The personal access token is unknown, revoked or expired.")
        return Principal(
            email=resolved.owner_email,
            scopes=scope_names.expand(resolved.scopes),
            kind="personal",
            client_id=f"pat:{resolved.id}",
            client_name=resolved.name,
            token_id=str(resolved.id),
        )

    async def _refuse_revoked_grant(self, principal: Principal, session: AsyncSession | None) -> None:
        """Engram's access tokens name their sign-in (`sid`, the refresh-token family); once that is
        revoked — by the user, by the client at /oauth/revoke, or after a replayed code or refresh
        token — its access tokens stop working too, not only when they expire."""
        grant = principal.claims.get("sid")
        if not isinstance(grant, str):
            return  # issued before grants were named; it expires within access_token_ttl_seconds
        try:
            grant_id = uuid.UUID(grant)
        except ValueError:
            raise AuthFailure(401, "invalid_token", "The token's sid claim is not a sign-in id.") from None
        if session is not None:
            revoked = await session.scalar(GRANT_REVOKED, {"g": grant_id})
        else:
            async with self.sessions() as own, own.begin():
                revoked = await own.scalar(GRANT_REVOKED, {"g": grant_id})
        if revoked:
            raise AuthFailure(401, "invalid_token", "This token's sign-in was revoked; sign in again.")

    async def _jwt(self, token: str, audiences: list[str]) -> Principal:
        try:
            verified = await self.jwt.verify(token, audiences=audiences)
        except TokenInvalid as exc:
            log.info("token refused", reason=str(exc))
            raise AuthFailure(401, "invalid_token", str(exc)) from None
        except IssuerUnavailable as exc:
            log.warning("token issuer unavailable", reason=str(exc))
            raise AuthFailure(
                503,
                "temporarily_unavailable",
                "The token's issuer cannot be reached to check it; try again shortly.",
            ) from None
        email = normalise_email(verified.email)
        if email is None:
            raise AuthFailure(
                403,
                "access_denied",
                "The token carries no usable email claim; Engram keys every user on their email address "
                "(ask the operator to map an email claim into the token).",
            )
        kind: TokenKind = "engram" if verified.issuer == self.settings.issuer else "external"
        return Principal(
            email=email,
            scopes=verified.scopes,
            kind=kind,
            client_id=verified.client_id or verified.issuer,
            client_name=str(verified.claims.get("client_name") or verified.client_id or verified.issuer),
            token_id=str(verified.claims.get("jti")) if verified.claims.get("jti") else None,
            claims=dict(verified.claims),
        )
