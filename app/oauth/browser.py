"""Browser sign-in sessions (server-side, in PostgreSQL) and CSRF protection for our forms.

The cookie holds a random token; the table holds its hash. On https the cookies are `__Host-`
prefixed, Secure, HttpOnly and SameSite=Lax; on plain-http loopback development the prefix and
Secure flag are dropped (browsers and HTTP clients would refuse them there).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Request, Response
from litestar.datastructures import Cookie
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from uuid_utils.compat import uuid7

from app.db.session import Identity, bound_session
from app.settings import Settings

SESSION_COOKIE = "engram_session"
CSRF_COOKIE = "engram_csrf"
CSRF_FIELD = "csrf_token"


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def secure_cookies(settings: Settings) -> bool:
    return settings.public_url.startswith("https://")


def cookie_name(settings: Settings, base: str) -> str:
    return f"__Host-{base}" if secure_cookies(settings) else base


def make_cookie(settings: Settings, base: str, value: str, *, max_age: int | None) -> Cookie:
    return Cookie(
        key=cookie_name(settings, base),
        value=value,
        max_age=max_age,
        path="/",
        secure=secure_cookies(settings),
        httponly=True,
        samesite="lax",
    )


@dataclass(frozen=True)
class SignedIn:
    email: str
    session_id: str


async def create_session(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, email: str, method: str
) -> tuple[str, Cookie]:
    token = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(hours=settings.session_ttl_hours)
    async with bound_session(sessions, Identity(email, "web")) as session:
        await session.execute(
            text(
                "INSERT INTO browser_sessions (id, owner_email, token_hash, method, expires_at) "
                "VALUES (:id, :email, :hash, :method, :expires)"
            ),
            {"id": uuid7(), "email": email, "hash": _hash(token), "method": method, "expires": expires},
        )
    return token, make_cookie(settings, SESSION_COOKIE, token, max_age=settings.session_ttl_hours * 3600)


async def current_user(
    request: Request[Any, Any, Any], sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> SignedIn | None:
    token = request.cookies.get(cookie_name(settings, SESSION_COOKIE))
    if not token:
        return None
    async with bound_session(sessions, None) as session:
        email = await session.scalar(text("SELECT engram_owner_of('session', :h)"), {"h": _hash(token)})
    return SignedIn(email=email, session_id=token) if email else None


async def end_session(sessions: async_sessionmaker[AsyncSession], signed_in: SignedIn, settings: Settings) -> Cookie:
    async with bound_session(sessions, Identity(signed_in.email, "web")) as session:
        await session.execute(
            text("DELETE FROM browser_sessions WHERE token_hash = :h"), {"h": _hash(signed_in.session_id)}
        )
    return make_cookie(settings, SESSION_COOKIE, "", max_age=0)


# --- CSRF: a double-submit token, also bound to what the form acts on -------------------------------
def csrf_token(request: Request[Any, Any, Any], settings: Settings) -> tuple[str, Cookie | None]:
    """The token to embed in a form, and the cookie to set if the browser has none yet."""
    existing = request.cookies.get(cookie_name(settings, CSRF_COOKIE))
    if existing and len(existing) >= 32:
        return existing, None
    fresh = secrets.token_urlsafe(32)
    return fresh, make_cookie(settings, CSRF_COOKIE, fresh, max_age=None)


def csrf_valid(request: Request[Any, Any, Any], settings: Settings, submitted: str | None) -> bool:
    cookie = request.cookies.get(cookie_name(settings, CSRF_COOKIE))
    return bool(cookie and submitted and hmac.compare_digest(cookie, submitted))


def with_cookies(response: Response[Any], *cookies: Cookie | None) -> Response[Any]:
    for cookie in cookies:
        if cookie is not None:
            response.set_cookie(cookie)
    return response
