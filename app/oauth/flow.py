"""Shared pieces of the authorization flow: pending requests, redirects back to clients, codes."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from litestar import Request
from litestar.response import Redirect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from app.auth import scopes as scope_names
from app.settings import Settings

PENDING_TTL = timedelta(minutes=10)
SCOPE_TEXT = {
    scope_names.READ: "Read and search your memories",
    scope_names.WRITE: "Add and change your memories",
    scope_names.DELETE: "Delete your memories",
}


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def client_redirect(redirect_uri: str, settings: Settings, **params: str | None) -> Redirect:
    """Back to the client with `params`, the echoed `state` and our `iss` (RFC 9207)."""
    parts = urlsplit(redirect_uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    query.append(("iss", settings.issuer))
    return Redirect(path=urlunsplit(parts._replace(query=urlencode(query))), status_code=303)


def redirect_target_source(redirect_uri: str) -> str:
    """The CSP source that lets a consent form end in a redirect to this client."""
    parts = urlsplit(redirect_uri)
    if parts.scheme in ("http", "https"):
        return f"{parts.scheme}://{parts.netloc}"
    return f"{parts.scheme}:"


def safe_next(raw: str | None, default: str = "/") -> str:
    """Only same-site relative paths: never an open redirect."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return default
    return raw


def client_address(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


@dataclass(frozen=True)
class Pending:
    id: str
    client_id: str
    redirect_uri: str
    state: str | None
    code_challenge: str
    resource: str
    scopes: list[str]
    prompt: str | None


async def save_pending(session: AsyncSession, pending: Pending) -> None:
    await session.execute(
        text(
            "INSERT INTO oauth_pending (id, client_id, redirect_uri, state, code_challenge, resource, scopes, "
            "prompt, expires_at) VALUES (:id, :client_id, :redirect_uri, :state, :code_challenge, :resource, "
            ":scopes, :prompt, :expires)"
        ),
        {**pending.__dict__, "expires": datetime.now(UTC) + PENDING_TTL},
    )
    # Requests nobody finished are worth nothing after their expiry; keep the table small.
    await session.execute(text("DELETE FROM oauth_pending WHERE expires_at < now() - interval '1 hour'"))


async def load_pending(session: AsyncSession, pending_id: str) -> Pending | None:
    row = (
        await session.execute(
            text(
                "SELECT id, client_id, redirect_uri, state, code_challenge, resource, scopes, prompt "
                "FROM oauth_pending WHERE id = :id AND expires_at > now()"
            ),
            {"id": pending_id},
        )
    ).one_or_none()
    return Pending(**row._asdict()) if row else None


async def drop_pending(session: AsyncSession, pending_id: str) -> None:
    await session.execute(text("DELETE FROM oauth_pending WHERE id = :id"), {"id": pending_id})


async def issue_code(session: AsyncSession, pending: Pending, email: str, settings: Settings) -> str:
    """A single-use, short-lived code for `email` (the session must be bound to that email)."""
    code = secrets.token_urlsafe(32)
    await session.execute(
        text(
            "INSERT INTO oauth_codes (code_hash, owner_email, client_id, redirect_uri, code_challenge, resource, "
            "scopes, family_id, expires_at) VALUES (:hash, :email, :client_id, :redirect_uri, :challenge, "
            ":resource, :scopes, :family, :expires)"
        ),
        {
            "hash": token_hash(code),
            "email": email,
            "client_id": pending.client_id,
            "redirect_uri": pending.redirect_uri,
            "challenge": pending.code_challenge,
            "resource": pending.resource,
            "scopes": pending.scopes,
            "family": uuid7(),
            "expires": datetime.now(UTC) + timedelta(seconds=settings.authorization_code_ttl_seconds),
        },
    )
    await drop_pending(session, pending.id)
    return code


async def audit(session: AsyncSession, operation: str, email: str | None, row_id: str | None, **detail: Any) -> None:
    await session.execute(
        text("SELECT engram_audit_event(:op, :email, :row_id, CAST(:detail AS jsonb))"),
        {"op": operation, "email": email, "row_id": row_id, "detail": json.dumps(detail, default=str)},
    )
